"""Rounds compared: which training points a round fixed, which are still open, which points are
new, and which examples regressed.

Three kinds of evidence, kept apart because they are not equally clean:

- **A round's own before/after** (``finetune/lora/before_after.csv``): the model the round started
  from against the model it made, on the round's held-out test cases, with paired tests. This is
  the clean measure: no test case was trained on in that round.
- **The next round's run**: the prompt variants run again on the tuned model over the same
  examples. A point recurs when a point of the next round shares one of its member examples; an
  example regressed when the training variant answered it right in round n and wrong in round
  n+1. Half of a point's members were training rows, so the run's examples are split into the
  ones trained on by the chain of accepted rounds the run's model descends from
  (`rounds.start_chain`; a rejected round's rows were never shown to a later model) and the
  untouched ones; only the untouched ones measure the model without having been shown the answer.
- **New points**: points of round n+1 none of whose members belonged to a point of round n.

A point's **status** comes from the base (the model the round started from) and the tuned score
on its test cases together (`STATUSES`):

- **no test cases**: the round had none for it, so nothing was measured;
- **worse**: the tuned score is below the base's (this wins over "already right": a model that
  broke a point the base had right is not fine);
- **already right**: the base answered every test case right and so does the tuned model;
  nothing was there to fix (test cases are some of the point's members and, for small points,
  pool neighbours the base often answers right);
- **fixed**: the base got some test case wrong, the tuned model gets all of them right, and the
  point does not recur in the next round when there is one that built on this round's model (the
  round after a rejected round runs the model this one started from, so it says nothing);
- **improved**: the tuned score is higher than the base's (including a perfect score on a point
  that recurs);
- **unchanged**: equal scores, both below 1.

A point has a handful of test cases, so "fixed" is a hint that the next round confirms or not,
and the per-point verdicts say whether the paired test (Holm-adjusted across points) could tell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from workbench.core.errors import InputError
from workbench.evaluation.errors import find_errors
from workbench.experiments.rounds import Round, start_chain, started_from_round
from workbench.points.cluster import TRAINABLE_KINDS
from workbench.trainingdata.examples import REGRESSION
from workbench.trainingdata.scoring import ALL_TEST_CASES

SUMMARY_COLUMNS = ["round", "started_from", "accepted", "variant", "examples", "score", "score_untouched", "untouched",
                   "errors", "points", "train_rows", "replayed_rows", "test_cases", "base", "tuned", "verdict",
                   "regression_base", "regression_tuned", "regression_verdict", "rejected_because", "seconds"]
POINT_COLUMNS = ["round", "accepted", "point_id", "name", "size", "action", "cases", "base", "tuned", "verdict",
                 "status", "recurs_as", "members_wrong_next"]
STATUSES = ("fixed", "improved", "already right", "unchanged", "worse", "no test cases")
NEW_POINT_COLUMNS = ["round", "point_id", "name", "size", "action"]
REGRESSION_COLUMNS = ["round", "example_id", "text", "trained_on"]


@dataclass
class RoundComparison:
    """`summary`: one row per round (`SUMMARY_COLUMNS`; ``score`` is the kind's headline metric of
    the training variant over the round's run, ``score_untouched`` over the ``untouched`` examples
    that no round in the chain of accepted rounds the run's model descends from trained on,
    ``base``/``tuned``/``verdict`` the before/after on all test cases,
    ``seconds`` the round's wall time, ``accepted`` whether later rounds build on its model and
    ``rejected_because`` the accept gate's reason when not);
    `points`: every training point of every round (`POINT_COLUMNS`; ``status`` one of
    `STATUSES`, ``accepted`` copied from its round: a point of a rejected round was measured on a
    model no later round builds on); `new_points`: points of round n+1 unrelated to round n's
    (`NEW_POINT_COLUMNS`); `regressions`: examples right in round n's run and wrong in round
    n+1's (`REGRESSION_COLUMNS`; ``trained_on``: a round in the chain round n+1's model descends
    from trained on the example)."""

    summary: pd.DataFrame
    points: pd.DataFrame
    new_points: pd.DataFrame
    regressions: pd.DataFrame
    metric: str


def compare_rounds(rounds: Sequence[Round]) -> RoundComparison:
    """Compare the finished `rounds` of one loop, in order (see the module docstring)."""
    if not rounds:
        raise InputError("no finished rounds to compare: run `workbench loop <config>` first")
    task = rounds[0].run.task
    metric = task.kind.summary_column
    found: dict[tuple[int, str], set[str]] = {}
    by_number = {r.number: r for r in rounds}

    def trained_before(done: Round) -> set[str]:
        # What the model a round's run answered with has been shown: the training rows of the chain
        # of rounds it descends from, not of rejected rounds beside that chain.
        return set().union(*(_trained_on(r) for r in start_chain(by_number, started_from_round(done.record))))

    def wrong_of(done: Round, variant: str) -> set[str]:  # each round's errors once, as current and as next
        if (done.number, variant) not in found:
            found[(done.number, variant)] = _wrong(done, variant)
        return found[(done.number, variant)]

    summary, points, new_points, regressions = [], [], [], []
    for index, current in enumerate(rounds):
        variant = current.record.get("variant", "zero_shot")
        run = current.run
        wrong = wrong_of(current, variant)
        examples = list(dict.fromkeys(run.dataset["example_id"]))
        trained = trained_before(current)
        untouched = [e for e in examples if e not in trained]
        table = current.frame("finetune/lora/before_after.csv")
        summary.append({
            "round": current.number, "started_from": current.record.get("started_from"),
            "accepted": current.record.get("accepted"), "variant": variant,
            "examples": len(examples), "score": _score(run, variant, examples),
            "score_untouched": _score(run, variant, untouched), "untouched": len(untouched),
            **{key: current.record.get("counts", {}).get(key) for key in
               ("errors", "points", "train_rows", "replayed_rows", "test_cases")},
            **_row(table, ALL_TEST_CASES, ""), **_row(table, REGRESSION, "regression_"),
            "rejected_because": current.record.get("rejected_because"),
            "seconds": round(sum(current.record.get("stages", {}).values()), 1),
        })
        following = rounds[index + 1] if index + 1 < len(rounds) else None
        mine = current.frame("points.parquet")
        mine = mine[mine["kind"].isin(TRAINABLE_KINDS)] if not mine.empty else mine
        scores = table.set_index("point_id") if not table.empty else pd.DataFrame()
        next_members = _members(following) if following is not None else {}
        next_wrong = wrong_of(following, variant) if following is not None else set()
        # Only a next round that runs this round's model can confirm a fix.
        builds_on = following is not None and started_from_round(following.record) == current.number
        for point in mine.to_dict("records"):
            members = set(point["example_ids"])
            row = scores.loc[point["point_id"]] if point["point_id"] in scores.index else None
            recurs = sorted(p for p, ids in next_members.items() if ids & members)
            tuned = float(row["tuned"]) if row is not None else float("nan")
            base = float(row["base"]) if row is not None else float("nan")
            cases = int(row["cases"]) if row is not None else 0
            points.append({
                "round": current.number, "accepted": current.record.get("accepted"), "point_id": point["point_id"],
                "name": point["name"], "size": point["size"],
                "action": point["action"], "cases": cases, "base": base,
                "tuned": tuned, "verdict": row["verdict"] if row is not None else "no test cases",
                "status": point_status(base, tuned, cases, recurs=builds_on and bool(recurs)),
                "recurs_as": ", ".join(recurs),
                "members_wrong_next": (len(members & next_wrong) / len(members)) if following and members
                else float("nan"),
            })
        if following is not None:
            known = set().union(*(set(ids) for ids in mine["example_ids"])) if not mine.empty else set()
            nxt = following.frame("points.parquet")
            for point in (nxt[nxt["kind"].isin(TRAINABLE_KINDS)].to_dict("records") if not nxt.empty else []):
                if not set(point["example_ids"]) & known:
                    new_points.append({"round": following.number, **{k: point[k] for k in NEW_POINT_COLUMNS[1:]}})
            trained_next = trained_before(following)
            texts = following.run.dataset.drop_duplicates("example_id").set_index("example_id")["text"]
            for example in examples:
                if example not in wrong and example in next_wrong:
                    regressions.append({"round": following.number, "example_id": example,
                                        "text": texts.get(example, ""), "trained_on": example in trained_next})
    return RoundComparison(pd.DataFrame(summary, columns=SUMMARY_COLUMNS), pd.DataFrame(points, columns=POINT_COLUMNS),
                           pd.DataFrame(new_points, columns=NEW_POINT_COLUMNS),
                           pd.DataFrame(regressions, columns=REGRESSION_COLUMNS), metric)


def point_status(base: float, tuned: float, cases: int, *, recurs: bool = False) -> str:
    """A point's status (one of `STATUSES`, see the module docstring) from the `base` and `tuned`
    scores on its `cases` test cases (higher is better); `recurs`: a next round built on the
    tuned model has a point sharing its members."""
    if not cases or math.isnan(base) or math.isnan(tuned):
        return "no test cases"
    # Scores of a few dozen cases: compare with a tolerance so that 0.1 + 0.2 style sums do not
    # turn "unchanged" into "worse".
    if math.isclose(tuned, base, abs_tol=1e-9):
        return "already right" if math.isclose(base, 1.0, abs_tol=1e-9) else "unchanged"
    if tuned < base:
        return "worse"
    if math.isclose(tuned, 1.0, abs_tol=1e-9) and not recurs:
        return "fixed"
    return "improved"


def _wrong(current: Round, variant: str) -> set[str]:
    """The examples the round's run answered wrong (first repeat) with `variant`."""
    run = current.run
    answered = run.predictions[(run.predictions["variant"] == variant) & (run.predictions["repeat"] == 0)]
    if answered.empty:
        raise InputError(f"round {current.number}'s run has no answers with variant {variant!r}: the loop's "
                         "training variant must be one of the experiment's variants")
    return set(find_errors(answered, run.dataset, run.task)["example_id"])


def _score(run, variant: str, examples: list[str]) -> float:
    if not examples:
        return float("nan")
    keep = set(examples)
    answered = run.predictions[(run.predictions["variant"] == variant) & run.predictions["example_id"].isin(keep)]
    dataset = run.dataset[run.dataset["example_id"].isin(keep)]
    scores = run.task.kind.score(answered, dataset, run.task)
    return float(scores[run.task.kind.summary_column].iloc[0])


def _members(current: Round) -> dict[str, set[str]]:
    points = current.frame("points.parquet")
    if points.empty:
        return {}
    points = points[points["kind"].isin(TRAINABLE_KINDS)]
    return {p: set(ids) for p, ids in zip(points["point_id"], points["example_ids"])}


def _trained_on(current: Round) -> set[str]:
    rows = current.frame("training_data/train_rows.parquet")
    return set(rows["example_id"]) if not rows.empty else set()


def _row(table: pd.DataFrame, point: str, prefix: str) -> dict[str, object]:
    found = table[table["point_id"] == point] if not table.empty else table
    if found.empty:
        return {f"{prefix}base": float("nan"), f"{prefix}tuned": float("nan"), f"{prefix}verdict": ""}
    row = found.iloc[0]
    return {f"{prefix}base": float(row["base"]), f"{prefix}tuned": float(row["tuned"]),
            f"{prefix}verdict": row["verdict"]}


def write_loop_report(folder: str | Path, *, title: str | None = None) -> tuple[Path, RoundComparison]:
    """Compare the finished rounds in the loop `folder` and write ``rounds.html`` there (with each
    round's reference arms, `arms.loop_arms`, when it trained any); returns (its path, the
    comparison)."""
    from workbench.experiments.arms import loop_arms
    from workbench.experiments.rounds import load_rounds
    from workbench.reporting.rounds_report import write_rounds_report

    folder = Path(folder)
    rounds = load_rounds(folder)
    comparison = compare_rounds(rounds)
    name = rounds[0].run.name
    arms, arm_verdicts = loop_arms(rounds)
    path = write_rounds_report(folder / "rounds.html", title=title or f"{name}: the loop, round by round",
                               summary=comparison.summary, points=comparison.points,
                               new_points=comparison.new_points, regressions=comparison.regressions,
                               metric=comparison.metric, arms=arms, arm_verdicts=arm_verdicts)
    return path, comparison
