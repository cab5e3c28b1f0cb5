"""Annotators review training points in Argilla: confirm or move each error, rename a point.

`push_point_review` makes one record per clustered error (an example under one signature: a
point's member) with its proposed point suggested. Annotators answer "point" (the point it
belongs to: any point, "none" for no point of its own, or "relabel" when the gold answer is
wrong), may give the point they chose a better name ("point_name"), and may leave a note.
`pull_point_review` reads the answers back (and keeps a snapshot); `apply_point_review` turns
them into updated points and assignments. Applying the same answers again changes nothing, so
a review pulled twice leaves the points as the first pull left them.

Several annotators: each member goes where most of its submitted answers put it; a tie goes to
the proposed point when it is among the tied answers, else to the latest answer. A point's new
name is the most common name its choosers gave (ignoring case and outer spaces), a tie going to
the latest.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.annotation import Client
from workbench.annotation.push import PushResult
from workbench.annotation.records import Field, Metadata, RecordData, Suggested
from workbench.annotation.reviews import (
    Choice,
    FreeText,
    ReviewLayout,
    load_review,
    pull_review,
    push_review,
)
from workbench.core.answers import is_missing
from workbench.core.errors import InputError
from workbench.core.frames import require_columns
from workbench.core.task import Task
from workbench.points.cluster import POINT_COLUMNS, class_keywords, correct_examples, point_row

POINT_QUESTION, RENAME_QUESTION, NOTE_QUESTION = "point", "point_name", "note"
NO_POINT, RELABEL = "none", "relabel"
REVIEWER = "workbench points"  # the suggestion's agent
REVIEWED_POINT_COLUMNS = POINT_COLUMNS + ["name_source", "reviewed"]
_FIELDS = (Field("text", "Text (the entity concerned in [[double brackets]])"),
           Field("error", "What went wrong", markdown=True),
           Field("proposed", "Proposed training point", markdown=True))
_METADATA = (Metadata("example_id", "terms", "Example"), Metadata("signature", "terms", "What went wrong"),
             Metadata("proposed_point", "terms", "Proposed point"),
             Metadata("priority", "integer", "Priority (1 = first)"))
_OPTION_TEXT = 200  # option texts are shown as buttons: keep them short


def point_review_layout(task: Task, points: pd.DataFrame) -> ReviewLayout:
    """The review dataset for `points` (the points table of `ErrorClusterer`): one option per
    point (``<point_id>: <name>``), plus "none" (belongs to no point) and "relabel"."""
    require_columns(points, ["point_id", "name", "kind"], "points", "pass ErrorClusterer's points_")
    options = {str(pid): _shorten(f"{pid}: {name}") for pid, name in zip(points["point_id"], points["name"])}
    options.setdefault(RELABEL, "relabel: the gold answer is wrong (a label error, not a training point)")
    options[NO_POINT] = "none: it fits none of these points"
    return ReviewLayout(
        fields=_FIELDS,
        questions=(
            Choice(POINT_QUESTION, "Which training point does this error belong to?", options,
                   "Keep the proposed point when it fits; otherwise pick the one that does."),
            FreeText(RENAME_QUESTION, "A better name for the point you chose (optional)",
                     "A few words for the failure this point stands for, as your team would say it."),
            FreeText(NOTE_QUESTION, "Note (optional)", "Why the model went wrong here."),
        ),
        metadata=_METADATA,
        guidelines=_guidelines(task),
    )


def point_review_records(task: Task, points: pd.DataFrame, assignments: pd.DataFrame) -> list[RecordData]:
    """One record per clustered error of `assignments` (`ErrorClusterer.assignments_`): each
    (example_id, signature) with its point, in the order of `points`, representatives first.
    The record id is stable (example and signature), so pushing again updates the record."""
    require_columns(assignments, ["example_id", "signature", "point_id", "variant", "text"], "assignments",
                    "pass ErrorClusterer's assignments_")
    table = points.set_index("point_id")
    records = []
    for point_id in points["point_id"]:
        mine = assignments[assignments["point_id"] == point_id]
        representatives = list(table.at[point_id, "representatives"])
        first = {example: rank for rank, example in enumerate(representatives)}
        members = mine.drop_duplicates(["example_id", "signature"])
        members = members.assign(_rank=[first.get(e, len(first)) for e in members["example_id"]]).sort_values(
            "_rank", kind="stable")
        for member in members.to_dict("records"):
            rows = mine[(mine["example_id"] == member["example_id"]) & (mine["signature"] == member["signature"])]
            records.append(RecordData(
                id=member_id(member["example_id"], member["signature"]),
                fields={"text": task.kind.error_context(member), "error": _error_markdown(rows),
                        "proposed": _proposed_markdown(table, point_id, representatives, assignments, task)},
                metadata={"example_id": str(member["example_id"]), "signature": str(member["signature"]),
                          "proposed_point": str(point_id), "priority": len(records) + 1},
                suggestion=Suggested(POINT_QUESTION, str(point_id), None, REVIEWER),
            ))
    return records


def member_id(example_id: str, signature: str) -> str:
    """The record id of one point member: the example id and a short hash of the signature."""
    return f"{example_id}~{hashlib.sha1(str(signature).encode()).hexdigest()[:10]}"


def push_point_review(client: Client, task: Task, points: pd.DataFrame, assignments: pd.DataFrame, name: str, *,
                      workspace: str | None = None) -> PushResult:
    """Push the review of `points` to Argilla dataset `name` (made when missing). Pushing again
    updates the records and option texts and keeps submitted answers; a dataset made for another
    set of points (other point ids) is refused with the ids it lacks."""
    if points.empty:
        raise InputError("there are no points to review: the run has no errors")
    return push_review(client, point_review_layout(task, points), point_review_records(task, points, assignments),
                       name, workspace=workspace)


def pull_point_review(client: Client, task: Task, points: pd.DataFrame, name: str, *, workspace: str | None = None,
                      out_dir: str | Path | None = "annotations") -> pd.DataFrame:
    """The submitted answers of review dataset `name`: `pull_review`'s frame, one row per record
    and annotator with ``record_id``, ``example_id``, ``signature``, ``proposed_point``,
    ``priority``, ``annotator``, ``status``, ``point``, ``point_name``, ``note``, ``suggested``
    and ``submitted_at``; a snapshot is kept under `out_dir`."""
    return pull_review(client, point_review_layout(task, points), name, workspace=workspace, out_dir=out_dir)


def load_point_review(path: str | Path, task: Task, points: pd.DataFrame) -> pd.DataFrame:
    """A snapshot written by `pull_point_review`, as the frame it returned."""
    return load_review(path, point_review_layout(task, points))


def apply_point_review(points: pd.DataFrame, assignments: pd.DataFrame, reviews: pd.DataFrame,
                       predictions: pd.DataFrame, task: Task, *, label_issues: pd.DataFrame | None = None,
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(points, assignments) after the annotators' answers in `reviews` (`pull_point_review`).

    Each reviewed member moves to the point its answers chose ("none": its signature's "other"
    point, made when missing; "relabel": the suspected label errors); `label_issues`
    (`find_label_issues` with the annotators' verdicts) moves examples now flagged to "relabel"
    and examples no longer flagged out of it, to their signature's "other" point. Points left
    empty are dropped; points whose members changed are described again (keywords, size,
    fixed_by, action...), the others kept as they were. Columns: `POINT_COLUMNS` plus
    ``name_source`` ("keywords" or "annotators") and ``reviewed`` (members with a submitted
    answer); assignments gain ``proposed_point_id`` (the point clustering gave, kept across
    reviews). Raises ValueError naming the record when an answer names a point that does not exist.
    """
    require_columns(assignments, ["example_id", "signature", "point_id", "variant", "text"], "assignments",
                    "pass ErrorClusterer's assignments_")
    frame = assignments.copy()
    if "proposed_point_id" not in frame.columns:
        frame["proposed_point_id"] = frame["point_id"]
    table = points.copy()
    for column, default in (("name_source", "keywords"), ("reviewed", 0)):
        if column not in table.columns:
            table[column] = default
    # Points emptied by an earlier application of a review are still valid answers.
    known = set(table["point_id"]) | set(frame["proposed_point_id"].dropna()) | {NO_POINT, RELABEL}
    keys = list(zip(frame["example_id"].astype(str), frame["signature"].astype(str)))
    decisions, names = _decisions(reviews, known, proposed=dict(zip(keys, frame["proposed_point_id"])))
    reviewed = Counter()
    for position, key in enumerate(keys):
        if key in decisions:
            frame.iat[position, frame.columns.get_loc("point_id")] = decisions[key]
    if label_issues is not None and not label_issues.empty:
        flagged = set(label_issues.loc[label_issues["is_label_issue"], "example_id"].astype(str))
        in_relabel = frame["point_id"] == RELABEL
        frame.loc[frame["example_id"].astype(str).isin(flagged), "point_id"] = RELABEL
        frame.loc[in_relabel & ~frame["example_id"].astype(str).isin(flagged), "point_id"] = NO_POINT
    # "none": the member's own signature's "other" point.
    others = {signature: pid for pid, signature, kind in zip(table["point_id"], table["signature"], table["kind"])
              if kind == "other"}
    for position in [i for i, pid in enumerate(frame["point_id"]) if pid == NO_POINT]:
        signature = str(frame.iat[position, frame.columns.get_loc("signature")])
        if signature not in others:
            others[signature] = f"other-{_next_number(set(table['point_id']) | set(others.values()), 'other-')}"
        frame.iat[position, frame.columns.get_loc("point_id")] = others[signature]
    for key in decisions:
        reviewed[decisions[key]] += 1
    return _rebuild(table, frame, predictions, names, others, reviewed), frame


def _decisions(reviews: pd.DataFrame, known: set[str], proposed: dict[tuple[str, str], str],
               ) -> tuple[dict[tuple[str, str], str], dict[str, str]]:
    """(member -> chosen point, point -> new name) from the submitted answers; `proposed` holds
    each member's point from clustering, which wins a tie it is part of."""
    if reviews is None or reviews.empty:
        return {}, {}
    required = ["record_id", "example_id", "signature", "status", POINT_QUESTION,
                RENAME_QUESTION, "submitted_at"]
    missing = [column for column in required if column not in reviews.columns]
    if missing:
        raise InputError(f"reviews lack columns {missing}: pass the frame pull_point_review returns")
    submitted = reviews[reviews["status"] == "submitted"].copy()
    submitted["_at"] = pd.to_datetime(submitted["submitted_at"], utc=True, format="ISO8601")
    submitted = submitted.sort_values("_at", kind="stable")
    unknown = submitted[~submitted[POINT_QUESTION].isin(known)]
    if not unknown.empty:
        row = unknown.iloc[0]
        raise InputError(f"record {row['record_id']} was answered with point {row[POINT_QUESTION]!r}, which is not "
                         f"among these points {sorted(known)}: apply a review to the points it was pushed with")
    decisions = {}
    for (example_id, signature), answers in submitted.groupby(["example_id", "signature"], sort=False):
        key = (str(example_id), str(signature))
        if key not in proposed:
            raise InputError(f"record {answers['record_id'].iloc[0]} reviews example {example_id!r} under "
                             f"{signature!r}, which is not among these errors: apply a review to the run it was "
                             "pushed from")
        decisions[key] = _vote(list(answers[POINT_QUESTION]), prefer=proposed[key])
    names: dict[str, str] = {}
    given = submitted[[not is_missing(n) and str(n).strip() != "" for n in submitted[RENAME_QUESTION]]]
    for point_id, named in given.groupby(POINT_QUESTION, sort=False):
        cleaned = [" ".join(str(n).split()) for n in named[RENAME_QUESTION]]
        spelling = {name.casefold(): name for name in cleaned}  # the latest spelling of each name
        names[str(point_id)] = spelling[_vote([name.casefold() for name in cleaned], prefer=None)]
    return decisions, names


def _vote(answers: Sequence[str], prefer: str | None) -> str:
    """The most common answer; a tie goes to `prefer` when tied, else to the latest (answers are in time order)."""
    counts = Counter(answers)
    best = max(counts.values())
    tied = [answer for answer in counts if counts[answer] == best]
    if prefer in tied:
        return prefer
    return next(answer for answer in reversed(answers) if answer in tied)


def _rebuild(table: pd.DataFrame, frame: pd.DataFrame, predictions: pd.DataFrame, names: dict[str, str],
             others: dict[str, str], reviewed: Counter) -> pd.DataFrame:
    order = list(table["point_id"]) + [pid for pid in others.values() if pid not in set(table["point_id"])]
    # A point emptied by an earlier review may get members again; "relabel" may be new.
    order += [pid for pid in dict.fromkeys(frame["point_id"]) if pid not in order]
    old = table.set_index("point_id")
    members = {pid: list(dict.fromkeys(frame.loc[frame["point_id"] == pid, "example_id"])) for pid in order}
    changed = [pid for pid in order if members[pid]
               and (pid not in old.index or members[pid] != list(old.at[pid, "example_ids"]))]
    texts = dict(zip(frame["example_id"], frame["text"]))
    live = [pid for pid in order if members[pid]]
    words = dict(zip(live, class_keywords([" ".join(texts[e] for e in members[pid]) for pid in live], 3)))
    correct = correct_examples(predictions, frame)
    variants = list(dict.fromkeys(predictions["variant"]))
    rows = []
    for pid in live:
        mine = frame[frame["point_id"] == pid]
        if pid in changed:
            kind = "relabel" if pid == RELABEL else ("other" if pid.startswith("other-") else
                                                    str(old.at[pid, "kind"]) if pid in old.index else "point")
            signature = "suspected label error" if kind == "relabel" else " | ".join(dict.fromkeys(mine["signature"]))
            earlier = list(old.at[pid, "representatives"]) if pid in old.index else []
            kept = [e for e in earlier if e in members[pid]]
            representatives = (kept + [e for e in members[pid] if e not in kept])[: max(len(earlier), 3)]
            # The family (and its note, about the variants' answers, which a review does not change) stays.
            family = (str(old.at[pid, "family"]) if pid in old.index and "family" in old.columns
                      else kind if kind in ("other", "relabel") else "signature")
            note = str(old.at[pid, "family_note"]) if pid in old.index and "family_note" in old.columns else ""
            row = point_row(pid, kind, signature, members[pid], representatives,
                            [] if kind == "relabel" else words[pid], mine, correct, variants,
                            family=family, note=note)
            row["name_source"] = "keywords"
        else:
            row = old.loc[pid].to_dict() | {"point_id": pid}
        if pid in names:
            row["name"], row["name_source"] = names[pid], "annotators"
        row["reviewed"] = int(reviewed.get(pid, 0))
        row["share_of_errors"] = len(mine) / len(frame)
        rows.append(row)
    # Columns added by later steps (an LLM's names) are kept; a point described again has none.
    return pd.DataFrame(rows, columns=list(dict.fromkeys(REVIEWED_POINT_COLUMNS + list(table.columns))))


def _next_number(ids: set[str], prefix: str) -> int:
    numbers = [int(pid[len(prefix):]) for pid in ids if str(pid).startswith(prefix) and pid[len(prefix):].isdigit()]
    return max(numbers, default=0) + 1


def _error_markdown(rows: pd.DataFrame) -> str:
    """What each variant got wrong on this example, one line per distinct mistake."""
    lines: dict[str, list[str]] = {}
    for row in rows.to_dict("records"):
        lines.setdefault(_mistake(row), []).append(str(row["variant"]))
    return "\n".join(f"- {mistake} ({', '.join(dict.fromkeys(variants))})" for mistake, variants in lines.items())


def _mistake(row: dict[str, Any]) -> str:
    parts = [str(row["signature"])]
    for side in ("gold", "predicted"):
        value = row.get(side)
        if isinstance(value, dict) and value.get("text"):
            parts.append(f"{side}: “{value['text']}”")
    return "; ".join(parts)


def _proposed_markdown(table: pd.DataFrame, point_id: str, representatives: list[str], assignments: pd.DataFrame,
                       task: Task) -> str:
    texts = dict(zip(assignments["example_id"], assignments["text"]))
    shown = "\n".join(f"- {_shorten(str(texts[e]))}" for e in representatives if e in texts)
    return (f"**{point_id}: {table.at[point_id, 'name']}**\n\n{table.at[point_id, 'description']}\n\n"
            f"Typical members:\n{shown}")


def _shorten(text: str, limit: int = _OPTION_TEXT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _guidelines(task: Task) -> str:
    definitions = "\n".join(f"- **{label.name}**: {label.definition or 'no definition'}" for label in task.labels)
    return (
        f"# Review the training points of {task.name}\n\n"
        "Each record is one error of the prompt variants, grouped with similar errors into a proposed "
        "**training point** (a recurring failure mode). The proposed point is already chosen.\n\n"
        "- Keep it when the error is the same failure as the point's typical members; otherwise choose the "
        "point it belongs to, or *none* when it fits no point.\n"
        "- Choose *relabel* when the model was right and the gold answer is wrong.\n"
        "- Optionally give the point you chose a better name: a few words for the failure.\n\n"
        f"## Label definitions\n{definitions}"
    )
