"""Several runs side by side: which model or prompt is better, and can the data tell?

In: runs of one task (`workbench.experiments.runs.Run`, as `load_run` reads them; anything with
the attributes of `ComparedRun`). Every (run, variant) pair is an *arm*. The runs must share the
task's kind and label set, and at least one example_id (with the same text and gold); a run given
twice, fewer than two arms, or shared examples whose text or gold differ are refused with a
`ValueError` naming both runs and what differs.

Every number is computed on the examples **all** arms answered (the shared examples), so the arms'
scores, intervals and paired tests are about the same examples; examples only some runs have are
counted as dropped and said so.

Out:
- `comparison_arms`: one row per arm (label, run, model, headline metric with its interval, cost
  and latency);
- `paired_comparisons`: every arm against a baseline arm, Holm-adjusted, with a verdict;
- `answer_matrix`: example x arm answers as a reader sees them, marked right or wrong;
- `write_comparison`: the only function here that touches disk: all of the above as one
  self-contained HTML page (plotly.js embedded once, no network needed; the "differences only"
  filter of its answer matrix is a few lines of inline JavaScript). The page's markup lives in
  `workbench.reporting.compare_page` and ``templates/compare.html.jinja``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePath
from typing import Any, Protocol

import pandas as pd

from workbench.core.errors import InputError
from workbench.core.task import Task
from workbench.evaluation.efficiency import summarize_run
from workbench.evaluation.significance import Comparison, bootstrap_ci, compare_all, default_metric
from workbench.reporting.compare_page import MAX_MATRIX_ROWS, SMALL_SAMPLE, render_comparison
from workbench.reporting.provenance import describe_model, iso_time

NO_ANSWER = "no usable answer"
ARM_COLUMNS = [
    "arm", "run", "run_id", "model", "variant", "examples", "dropped", "rows", "metric", "value", "low", "high",
    "interval", "parse_failure_rate", "request_error_rate", "latency_p50_s", "latency_p95_s", "tokens_in_mean",
    "tokens_out_mean", "cost_per_1000",
]
COMPARISON_COLUMNS = [
    "arm", "baseline", "metric", "a", "b", "difference", "low", "high", "p_value", "p_adjusted", "method",
    "examples", "dropped", "verdict", "small", "examples_needed",
]


class ComparedRun(Protocol):
    """What a comparison reads of a run (`workbench.experiments.runs.Run` has all of it)."""

    @property
    def name(self) -> str: ...
    @property
    def task(self) -> Task: ...
    @property
    def dataset(self) -> pd.DataFrame: ...
    @property
    def predictions(self) -> pd.DataFrame: ...
    @property
    def provenance(self) -> Mapping[str, Any]: ...
    @property
    def run_id(self) -> str: ...


@dataclass(frozen=True)
class _Arms:
    """The runs checked and merged: `predictions` and `gold` on the shared examples only, with
    ``variant`` renamed to the arm's label; `arms` has one row per arm (label, run, variant)."""

    runs: tuple[ComparedRun, ...]
    task: Task
    arms: pd.DataFrame  # arm, run_index, run, run_id, model, variant, answered
    predictions: pd.DataFrame
    gold: pd.DataFrame
    shared: tuple[str, ...]
    answered: int  # examples at least one arm answered

    @property
    def labels(self) -> list[str]:
        return list(self.arms["arm"])


def comparison_arms(runs: Sequence[ComparedRun]) -> pd.DataFrame:
    """One row per arm (run order, then variant order), scored on the shared examples.

    Columns: ``arm`` (unique label: the parts that tell arms apart of short model name, run id tail
    and variant; the variant always), ``run`` (the run's name), ``run_id``, ``model`` (the model in
    words, `describe_model`; None when the provenance has none), ``variant``, ``examples`` (shared
    examples scored), ``dropped`` (examples this arm answered that not every arm did, left out),
    ``rows`` (prediction rows scored: examples x repeats), ``metric`` (the task's headline metric,
    `default_metric`; higher is better), ``value``, ``low``, ``high`` (its 95% interval,
    `metric_interval`), ``interval`` (``wilson`` or ``bca_bootstrap``), then `summarize_run`'s
    ``parse_failure_rate``, ``request_error_rate``, ``latency_p50_s``, ``latency_p95_s``,
    ``tokens_in_mean``, ``tokens_out_mean``, ``cost_per_1000`` (lower is better; NaN cost when the
    model has no price).
    """
    return _arm_table(_prepare(runs))


def paired_comparisons(runs: Sequence[ComparedRun], baseline: str | None = None) -> pd.DataFrame:
    """Every other arm against `baseline` (an arm label of `comparison_arms`; default: the first
    arm of the first run, chosen before looking at the scores so that the baseline is not picked
    for being good or bad), on the shared examples, with `compare_all`: McNemar's score test for
    accuracy with one answer per example, a paired BCa bootstrap otherwise, Holm-adjusted across
    the comparisons.

    Columns: ``arm``, ``baseline``, ``metric``, ``a`` and ``b`` (the arm's and the baseline's
    score), ``difference`` (a - b; higher favours the arm), ``low``, ``high`` (its 95% interval),
    ``p_value``, ``p_adjusted`` (Holm), ``method``, ``examples`` (shared examples compared),
    ``dropped`` (examples the arm or the baseline answered that not every arm did), ``verdict``
    ("better", "worse" or "no clear difference": from ``p_adjusted`` < 0.05, the same test that
    gives the interval), ``small`` (fewer than `SMALL_SAMPLE` examples: read the verdict as a
    hint), ``examples_needed`` (examples for 80% power at this difference; None when it is 0).
    """
    prepared = _prepare(runs)
    return _comparison_table(prepared, _comparisons(prepared, baseline))


def answer_matrix(runs: Sequence[ComparedRun]) -> pd.DataFrame:
    """Example x arm answers on the shared examples, in the first run's dataset order.

    Columns: ``example_id``, ``text``, ``gold`` (the gold target in words, `TaskKind.describe`),
    then per arm ``answer: <arm>`` (the answer in words; with repeats, the answer most repeats
    gave, `TaskKind.vote`; "no usable answer" when none could be read), then per arm
    ``right: <arm>`` (the answer equals gold exactly), ``differs`` (the arms' answers are not all
    the same) and ``arms_right`` (how many arms are right).
    """
    return _matrix(_prepare(runs))


def write_comparison(path: str | Path, runs: Sequence[ComparedRun], *, title: str | None = None,
                     baseline: str | None = None, max_rows: int = MAX_MATRIX_ROWS) -> Path:
    """Write the comparison of `runs` to `path` as one HTML file that opens offline; returns the path.

    The page has a header naming each run (run id, model, time, examples), the headline metric per
    arm with 95% intervals, quality against cost and latency, the paired tests against `baseline`
    (see `paired_comparisons`) in plain words, a cost and latency table, and the example x arm
    answer matrix (differences first, at most `max_rows` rows, saying "showing k of N" when capped)
    with a "differences only" filter. Parent folders are created.
    """
    prepared = _prepare(runs)
    document = render_comparison(
        prepared.task, runs=_run_facts(prepared), arms=_arm_table(prepared),
        comparisons=_comparisons(prepared, baseline), matrix=_matrix(prepared),
        shared=len(prepared.shared), answered=prepared.answered, title=title, max_rows=max_rows,
        generated=datetime.now().astimezone().isoformat(timespec="seconds"),
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path


# Checking and merging the runs.


def _prepare(runs: Sequence[ComparedRun]) -> _Arms:
    runs = tuple(runs)
    if not runs:
        raise InputError("no runs to compare: give at least two runs (or one run with two variants)")
    seen: dict[str, int] = {}
    for index, run in enumerate(runs):
        if run.run_id in seen:
            raise InputError(f"run {run.run_id!r} is given twice (positions {seen[run.run_id] + 1} and {index + 1}); "
                             "give each run once")
        seen[run.run_id] = index
    first = runs[0]
    for run in runs[1:]:
        _check_same_task(first, run)
    arms = _arm_rows(runs)
    if len(arms) < 2:
        raise InputError(f"only one arm to compare (run {first.run_id!r}, variant {arms[0]['variant']!r}): "
                         "give at least two runs, or a run with two variants")
    answered = [_answered(runs[arm["run_index"]], arm["variant"]) for arm in arms]
    _check_shared(runs, arms, answered)
    shared_ids = set.intersection(*answered)
    order = [example_id for example_id in first.dataset["example_id"] if example_id in shared_ids]
    for run in runs[1:]:
        _check_same_examples(first, run, order)
    for arm, ids in zip(arms, answered):
        arm["answered"] = len(ids)
    frames = []
    for arm in arms:
        predictions = runs[arm["run_index"]].predictions
        rows = predictions[(predictions["variant"] == arm["variant"]) & predictions["example_id"].isin(shared_ids)]
        frames.append(rows.assign(variant=arm["arm"]))
    gold = first.dataset.set_index("example_id").loc[order].reset_index()
    return _Arms(runs=runs, task=first.task, arms=pd.DataFrame(arms), gold=gold, shared=tuple(order),
                 predictions=pd.concat(frames, ignore_index=True), answered=len(set.union(*answered)))


def _check_same_task(first: ComparedRun, other: ComparedRun) -> None:
    a, b = first.task, other.task
    if str(a.kind) != str(b.kind):
        raise InputError(f"runs {first.run_id!r} and {other.run_id!r} are of different kinds of task: "
                         f"{a.kind} ({a.name}) and {b.kind} ({b.name}); compare runs of one task")
    if set(a.label_names) != set(b.label_names):
        only_a = sorted(set(a.label_names) - set(b.label_names))
        only_b = sorted(set(b.label_names) - set(a.label_names))
        raise InputError(f"runs {first.run_id!r} and {other.run_id!r} have different label sets: "
                         f"only in {first.run_id!r}: {only_a}; only in {other.run_id!r}: {only_b}; "
                         "compare runs of one task")


def _answered(run: ComparedRun, variant: str) -> set[str]:
    """The examples an arm has predictions for that are in its run's dataset (so have gold)."""
    predictions = run.predictions
    ids = set(predictions.loc[predictions["variant"] == variant, "example_id"])
    return ids & set(run.dataset["example_id"])


def _check_shared(runs: tuple[ComparedRun, ...], arms: list[dict[str, Any]], answered: list[set[str]]) -> None:
    by_run: dict[int, set[str]] = {}
    for arm, ids in zip(arms, answered):
        by_run[arm["run_index"]] = by_run.get(arm["run_index"], set()) | ids
    indices = sorted(by_run)
    for position, i in enumerate(indices):
        for j in indices[position + 1:]:
            if not by_run[i] & by_run[j]:
                raise InputError(
                    f"runs {runs[i].run_id!r} and {runs[j].run_id!r} share no example_id "
                    f"({len(by_run[i])} examples such as {_some(by_run[i])} against {len(by_run[j])} such as "
                    f"{_some(by_run[j])}): compare runs over the same dataset")
    if not set.intersection(*answered):
        raise InputError(f"no example_id is answered by every arm ({', '.join(arm['arm'] for arm in arms)}); "
                         "compare runs over the same dataset")


def _check_same_examples(first: ComparedRun, other: ComparedRun, order: list[str]) -> None:
    """Shared examples must be the same examples: same text and the same gold target."""
    kind = first.task.kind
    target = kind.target_column
    a = first.dataset.set_index("example_id").loc[order]
    b = other.dataset.set_index("example_id").loc[order]
    for column, same in (("text", lambda x, y: x == y),
                         (target, lambda x, y: kind.answer_key(x) == kind.answer_key(y))):
        differing = [example_id for example_id, x, y in zip(order, a[column], b[column]) if not same(x, y)]
        if differing:
            raise InputError(
                f"runs {first.run_id!r} and {other.run_id!r} give {len(differing)} shared example(s) a different "
                f"{column} (e.g. {differing[0]!r}: {a.at[differing[0], column]!r} against "
                f"{b.at[differing[0], column]!r}); compare runs scored against the same dataset")


def _some(ids: set[str], count: int = 3) -> str:
    return ", ".join(repr(example_id) for example_id in sorted(ids)[:count])


def _arm_rows(runs: tuple[ComparedRun, ...]) -> list[dict[str, Any]]:
    """One dict per arm: its label (see `comparison_arms`), run and variant."""
    models = [_model_words(run) for run in runs]
    shorts = _short_models(runs, models)
    tails = _run_tails(runs)
    pairs = [(index, variant) for index, run in enumerate(runs) for variant in dict.fromkeys(run.predictions["variant"])]
    show_model = len(set(models)) > 1
    # The run id only where model and variant leave two arms alike (the same model run twice).
    show_run = len({(models[index], variant) for index, variant in pairs}) < len(pairs)
    rows = []
    for index, variant in pairs:
        parts = [shorts[index]] * show_model + [tails[index]] * show_run + [str(variant)]
        rows.append({"arm": " · ".join(parts), "run_index": index, "run": runs[index].name,
                     "run_id": runs[index].run_id, "model": models[index], "variant": str(variant)})
    return rows


def _model_words(run: ComparedRun) -> str | None:
    model = run.provenance.get("model")
    return describe_model(model) if isinstance(model, Mapping) else (str(model) if model else None)


def _short_models(runs: tuple[ComparedRun, ...], models: list[str | None]) -> list[str]:
    """A short name per run's model: its name (a file's name for a path); the whole description
    where two different models would share a short name (e.g. one base model with two adapters)."""
    shorts = []
    for run in runs:
        model = run.provenance.get("model")
        model = model if isinstance(model, Mapping) else {}
        name = str(model.get("model") or model.get("model_path") or model.get("kind") or "unknown model")
        if "/" in name and (name.startswith(("/", ".", "~")) or name.endswith(".gguf")):
            name = PurePath(name).name
        shorts.append(name)
    for short in set(shorts):
        alike = [index for index, value in enumerate(shorts) if value == short]
        if len({models[index] for index in alike}) > 1:
            for index in alike:
                shorts[index] = models[index] or short
    return shorts


def _run_tails(runs: tuple[ComparedRun, ...]) -> list[str]:
    """The last part of each run id (its random suffix), or the whole id where tails coincide."""
    tails = [run.run_id.rsplit("-", 1)[-1] for run in runs]
    return tails if len(set(tails)) == len(tails) else [run.run_id for run in runs]


# Tables.


def _run_facts(prepared: _Arms) -> list[dict[str, Any]]:
    """What the page's header says of each run: id, name, model, start time, examples, arms."""
    facts = []
    for index, run in enumerate(prepared.runs):
        mine = prepared.arms[prepared.arms["run_index"] == index]
        facts.append({"run_id": run.run_id, "name": run.name, "model": _model_words(run),
                      "ran_at": iso_time(run.provenance.get("started_at") or run.provenance.get("finished_at")),
                      "examples": int(run.predictions["example_id"].nunique()), "arms": list(mine["arm"])})
    return facts


def _arm_table(prepared: _Arms) -> pd.DataFrame:
    metric = default_metric(prepared.task)
    ci = bootstrap_ci(prepared.predictions, prepared.gold, prepared.task, metric).set_index("variant")
    efficiency = summarize_run(prepared.predictions, prepared.gold, prepared.task).set_index("variant")
    table = prepared.arms.copy()
    table["examples"] = len(prepared.shared)
    table["dropped"] = table["answered"] - len(prepared.shared)
    table["rows"] = table["arm"].map(prepared.predictions.groupby("variant").size())
    table["metric"] = metric
    for column in ("value", "low", "high"):
        table[column] = table["arm"].map(ci[column]).astype(float)
    table["interval"] = table["arm"].map(ci["method"])
    for column in ARM_COLUMNS[ARM_COLUMNS.index("parse_failure_rate"):]:
        table[column] = table["arm"].map(efficiency[column]).astype(float)
    return table[ARM_COLUMNS]


def _comparisons(prepared: _Arms, baseline: str | None) -> list[Comparison]:
    labels = prepared.labels
    baseline = baseline if baseline is not None else labels[0]
    if baseline not in labels:
        raise InputError(f"baseline {baseline!r} is not an arm of this comparison; arms are {labels}")
    found = compare_all(prepared.predictions, prepared.gold, prepared.task, baseline)
    order = {label: position for position, label in enumerate(labels)}
    return sorted(found, key=lambda comparison: order[comparison.variant_a])


def _comparison_table(prepared: _Arms, comparisons: list[Comparison]) -> pd.DataFrame:
    answered = {arm: set(_answered(prepared.runs[index], variant))
                for arm, index, variant in prepared.arms[["arm", "run_index", "variant"]].itertuples(index=False)}
    rows = [{
        "arm": c.variant_a, "baseline": c.variant_b, "metric": c.metric, "a": c.a, "b": c.b,
        "difference": c.difference, "low": c.low, "high": c.high, "p_value": c.p_value, "p_adjusted": c.p_adjusted,
        "method": c.method, "examples": c.examples,
        "dropped": len(answered[c.variant_a] | answered[c.variant_b]) - c.examples,
        "verdict": verdict(c), "small": c.examples < SMALL_SAMPLE, "examples_needed": c.examples_needed,
    } for c in comparisons]
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def verdict(comparison: Comparison) -> str:
    """"better" or "worse" when the comparison is significant (`Comparison.significant`: on the
    adjusted p-value where there is one), else "no clear difference"."""
    if not comparison.significant or comparison.difference == 0:
        return "no clear difference"
    return "better" if comparison.difference > 0 else "worse"


def _matrix(prepared: _Arms) -> pd.DataFrame:
    kind = prepared.task.kind
    target = kind.target_column
    table = prepared.gold[["example_id", "text"]].copy()
    gold = dict(zip(prepared.gold["example_id"], prepared.gold[target]))
    texts = dict(zip(prepared.gold["example_id"], prepared.gold["text"]))
    table["gold"] = [kind.describe(texts[example_id], gold[example_id]) for example_id in table["example_id"]]
    keys, right = {}, {}
    ordered = prepared.predictions.sort_values("repeat", kind="stable")
    for arm in prepared.labels:
        rows = ordered[ordered["variant"] == arm]
        voted = {example_id: kind.vote(list(group["prediction"]))[0]
                 for example_id, group in rows.groupby("example_id", sort=False)}
        answers = [voted.get(example_id) for example_id in table["example_id"]]
        table[f"answer: {arm}"] = [NO_ANSWER if answer is None else kind.describe(texts[example_id], answer)
                                   for example_id, answer in zip(table["example_id"], answers)]
        keys[arm] = [kind.answer_key(answer) for answer in answers]
        right[arm] = [answer is not None and kind.same_answer(answer, gold[example_id])
                      for example_id, answer in zip(table["example_id"], answers)]
    for arm in prepared.labels:
        table[f"right: {arm}"] = right[arm]
    table["differs"] = [len(set(answers)) > 1 for answers in zip(*keys.values())]
    table["arms_right"] = [sum(flags) for flags in zip(*right.values())]
    return table
