"""Names for training points written by an LLM, and a check of how well a description fits its point.

The default names come from keywords (`workbench.points.cluster`). `name_points` asks a model,
through the model seam and the runner's cache, for a short name and a one-sentence description of
each point from its signature, keywords, typical member texts and the client's label definitions.
A model's description can be fluent and wrong, so `description_fit` checks it: the description and
every clustered error are embedded by the sentence encoder, and the fit is the area under the ROC
curve of "is a member of this point" ranked by similarity to its description (1.0: every member is
closer to it than every other point's member; 0.5: no better than chance). It is computed for the
keyword names too, so the two can be compared point by point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.core.answers import extract_json
from workbench.core.frames import require_columns
from workbench.core.task import Task
from workbench.models.base import ChatRequest, Completion, GenerationOptions, Model
from workbench.points.encoder import Encoder, default_encoder, unit_rows
from workbench.prompting.cache import ResponseCache
from workbench.prompting.runner import send_requests

NAME_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "description": {"type": "string"}},
    "required": ["name", "description"],
    "additionalProperties": False,
}
_SYSTEM = (
    "You name the failure modes of a model that labels texts. Given one group of similar errors, reply "
    'with JSON only: {"name": "<at most 8 words>", "description": "<one sentence saying what these texts have '
    'in common and what the model gets wrong>"}. Use the client\'s label definitions, not everyday meanings.'
)


def naming_messages(point: dict[str, Any], members: list[str], task: Task) -> tuple[dict[str, str], ...]:
    """The chat messages asking for one point's name: `point` is a row of the points table
    (``signature``, ``keywords``), `members` the texts of some of its errors."""
    definitions = "\n".join(f"- {label.name}: {label.definition or '(no definition)'}" for label in task.labels)
    examples = "\n".join(f"{number}. {text}" for number, text in enumerate(members, 1))
    user = (f"Task: {task.name}\nLabel definitions:\n{definitions}\n\n"
            f"What went wrong in every error of this group: {point['signature']}\n"
            f"Words typical of the group: {', '.join(point['keywords']) or '(none)'}\n"
            f"Texts of the group (entities concerned in [[double brackets]]):\n{examples}")
    return ({"role": "system", "content": _SYSTEM}, {"role": "user", "content": user})


def name_points(
    points: pd.DataFrame, assignments: pd.DataFrame, task: Task, model: Model, *,
    cache: ResponseCache | str | Path | None = None, members: int = 5,
    options: GenerationOptions | None = None, encoder: Encoder | None = None, keep_better_fit: bool = True,
) -> pd.DataFrame:
    """`points` with the model's names for its training points (kind ``point``; "other" and
    "relabel" keep theirs), checked against their members.

    Adds columns ``llm_name`` and ``llm_description`` (the model's answer; None when unusable),
    ``llm_fit`` and ``keyword_fit`` (`description_fit` of the model's and of the keyword
    description), ``name_source`` (``llm`` where the model's name is now the point's ``name`` and
    ``description``, else unchanged) and ``naming_error`` (why a point kept its name: the request
    failed, the answer had no name, or, with `keep_better_fit`, the model's description picks out
    the point's members less well than the keyword one; None otherwise). `members`: how many
    member texts each request shows (representatives first). Requests are cached in `cache` like
    the runner's (the run folder's ``cache.sqlite``).
    """
    require_columns(points, ["point_id", "name", "description", "signature", "keywords", "kind",
                             "representatives"], "points", "pass ErrorClusterer's points_")
    table = points.copy().reset_index(drop=True)
    contexts = _member_contexts(assignments, task)
    if "name_source" not in table.columns:
        table["name_source"] = "keywords"
    table["llm_name"], table["llm_description"], table["naming_error"] = None, None, None
    wanted = [i for i, kind in enumerate(table["kind"]) if kind == "point"]
    requests = []
    for i in wanted:
        point = table.loc[i].to_dict()
        shown = _shown_members(point, contexts, members)
        requests.append(ChatRequest(naming_messages(point, shown, task),
                                    options or GenerationOptions(temperature=0.0, max_tokens=120), NAME_SCHEMA))
    answers = send_requests(model, requests, cache=cache) if requests else []
    for i, answer in zip(wanted, answers):
        name, description, problem = _read(answer)
        table.at[i, "llm_name"], table.at[i, "llm_description"] = name, description
        table.at[i, "naming_error"] = problem
    encoder = encoder or default_encoder()
    table["keyword_fit"] = description_fit(table, assignments, task, encoder)
    table["llm_fit"] = description_fit(table.assign(description=table["llm_description"].fillna("")), assignments,
                                       task, encoder)
    for i in wanted:
        if table.at[i, "naming_error"] is not None:
            continue
        llm_fit, keyword_fit = table.at[i, "llm_fit"], table.at[i, "keyword_fit"]
        if keep_better_fit and llm_fit < keyword_fit:
            table.at[i, "naming_error"] = (f"the model's description fits its members less well ({llm_fit:.2f}) "
                                           f"than the keyword one ({keyword_fit:.2f})")
            continue
        table.at[i, "name"], table.at[i, "description"] = table.at[i, "llm_name"], table.at[i, "llm_description"]
        table.at[i, "name_source"] = "llm"
    table.loc[~table.index.isin(wanted), "llm_fit"] = np.nan
    return table


def description_fit(points: pd.DataFrame, assignments: pd.DataFrame, task: Task, encoder: Encoder, *,
                    column: str = "description") -> pd.Series:
    """Per point (indexed like `points`), how well its `column` text picks out its own members
    among every clustered error: ROC AUC of membership ranked by cosine similarity between the
    text's and the errors' embeddings (the errors as `TaskKind.error_context` shows them). NaN for
    a point with no members or when every clustered error is its own (nothing to tell apart)."""
    require_columns(assignments, ["example_id", "signature", "point_id", "text"], "assignments",
                    "pass ErrorClusterer's assignments_")
    from sklearn.metrics import roc_auc_score

    members = assignments.drop_duplicates(["example_id", "signature"]).reset_index(drop=True)
    if members.empty or points.empty:
        return pd.Series(np.nan, index=points.index, dtype=float)
    texts = [task.kind.error_context(row) for row in members.to_dict("records")]
    vectors = unit_rows(encoder.encode(texts))
    described = unit_rows(encoder.encode([str(text) for text in points[column]]))
    fits = []
    for position, point_id in enumerate(points["point_id"]):
        is_member = (members["point_id"] == point_id).to_numpy()
        if is_member.all() or not is_member.any():
            fits.append(np.nan)
            continue
        fits.append(float(roc_auc_score(is_member, vectors @ described[position])))
    return pd.Series(fits, index=points.index, dtype=float)


def _member_contexts(assignments: pd.DataFrame, task: Task) -> dict[str, list[tuple[str, str]]]:
    require_columns(assignments, ["example_id", "signature", "point_id", "text"], "assignments",
                    "pass ErrorClusterer's assignments_")
    contexts: dict[str, list[tuple[str, str]]] = {}
    for row in assignments.drop_duplicates(["example_id", "signature"]).to_dict("records"):
        contexts.setdefault(row["point_id"], []).append((row["example_id"], task.kind.error_context(row)))
    return contexts


def _shown_members(point: dict[str, Any], contexts: dict[str, list[tuple[str, str]]], count: int) -> list[str]:
    mine = contexts.get(point["point_id"], [])
    first = {example: rank for rank, example in enumerate(point["representatives"])}
    ordered = sorted(mine, key=lambda member: first.get(member[0], len(first)))
    return [text for _, text in ordered[:count]]


def _read(answer: Completion | str) -> tuple[str | None, str | None, str | None]:
    """(name, description, None) from a usable answer, else (None, None, why not)."""
    if isinstance(answer, str):
        return None, None, f"request failed: {answer}"
    value = extract_json(answer.text, prefer_key=("name",))
    if not isinstance(value, dict) or not str(value.get("name") or "").strip():
        return None, None, f"no name in the answer {answer.text[:120]!r}"
    name = " ".join(str(value["name"]).split())
    description = " ".join(str(value.get("description") or "").split()) or name
    return name, description, None


