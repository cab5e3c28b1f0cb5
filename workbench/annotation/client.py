"""Connecting to Argilla and finding datasets, for `workbench.annotation` (push) and
`workbench.annotation_pull` (pull). With them, the only modules of the package that import `argilla`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import argilla as rg
import httpx
from argilla._exceptions import ArgillaCredentialsError, ArgillaError

_PAGE = 1000  # the server's largest page of records
HOW_TO_CONNECT = (
    "set ARGILLA_API_URL and ARGILLA_API_KEY to a running Argilla server, or start the embedded one "
    "with `workbench argilla up`"
)


class AnnotationError(RuntimeError):
    """Something about the Argilla dataset is wrong; the message says what and how to fix it."""


class ArgillaUnavailableError(AnnotationError):
    """No Argilla server could be reached or logged in to."""


def connect(
    api_url: str | None = None,
    api_key: str | None = None,
    *,
    home: str | Path | None = None,
    timeout: int = 60,
    retries: int = 5,
) -> rg.Argilla:
    """An SDK client for, in this order: `api_url` + `api_key`; else ARGILLA_API_URL +
    ARGILLA_API_KEY (a production server); else the embedded server of `home` (default
    `.workbench/argilla`), started if it is not running, as its owner. `retries` is how often a
    refused connection is retried (with backoff, about 7 s in all for 5) before giving up.
    Raises ArgillaUnavailableError saying how to configure or start a server."""
    from workbench_argilla_embedded.manage import DEFAULT_HOME, ArgillaServerError, resolve_server

    if api_url or api_key:
        if not (api_url and api_key):
            raise ArgillaUnavailableError("Give both api_url and api_key, or neither (then " + HOW_TO_CONNECT + ").")
        url, key = api_url.rstrip("/"), api_key
    else:
        try:
            info = resolve_server(home=home or DEFAULT_HOME)
        except ArgillaServerError as error:
            raise ArgillaUnavailableError(
                f"No Argilla server is available: {error}\nTo fix: {HOW_TO_CONNECT}."
            ) from error
        url, key = info.api_url, info.api_key
    try:
        return rg.Argilla(api_url=url, api_key=key, timeout=timeout, retries=retries)
    except ArgillaCredentialsError as error:
        raise ArgillaUnavailableError(
            f"Argilla at {url} refused the API key. Check ARGILLA_API_KEY (for the embedded server the owner's "
            "key is in .workbench/argilla/credentials.json)."
        ) from error
    except (httpx.HTTPError, ArgillaError) as error:
        raise ArgillaUnavailableError(
            f"No Argilla server answered at {url} ({error}). To fix: {HOW_TO_CONNECT}."
        ) from error


def resolve_workspace(client: rg.Argilla, workspace: str | None) -> rg.Workspace:
    if workspace is None:
        try:
            return client.workspaces.default
        except ArgillaError as error:
            raise AnnotationError(
                f"Argilla at {client.api_url} has no workspace this user can use; create one "
                "(rg.Workspace(name=...).create()) and add the user to it, or pass workspace="
            ) from error
    found = client.workspaces(workspace)
    if found is None:
        names = [ws.name for ws in client.workspaces]
        raise AnnotationError(f"No workspace {workspace!r} on Argilla at {client.api_url}; available: {names}")
    return found


def find_dataset(client: rg.Argilla, name: str, workspace: str | None) -> rg.Dataset | None:
    ws = resolve_workspace(client, workspace)
    for candidate in ws.datasets:
        if candidate.name == name:
            return candidate
    return None


def records_json(client: rg.Argilla, remote: rg.Dataset, include: Sequence[str]) -> list[dict]:
    """Every record of `remote` as the REST API returns it, page by page."""
    records: list[dict] = []
    while True:
        response = client.http_client.get(
            f"/api/v1/datasets/{remote.id}/records",
            params={"include": list(include), "offset": len(records), "limit": _PAGE},
        )
        response.raise_for_status()
        items = response.json()["items"]
        records.extend(items)
        if len(items) < _PAGE:
            return records
