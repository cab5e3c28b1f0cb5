"""Reference arms of a loop round: does targeted training data beat plain fine-tuning?

A round trains on its *targeted* rows: its training points' members, their pool neighbours, anchor
rows and the rows replayed from earlier rounds. A better tuned model alone does not show that the
targeting helped: any fine-tuning on labelled rows of the task might have done as well. So a round
can also train reference arms (`RoundSettings.arms`, ``--arms targeted,random,all``):

- ``random``: as many labelled rows as the targeted arm trained on, drawn at random (seeded by the
  training seed and the round number) from the experiment's labelled pool (`Experiment.examples`);
- ``all``: every labelled pool row.

Both leave out every pool row that is one of the round's test cases or a near-duplicate of one
(`leakage.find_leaks`: the same id, equal normalised text, or cosine at the round's
`near_duplicate` threshold), so that no arm is shown a test case's answer. If the pool holds
fewer such rows than the targeted arm trained on, the random arm takes them all (its ``rows`` say
so). Every arm trains with the targeted arm's settings, from the same start adapter, for exactly
the targeted arm's number of optimizer steps (``max_steps``), so they differ in their rows alone:
the random arm sees the same number of rows as often as the targeted one, the all arm sees more
rows fewer times each. Rows are rendered with the round's training variant exactly as the
training-data frame renders its own (`trainingdata.examples`), and each arm's model answers the
round's test cases with that variant.

Only the targeted arm is built on: its adapter stays in ``finetune/lora/`` and it alone passes the
accept gate. The others are references, in ``finetune/<arm>/`` (``adapter/``; ``adapter.gguf``
for the embedded model; ``rows.parquet``: the rows trained on, ``predictions.parquet``: the arm's
answers), compared in ``finetune/arms.csv`` (`ARM_COLUMNS`) and summarised in ``round.json``
under ``arms``.

The comparisons are the evaluation stage's paired test (`significance.compare_variants`, the test
the before/after uses: McNemar's score test with Tango's interval for accuracy, a paired BCa
bootstrap otherwise), each arm against the targeted arm and against the start model (answering
with the training variant, as in ``before_after.csv``), on all test cases and on the regression
set; the p-values of every comparison in the table are Holm-adjusted together and the verdicts
rest on the adjusted ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.core.answers import is_missing
from workbench.core.errors import InputError
from workbench.core.frames import read_frame, write_frame
from workbench.core.task import Task

TARGETED = "targeted"
RANDOM = "random"
ALL_ROWS = "all"
ARMS = (TARGETED, RANDOM, ALL_ROWS)
REFERENCE_ARMS = (RANDOM, ALL_ROWS)
START = "start"
SETS = ("all test cases", "regression set")
ARM_COLUMNS = ["arm", "set", "rows", "steps", "cases", "metric", "score", "start_score",
               "vs_targeted_difference", "vs_targeted_low", "vs_targeted_high", "vs_targeted_p_value",
               "vs_targeted_p_adjusted", "vs_targeted_verdict",
               "vs_start_difference", "vs_start_low", "vs_start_high", "vs_start_p_value", "vs_start_p_adjusted",
               "vs_start_verdict", "method"]


def check_arms(arms: Sequence[str], pool: pd.DataFrame | None) -> tuple[str, ...]:
    """The arms in `ARMS` order; raises ValueError saying what was wrong and how to fix it when an
    arm is unknown or repeated, "targeted" is missing, `arms` is a bare string, or a reference
    arm is asked for without a labelled `pool` to draw from."""
    if isinstance(arms, str):
        raise InputError(f"arms must be a sequence of arm names, got the string {arms!r}: pass "
                         f"{tuple(a.strip() for a in arms.split(','))!r} (the CLI's --arms is comma-separated)")
    arms = tuple(arms)
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise InputError(f"unknown arm(s) {unknown}: the arms are {', '.join(ARMS)} (--arms targeted,random,all)")
    if len(set(arms)) != len(arms):
        raise InputError(f"arms {list(arms)} name an arm twice: name each once")
    if TARGETED not in arms:
        raise InputError(f"arms {list(arms)} leave out {TARGETED!r}: the targeted arm is the round's model, the one "
                         "the others are references for; include it (--arms targeted,random,all)")
    extra = [a for a in arms if a != TARGETED]
    if extra and (pool is None or len(pool) == 0):
        raise InputError(f"arm(s) {', '.join(extra)} train on the experiment's labelled pool, and it has none: set "
                         "`examples:` in the config (a labelled file, usually the train split) or use --arms targeted")
    return tuple(a for a in ARMS if a in arms)


def eligible_pool(pool: pd.DataFrame, examples: pd.DataFrame, task: Task, encoder: Any,
                  threshold: float) -> pd.DataFrame:
    """The labelled rows of `pool` (``example_id``, ``text``, the task's target column; one per
    example id, a missing target left out) that a reference arm may train on: none is one of the
    test cases of `examples` (the training-data frame) or a near-duplicate of one (`find_leaks`
    at cosine `threshold`). Columns and order as in `pool`."""
    from workbench.trainingdata.leakage import find_leaks

    target = task.kind.target_column
    labelled = pool.drop_duplicates("example_id")
    labelled = labelled[~labelled[target].map(is_missing)].reset_index(drop=True)
    tests = examples.loc[examples["split"] == "test", ["point_id", "split", "example_id", "text"]]
    if labelled.empty or tests.empty:
        return labelled
    candidates = pd.DataFrame({"point_id": "pool", "split": "train", "example_id": labelled["example_id"].astype(str),
                               "text": labelled["text"].astype(str)})
    leaks = find_leaks(pd.concat([tests, candidates], ignore_index=True), encoder, threshold)
    near = set(leaks["train_example"].astype(str))
    return labelled[~labelled["example_id"].astype(str).isin(near)].reset_index(drop=True)


def arm_rows(arm: str, eligible: pd.DataFrame, size: int, seed: Sequence[int]) -> pd.DataFrame:
    """The rows of `eligible` arm `arm` trains on: `size` of them drawn without replacement with a
    generator seeded by `seed` (``random``; all of them when fewer), or every one (``all``)."""
    if arm == ALL_ROWS:
        return eligible.reset_index(drop=True)
    if arm != RANDOM:
        raise InputError(f"arm {arm!r} draws no pool rows (reference arms: {', '.join(REFERENCE_ARMS)})")
    take = min(size, len(eligible))
    return eligible.sample(n=take, random_state=np.random.default_rng(list(seed))).reset_index(drop=True)


def render_rows(rows: pd.DataFrame, task: Task, variant: str, arm: str) -> pd.DataFrame:
    """Pool `rows` as training rows (`trainingdata.examples.TRAINING_COLUMNS`; ``point_id`` and
    ``source`` the arm's name, ``split`` "train"), ``answer`` and ``messages`` rendered with
    `variant` by the training-data frame's own renderer (chain-of-thought reasoning included)."""
    from workbench.prompting.variants import parse_variant
    from workbench.trainingdata.examples import render_rows as render_training_rows

    target = task.kind.target_column
    records = [{"point_id": arm, "split": "train", "source": arm, "example_id": str(e), "text": str(text),
                "target": value, "synthetic": False, "signature": None, "distance": None}
               for e, text, value in zip(rows["example_id"], rows["text"], rows[target])]
    return render_training_rows(records, task, parse_variant(variant), None)


def compare_arms(predictions: pd.DataFrame, examples: pd.DataFrame, task: Task, rows: dict[str, int],
                 steps: dict[str, int], *, seed: int = 0) -> pd.DataFrame:
    """Every arm on the test cases of `examples`, one row per arm and set (`ARM_COLUMNS`).

    `predictions` holds one answer per test case per model, ``variant`` naming it: ``start`` (the
    start model), ``targeted`` and each other arm of `rows` (arm -> rows trained on; `steps`: arm
    -> optimizer steps). Sets: all test cases, and the regression set when the round has one.
    ``score`` and ``start_score`` are the kind's headline metric (higher is better) of the arm and
    of the start model; ``vs_targeted_*`` (empty for the targeted arm) and ``vs_start_*`` the
    paired comparison of the arm against them: ``difference`` (the arm minus the other),
    ``low``/``high`` (the test's unadjusted 95% interval), ``p_value``, ``p_adjusted`` (Holm across
    every comparison of the table) and ``verdict`` ("better", "worse" or "no clear difference" for
    the arm, from the adjusted p-value below 0.05). ``method`` names the test."""
    from workbench.evaluation.significance import compare_variants, holm
    from workbench.trainingdata.examples import REGRESSION
    from workbench.trainingdata.scoring import gold_of

    gold = gold_of(examples, task)
    tests = examples[examples["split"] == "test"]
    sets = {SETS[0]: set(tests["example_id"]), SETS[1]: set(tests.loc[tests["point_id"] == REGRESSION, "example_id"])}
    table, comparisons = [], []
    for name, ids in sets.items():
        if not ids:
            continue  # no regression cases this round
        mine, truth = predictions[predictions["example_id"].isin(ids)], gold[gold["example_id"].isin(ids)]
        for arm in rows:
            row: dict[str, Any] = {"arm": arm, "set": name, "rows": rows[arm], "steps": steps[arm]}
            for other in (TARGETED, START):
                if other == arm:
                    continue
                found = compare_variants(mine, truth, task, arm, other, seed=seed)
                comparisons.append((len(table), other, found))
                row.update({"cases": found.examples, "metric": found.metric, "score": found.a,
                            "method": found.method})
                if other == START:
                    row["start_score"] = found.b
            table.append(row)
    adjusted = holm([found.p_value for _, _, found in comparisons]) if comparisons else []
    for (index, other, found), p in zip(comparisons, adjusted):
        decided = replace(found, p_adjusted=p, adjustment="holm")
        prefix = "vs_targeted_" if other == TARGETED else "vs_start_"
        verdict = ("no clear difference" if not decided.significant or decided.difference == 0
                   else "better" if decided.difference > 0 else "worse")
        table[index].update({f"{prefix}difference": found.difference, f"{prefix}low": found.low,
                             f"{prefix}high": found.high, f"{prefix}p_value": found.p_value,
                             f"{prefix}p_adjusted": p, f"{prefix}verdict": verdict})
    return pd.DataFrame(table, columns=ARM_COLUMNS)


def arms_verdict(table: pd.DataFrame, number: int | None = None) -> str:
    """One sentence from `compare_arms`' `table`: which arm scored best on all test cases (the
    targeted arm on a tie) and whether the paired test could tell it from the targeted arm (or,
    when the targeted arm is best, from each other arm). '' without arms to compare."""
    every = table[table["set"] == SETS[0]] if not table.empty else table
    if every.empty or len(every) < 2:
        return ""
    every = every.set_index("arm")
    head = f"Round {number}: " if number is not None else ""
    targeted = float(every.loc[TARGETED, "score"])
    best = max(every.index, key=lambda arm: (round(float(every.loc[arm, "score"]), 9), arm == TARGETED))
    cases = int(every.loc[TARGETED, "cases"])
    if best != TARGETED:
        row = every.loc[best]
        told = row["vs_targeted_verdict"] != "no clear difference"
        return (f"{head}the {best} arm scored best on all test cases ({float(row['score']):.3f} against the targeted "
                f"arm's {targeted:.3f}, {cases} cases); the paired test "
                + ("told them apart" if told else "could not tell it from the targeted arm")
                + f" (difference {float(row['vs_targeted_difference']):+.3f}, 95% interval "
                  f"{float(row['vs_targeted_low']):+.3f} to {float(row['vs_targeted_high']):+.3f}, Holm-adjusted "
                  f"p = {float(row['vs_targeted_p_adjusted']):.3g}).")
    others = []
    for arm, row in every.drop(index=TARGETED).iterrows():
        told = row["vs_targeted_verdict"] != "no clear difference"
        tie = " (a tie)" if np.isclose(float(row["score"]), targeted) else ""
        others.append(f"{'told it apart from' if told else 'could not tell it from'} the {arm} arm "
                      f"({float(row['score']):.3f}{tie}, Holm-adjusted p = {float(row['vs_targeted_p_adjusted']):.3g})")
    return (f"{head}the targeted arm scored best on all test cases ({targeted:.3f}, {cases} cases); the paired test "
            + " and ".join(others) + ".")


def run_arms(arms: Sequence[str], *, examples: pd.DataFrame, train: pd.DataFrame, steps: int, pool: pd.DataFrame,
             task: Task, variant: str, training: Any, config: dict[str, Any], start_from: Path | None, work: Path,
             number: int, encoder: Any, threshold: float, options: Any = None, progress: bool = False,
             log: Any = print, launch: Any = None) -> dict[str, Any]:
    """Train and answer the reference arms of `arms` for the round in `work`, compare them with the
    targeted arm and the start model, write ``finetune/<arm>/`` and ``finetune/arms.csv``, and
    return the summary for ``round.json`` (``arms``, ``steps``, ``rows`` (arm -> rows trained on),
    ``steps_per_arm``, ``eligible_pool_rows``, ``adapters``, ``all_test_cases`` (arm -> score),
    ``best``, ``verdict``, ``notes``: what a reader should know, e.g. an arm left untrained because
    fewer than `MIN_ROWS` eligible pool rows remained).

    `examples` is the round's training-data frame, `train` the targeted rows and `steps` the
    targeted arm's optimizer steps; `training` the round's `AdapterSettings`; `config` the model
    config the round's models are made from and `start_from` the start round's peft adapter
    (None: the base model); `launch` how each arm trains, as the targeted arm did
    (`finetune.launch.TrainingLaunch`; None: the workbench's loop in this process). The targeted
    arm's and the start model's answers are read from
    ``finetune/lora/predictions.parquet`` (``tuned`` and ``base``), the ones the before/after used."""
    from workbench.finetune.checks import MIN_ROWS, check_training_rows
    from workbench.finetune.local_models import served_adapter, tuned_model_config
    from workbench.models.registry import model_from_config

    arms = check_arms(arms, pool)
    reference = read_frame(work / "finetune" / "lora" / "predictions.parquet")
    reference = reference[reference["variant"].isin(["base", "tuned"])]
    predictions = [reference.assign(variant=reference["variant"].map({"base": START, "tuned": TARGETED}))]
    eligible = eligible_pool(pool, examples, task, encoder, threshold)
    rows, arm_steps = {TARGETED: int(len(train))}, {TARGETED: int(steps)}
    adapters, notes = {TARGETED: str(served_adapter(config, Path("finetune") / "lora"))}, []
    for arm in (a for a in arms if a != TARGETED):
        chosen = arm_rows(arm, eligible, len(train), (int(training.seed), int(number)))
        if len(chosen) < MIN_ROWS:
            # A small pool that the test cases used up: the round and its targeted model still count.
            notes.append(f"the {arm} arm was not trained: {len(chosen)} labelled pool row(s) are no test case nor "
                         f"near one, and training needs at least {MIN_ROWS}; give the experiment a larger pool")
            log(f"[arms] {notes[-1]}")
            continue
        if arm == RANDOM and len(chosen) < len(train):
            notes.append(f"the random arm trained on {len(chosen)} row(s), fewer than the targeted arm's {len(train)}: "
                         f"the pool has only {len(eligible)} labelled row(s) that are no test case nor near one")
        rendered = render_rows(chosen, task, variant, arm)
        check_training_rows(rendered, task)
        folder = work / "finetune" / arm
        folder.mkdir(parents=True, exist_ok=True)
        write_frame(rendered, folder / "rows.parquet")
        log(f"[arms] {arm}: {len(rendered)} row(s), {steps} step(s)")
        # Same settings and start as the targeted arm, and its step count: only the rows differ.
        arm_steps[arm] = train_arm(rendered, folder, replace(training, max_steps=int(steps)), config, start_from,
                                   progress, launch=launch)
        rows[arm] = int(len(rendered))
        adapters[arm] = str(served_adapter(config, Path("finetune") / arm))
        model = model_from_config(tuned_model_config(config, folder))
        answers = answer_arm(model, examples, task, variant, work / "cache.sqlite", options, progress).assign(
            variant=arm)
        del model  # one arm's model in memory at a time
        write_frame(answers, folder / "predictions.parquet")
        predictions.append(answers)
    table = compare_arms(pd.concat(predictions, ignore_index=True), examples, task, rows, arm_steps)
    table.to_csv(work / "finetune" / "arms.csv", index=False)
    every = table[table["set"] == SETS[0]].set_index("arm")["score"]
    verdict = arms_verdict(table, number)
    log(f"[arms] {verdict}")
    return {"arms": list(arms), "steps": int(steps), "rows": rows, "steps_per_arm": arm_steps,
            "eligible_pool_rows": int(len(eligible)), "adapters": adapters,
            "all_test_cases": {arm: float(score) for arm, score in every.items()},
            "best": max(every.index, key=lambda arm: (round(float(every[arm]), 9), arm == TARGETED)),
            "verdict": verdict, "notes": notes}


def train_arm(rows: pd.DataFrame, folder: Path, training: Any, config: dict[str, Any], start_from: Path | None,
              progress: bool, launch: Any = None) -> int:
    """LoRA on `rows`' ``messages`` in `folder` on the base of the local model config `config`
    (``adapter/``, for the embedded model converted to ``adapter.gguf`` for llama.cpp;
    `launch.train_step` with `launch`), like the targeted arm's training; returns the optimizer
    steps taken."""
    from workbench.finetune.launch import train_step

    names = [f"example {e} ({source} arm)" for e, source in zip(rows["example_id"], rows["source"])]
    trained = train_step(list(rows["messages"]), folder, config, settings=training, names=names,
                         progress=progress, start_from=start_from, launch=launch)
    return int(trained.steps)


def answer_arm(model: Any, examples: pd.DataFrame, task: Task, variant: str, cache: Path, options: Any,
               progress: bool) -> pd.DataFrame:
    """`model`'s answers to the test cases of `examples` with `variant`, one per case, through the
    round's response cache (runner columns, `PREDICTION_COLUMNS`)."""
    from workbench.prompting.runner import run_variants
    from workbench.trainingdata.scoring import gold_of

    return run_variants(task, gold_of(examples, task), [variant], model, repeats=1, options=options, cache=cache,
                        progress=progress)


def loop_arms(rounds: Sequence[Any]) -> tuple[pd.DataFrame, dict[int, str]]:
    """The arms tables of finished `rounds` (`rounds.Round`), for the loop's report: `ARM_COLUMNS`
    with ``round`` first (empty when no round trained reference arms), and round number -> its
    one-sentence verdict (`arms_verdict`)."""
    frames, verdicts = [], {}
    for done in rounds:
        table = done.frame("finetune/arms.csv")
        if table.empty:
            continue
        frames.append(table.assign(round=done.number))
        verdicts[done.number] = arms_verdict(table, done.number)
    if not frames:
        return pd.DataFrame(columns=["round", *ARM_COLUMNS]), {}
    frame = pd.concat(frames, ignore_index=True)
    return frame[["round", *ARM_COLUMNS]], verdicts
