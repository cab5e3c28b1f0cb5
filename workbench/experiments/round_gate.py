"""What a loop round may build on: the accept gate against the start model's stronger prompt, and
the fingerprint of the settings that decide what a round means.

A round's tuned model is built on only when it is not worse than the model it started from by more
than a stated margin (non-inferiority) on all test cases and on the regression set (`accept_gate`),
where the start answers with the stronger of its prompts (`strongest_start`). A later round with
other settings than the last one recorded is refused unless forced (`fingerprint`,
`fingerprint_differences`), since its comparison would mix example sets, prompts or trainings.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.core.frames import plain
from workbench.experiments.arms import ARMS
from workbench.trainingdata.examples import REGRESSION
from workbench.trainingdata.scoring import ALL_TEST_CASES

if TYPE_CHECKING:
    from workbench.experiments.config import Experiment
    from workbench.experiments.rounds import RoundSettings


def fingerprint(experiment: Experiment, settings: RoundSettings) -> dict[str, Any]:
    """What decides what a round means, as plain JSON values: ``examples`` (how many the run
    evaluates and a SHA-256 of their sorted ids: `--limit` and the dataset), ``variants`` (the
    experiment's), ``variant`` (the training variant), ``distance_threshold``, ``min_size``,
    ``anchors`` (`RoundSettings.anchor_share`, under the key rounds were recorded with, so that
    their fingerprints still match), ``regression_size``, ``replay``, ``margin``,
    ``near_duplicate``, ``arms`` (in `arms.ARMS` order), ``trainer`` (`TrainingLaunch.trainer`:
    another trainer makes another adapter) and ``training`` (every `AdapterSettings` field). Not in
    it: `compare_repeats` (extra consistency answers only), `keep_worse` (a decision about the next
    round, recorded as ``accepted``) and the launcher and its processes (where the training runs,
    not what it trains: one launched process reaches in-process training's adapter to the bit,
    several differ from it by floating-point amounts; recorded in ``settings.launch``)."""
    ids = sorted(str(e) for e in experiment.dataset["example_id"].unique())
    return json.loads(json.dumps({
        "examples": {"count": len(ids), "sha256": hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()},
        "variants": list(experiment.variants), "variant": settings.variant,
        "distance_threshold": settings.distance_threshold, "min_size": settings.min_size,
        "anchors": settings.anchor_share, "regression_size": settings.regression_size, "replay": settings.replay,
        "margin": settings.margin, "near_duplicate": settings.near_duplicate,
        "arms": [arm for arm in ARMS if arm in settings.arms], "trainer": settings.launch.trainer,
        "training": dict(vars(settings.training)),
    }, default=str))


# How each fingerprint key is set from the command line, for the refusal message.
_SETTING_NAMES = {"examples": "the examples evaluated (--limit, the dataset)", "variants": "--variants",
                  "variant": "--train-variant", "distance_threshold": "the clustering's distance_threshold",
                  "min_size": "the clustering's min_size", "anchors": "--anchors",
                  "regression_size": "--regression-size", "replay": "--no-replay", "margin": "--margin",
                  "training.epochs": "--epochs", "training.max_steps": "--steps",
                  "training.learning_rate": "--learning-rate", "training.r": "--rank", "training.alpha": "--rank",
                  "training.batch_size": "--batch-size", "training.max_length": "--max-length",
                  "near_duplicate": "--near-duplicate", "arms": "--arms", "trainer": "--trainer"}

# Fingerprint keys added after rounds were recorded, with the value those rounds ran with.
_BEFORE_RECORDED = {"arms": ["targeted"], "trainer": "workbench"}


def fingerprint_differences(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """One line per setting that differs between two fingerprints: its name (and flag), the value
    before and the value now."""
    def flat(values: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in values.items():
            if key == "training" and isinstance(value, dict):
                out.update({f"training.{k}": v for k, v in value.items()})
            else:
                out[key] = value
        return out

    old, new = {**_BEFORE_RECORDED, **flat(before)}, flat(now)
    return [f"{_SETTING_NAMES.get(key, key)}: {old.get(key)!r} before, {new.get(key)!r} now"
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def accept_gate(table: pd.DataFrame, margin: float) -> tuple[list[dict[str, Any]], str | None]:
    """Whether a round's tuned model may be built on, from its before/after `table` (``point_id``,
    ``cases``, ``base``, ``tuned``; ``difference``, ``low``, ``high``, ``verdict`` when present).

    The rule (non-inferiority on the point estimate): on all test cases and on the regression set
    (when the round has one), the tuned score must be at least the base score minus `margin`
    (``tuned - base >= -margin``, in the kind's headline metric, higher is better). A set with a
    missing score fails. Why the point estimate and not the lower bound of the paired interval:
    a round has 20 to 70 test cases, where the 95% interval of a difference in accuracy is about
    ±0.15 to ±0.25 wide; "lower bound >= -0.02" would reject nearly every round, clearly better
    ones included, so the loop could never build on anything. The paired test alone (the old gate:
    reject only on a significant "worse") accepts large drops such as 0.433 -> 0.313 on 67 cases.
    The point estimate is the best single guess of the change, and the margin states how much
    loss is tolerated; the interval and verdict are recorded beside it so a reader sees how sure
    the figure is.

    `table` may come from `strongest_start` (``start_prompt`` names the start's prompt). Returns
    (one dict per set checked: ``set``, ``cases``, ``base``, ``tuned``, ``difference``, ``low``,
    ``high``, ``verdict``, ``start_prompt``, ``passed``; the reason for rejection naming the sets and
    figures, None when accepted)."""
    checks: list[dict[str, Any]] = []
    for name, key in (("all test cases", ALL_TEST_CASES), ("the regression set", REGRESSION)):
        found = table[table["point_id"] == key] if not table.empty else table
        if found.empty or not found.iloc[0]["cases"]:
            continue  # no regression cases this round: nothing to check there
        row = found.iloc[0]
        base, tuned = float(row["base"]), float(row["tuned"])
        difference = tuned - base
        # round(): 0.30 - 0.32 is -0.02000000000000002 in floats, which is not beyond a 0.02 margin.
        passed = not (pd.isna(difference) or round(difference, 9) < -margin)
        checks.append({"set": name, "cases": int(row["cases"]), "base": base, "tuned": tuned,
                       "difference": difference, "low": plain(row.get("low")), "high": plain(row.get("high")),
                       "verdict": row.get("verdict"), "start_prompt": row.get("start_prompt", "training variant"),
                       "passed": passed})
    failed = [c for c in checks if not c["passed"]]
    if not failed:
        return checks, None
    return checks, (f"more than the margin {margin:g} below its start on "
                    + " and on ".join(f"{c['set']} ({c['base']:.3f} -> {c['tuned']:.3f}, difference "
                                      f"{c['difference']:+.3f}{_interval(c)}, {c['cases']} cases)" for c in failed))


def strongest_start(table: pd.DataFrame, versus_best: pd.DataFrame | None) -> pd.DataFrame:
    """The before/after `table` with, per row, the start model's stronger prompt as ``base``: its
    answers with the training variant (`table`) or with its best prompt variant (`versus_best`,
    the same columns; None when the training variant is the best). Column ``start_prompt`` says
    which ("training variant" or "best prompt").

    Why: the tuned model answers the compact `tuned` prompt, which lists no labels; the base model
    given that prompt is often weak (it has not learned them, though constrained decoding still
    holds its answer to them), so beating it alone proves little. A user would run the base model
    with its best prompt, so the stronger of the two is the start a round must not fall below."""
    chosen = table.assign(start_prompt="training variant")
    if versus_best is None or versus_best.empty:
        return chosen
    best = versus_best.set_index("point_id")
    rows = []
    for row in chosen.to_dict("records"):
        other = best.loc[row["point_id"]] if row["point_id"] in best.index else None
        if other is not None and float(other["base"]) > float(row["base"]):
            row = {**row, **{k: other[k] for k in table.columns if k in other.index}, "start_prompt": "best prompt"}
        rows.append(row)
    return pd.DataFrame(rows, columns=chosen.columns)


def _interval(check: dict[str, Any]) -> str:
    low, high = check.get("low"), check.get("high")
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return ""
    return f", 95% interval {low:+.3f} to {high:+.3f}"
