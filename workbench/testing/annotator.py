"""Stand-in for a person: submit annotator responses over Argilla's REST API, as its web UI does.

Only for demos and tests, where nobody sits at the web UI. Real corrections come from annotators
working in Argilla's UI; `workbench.annotation.pull_corrections` reads either kind the same way.
"""

from __future__ import annotations

from typing import Any

import httpx


def submit_responses(
    api_url: str,
    annotator_api_key: str,
    dataset_id: str,
    answers: dict[str, Any],
    *,
    question: str,
    status: str = "submitted",
) -> int:
    """Answer records of a dataset as one annotator; returns how many responses were created.

    `answers` maps example_id (the record id pushed by the workbench) to the value for `question`:
    a label for ``label``, or a list of ``{"start", "end", "label"}`` for ``spans``. Records that
    this annotator already answered are left alone.
    """
    headers = {"X-Argilla-Api-Key": annotator_api_key}
    created = 0
    with httpx.Client(base_url=api_url.rstrip("/"), headers=headers, timeout=30.0) as api:
        records = _pending_records(api, dataset_id)
        for record in records:
            example_id = record.get("external_id")
            if example_id not in answers:
                continue
            body = {"status": status, "values": {question: {"value": answers[example_id]}}}
            response = api.post(f"/api/v1/records/{record['id']}/responses", json=body)
            if response.status_code == 409:  # already answered by this user
                continue
            response.raise_for_status()
            created += 1
    return created


def _pending_records(api: httpx.Client, dataset_id: str) -> list[dict]:
    """The annotator's pending queue, as the UI asks for it."""
    body = {"query": {}, "filters": {"and": [{"type": "terms", "scope": {"entity": "response", "property": "status"},
                                 "values": ["pending"]}]}}
    records: list[dict] = []
    offset = 0
    while True:
        response = api.post(f"/api/v1/me/datasets/{dataset_id}/records/search",
                            params={"offset": offset, "limit": 100}, json=body)
        response.raise_for_status()
        items = [item["record"] for item in response.json()["items"]]
        records.extend(items)
        if len(items) < 100:
            return records
        offset += 100
