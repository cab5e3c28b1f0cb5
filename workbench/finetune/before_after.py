"""Before and after fine-tuning, per training point: the base and the tuned model on each point's
held-out test cases, the regression set and all test cases, with paired tests; and what each model
costs to ask, how steady its answers are when sampled, and how the tuned model fares against the
base model's best prompt.

Both models answer the same test cases with the same prompt variant (the one the training rows
were rendered with), through the same runner and cache, with the caller's generation options
(temperature 0 by default). For every group of test cases the tuned model is compared with the
base on the cases both answered by the evaluation stage's paired test (`compare_variants`:
McNemar's score test with Tango's interval for accuracy with one answer per case, a paired BCa
bootstrap otherwise). The p-values of the per-point comparisons are Holm-adjusted together (the
regression set and all test cases are tests of their own, left unadjusted), and the verdict rests
on the adjusted p-value of that same test. The interval beside it is the test's unadjusted 95%
interval, so a point can show an interval that excludes 0 and still read "no clear difference"
once the other points are accounted for. A point has few test cases: most comparisons are small
samples (``small``: fewer than `SMALL` cases), where only a large difference can reach a verdict
and "no clear difference" is not evidence of no difference.

Optional extras, each off by default so that a plain call behaves as it always did:

- ``efficiency``: latency, prompt and answer tokens and parse failures per model (`score_efficiency`
  on the answers above). A tuned model needs no long prompt; this is where that shows.
- ``consistency`` (``repeats`` >= 2): every model also answers every test case `repeats` times at
  `temperature`, one seed per repeat (the runner's seeds: ``options.seed`` + repeat), and
  `score_consistency` measures how often those samples agree. The sampled answers never enter the
  paired tests.
- ``versus_best`` (``best_variant``): the base model also answers with the prompt variant that
  served it best (``base_best``), few-shot examples drawn from `pool` without any test case, and
  the tuned model is compared with that, Holm-adjusted across points the same way. Fine-tuning is
  worth its cost only if it beats the best prompt, not just the training prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from workbench.core.errors import InputError
from workbench.core.frames import require_columns
from workbench.core.task import Task
from workbench.evaluation.consistency import score_consistency
from workbench.evaluation.efficiency import score_efficiency
from workbench.evaluation.significance import compare_variants, holm
from workbench.models.base import GenerationOptions, Model
from workbench.prompting.cache import ResponseCache
from workbench.prompting.runner import PREDICTION_COLUMNS, run_variants
from workbench.prompting.variants import parse_variant
from workbench.trainingdata.examples import REGRESSION
from workbench.trainingdata.scoring import ALL_TEST_CASES, SMALL, gold_of, test_groups

BEFORE_AFTER_COLUMNS = ["point_id", "cases", "metric", "base", "tuned", "difference", "low", "high", "p_value",
                        "p_adjusted", "method", "verdict", "small"]
CONSISTENCY_COLUMNS = ["variant", "prompt", "repeats", "temperature", "examples", "all_agree_share",
                       "mean_pairwise_agreement", "fleiss_kappa", "metric", "score_mean"]
BASE_BEST = "base_best"


def _empty_consistency() -> pd.DataFrame:
    return pd.DataFrame(columns=CONSISTENCY_COLUMNS)


def _empty_predictions() -> pd.DataFrame:
    return pd.DataFrame(columns=PREDICTION_COLUMNS)


@dataclass
class BeforeAfter:
    """What `before_after` found. Model names (``variant`` values) are ``base``, ``tuned`` and,
    with a best variant, ``base_best``.

    - `table`: one row per point, then "regression" and all test cases (`ALL_TEST_CASES`), columns
      `BEFORE_AFTER_COLUMNS`: ``point_id``, ``cases`` (test cases both models answered),
      ``metric``, ``base`` and ``tuned`` (their scores, higher is better), ``difference`` (tuned
      minus base), ``low``/``high`` (the test's unadjusted 95% interval of the difference),
      ``p_value`` (two-sided), ``p_adjusted`` (Holm across the points; the regression set and all
      test cases keep their own p-value), ``method`` (``mcnemar_score`` or ``bca_bootstrap``),
      ``verdict`` ("better", "worse" or "no clear difference", from ``p_adjusted`` < 0.05) and
      ``small`` (fewer than `SMALL` cases: a small sample, read it as a hint).
    - `predictions`: the answers the tests use (runner columns, `PREDICTION_COLUMNS`), one per
      model and test case.
    - `efficiency`: one row per model: ``variant``, ``prompt`` (the prompt variant it answered
      with), then `score_efficiency`'s columns (``n``, ``parse_failure_rate``,
      ``request_error_rate``, ``latency_p50_s``, ``latency_p95_s``, ``tokens_in_mean`` (prompt
      tokens), ``tokens_out_mean``, ``cost_per_1000``, ``hallucinations``; lower is better).
    - `consistency`: with repeats, one row per model, `CONSISTENCY_COLUMNS`: ``variant``,
      ``prompt``, ``repeats``, ``temperature``, ``examples``, then `score_consistency`'s
      ``all_agree_share``, ``mean_pairwise_agreement`` and ``fleiss_kappa`` (higher is steadier),
      ``metric`` (the kind's headline metric, e.g. accuracy) and ``score_mean`` (that metric over
      all test cases, averaged over the repeats; higher is better). Empty without repeats.
    - `sampled`: the answers at temperature behind `consistency` (runner columns, ``repeat``
      0-based); empty without repeats.
    - `versus_best`: with a best variant, a table like `table` with ``base`` holding
      ``base_best``'s score (tuned with the training prompt against base with its best prompt);
      None otherwise.
    """

    table: pd.DataFrame
    predictions: pd.DataFrame
    efficiency: pd.DataFrame = field(default_factory=pd.DataFrame)
    consistency: pd.DataFrame = field(default_factory=_empty_consistency)
    sampled: pd.DataFrame = field(default_factory=_empty_predictions)
    versus_best: pd.DataFrame | None = None


def before_after(examples: pd.DataFrame, task: Task, base: Model, tuned: Model, *, variant: str = "zero_shot",
                 cache: ResponseCache | str | Path | None = None, options: GenerationOptions | None = None,
                 progress: bool = False, seed: int = 0, repeats: int = 0, temperature: float = 0.7,
                 best_variant: str | None = None, pool: pd.DataFrame | None = None,
                 template_dir: str | Path | None = None) -> BeforeAfter:
    """Score `base` and `tuned` on the test cases of `examples` (the training-data frame), per
    point, with paired tests (see the module docstring and `BeforeAfter` for the columns).

    `variant` is the prompt the training rows were rendered with; `options` the generation
    options of the answers the tests use; `seed` seeds the bootstrap. With `repeats` >= 2 every
    model also answers each test case `repeats` times at `temperature` (> 0) for `consistency`.
    With `best_variant` the base model also answers with that prompt (``base_best``) for
    `versus_best`; a few-shot `best_variant` needs `pool`, a labelled frame (``example_id``,
    ``text`` and the task's target column, usually the run's train split) from which every test
    case (by example id, and any row with a test case's exact text) is removed before shots are
    drawn, so that no test case is ever shown as an example. Without a few-shot best variant,
    `pool` is not used. `template_dir` is the run's own template folder (searched before the
    packaged one), so that the tuned model answers with the prompt its rows were rendered with.
    """
    if repeats < 0:
        raise InputError(f"repeats must be >= 0 (below 2: no sampled answers), got {repeats}")
    if repeats >= 2 and not temperature > 0:
        raise InputError(f"repeats at temperature {temperature} would all be the same answer; "
                         "pass a temperature > 0 (e.g. 0.7)")
    options = options or GenerationOptions()
    gold = gold_of(examples, task)
    runs = [("base", base, variant, None), ("tuned", tuned, variant, None)]
    if best_variant is not None:
        runs.append((BASE_BEST, base, best_variant, _shot_pool(pool, gold, task, best_variant)))
    prompts = {name: spec for name, _, spec, _ in runs}

    def answer(repeat_count: int, run_options: GenerationOptions) -> pd.DataFrame:
        frames = [run_variants(task, gold, [spec], model, examples=shots, repeats=repeat_count, options=run_options,
                               cache=cache, progress=progress, template_dir=template_dir).assign(variant=name)
                  for name, model, spec, shots in runs]
        return pd.concat(frames, ignore_index=True)

    predictions = answer(1, options)
    efficiency = score_efficiency(predictions)
    efficiency.insert(1, "prompt", efficiency["variant"].map(prompts))
    sampled, consistency = _empty_predictions(), _empty_consistency()
    if repeats >= 2:
        sampled = answer(repeats, replace(options, temperature=temperature))
        consistency = _consistency(sampled, gold, task, prompts, temperature)
    versus_best = (_paired_table(predictions, gold, examples, task, "tuned", BASE_BEST, seed)
                   if best_variant is not None else None)
    return BeforeAfter(table=_paired_table(predictions, gold, examples, task, "tuned", "base", seed),
                       predictions=predictions, efficiency=efficiency, consistency=consistency, sampled=sampled,
                       versus_best=versus_best)


def _paired_table(predictions: pd.DataFrame, gold: pd.DataFrame, examples: pd.DataFrame, task: Task, tuned: str,
                  base: str, seed: int) -> pd.DataFrame:
    """`BEFORE_AFTER_COLUMNS` for model `tuned` against model `base`, per point then the rest."""
    rows = []
    for point, ids in test_groups(examples):
        mine = predictions[predictions["example_id"].isin(ids)]
        result = compare_variants(mine, gold[gold["example_id"].isin(ids)], task, tuned, base, seed=seed)
        rows.append({"point_id": point, "cases": result.examples, "metric": result.metric, "base": result.b,
                     "tuned": result.a, "difference": result.difference, "low": result.low, "high": result.high,
                     "p_value": result.p_value, "method": result.method, "small": result.examples < SMALL})
    table = pd.DataFrame(rows)
    # The per-point comparisons are one family; the regression set and all test cases are each a
    # single test of their own.
    family = ~table["point_id"].isin([ALL_TEST_CASES, REGRESSION])
    table["p_adjusted"] = table["p_value"]
    table.loc[family, "p_adjusted"] = holm(list(table.loc[family, "p_value"]))
    table["verdict"] = [_verdict(d, p) for d, p in zip(table["difference"], table["p_adjusted"])]
    return table[BEFORE_AFTER_COLUMNS]


def _shot_pool(pool: pd.DataFrame | None, gold: pd.DataFrame, task: Task, best_variant: str) -> pd.DataFrame | None:
    """The few-shot pool for `best_variant` with every test case taken out (None: needs no shots)."""
    shots = parse_variant(best_variant).few_shot
    if not shots:
        return None
    target = task.kind.target_column
    if pool is None:
        raise InputError(f"best_variant {best_variant!r} shows {shots} few-shot examples, and no pool was given: "
                         f"pass pool=<labelled DataFrame with example_id, text, {target}> (usually the run's "
                         "train split); test cases are removed from it first")
    require_columns(pool, ["example_id", "text", target], "pool", "pass the labelled few-shot pool (train split)")
    # The input itself is already never its own shot (ExampleSelector drops its text); this also
    # keeps every other test case, and its gold answer, out of every prompt.
    test_ids, test_texts = set(gold["example_id"].astype(str)), set(gold["text"])
    kept = pool[~pool["example_id"].astype(str).isin(test_ids) & ~pool["text"].isin(test_texts)]
    if kept.empty:
        raise InputError(f"pool has no example left for best_variant {best_variant!r} once the {len(test_ids)} "
                         f"test cases are removed (it had {len(pool)} rows); pass a pool of training examples")
    return kept.reset_index(drop=True)


def _consistency(sampled: pd.DataFrame, gold: pd.DataFrame, task: Task, prompts: dict[str, str],
                 temperature: float) -> pd.DataFrame:
    table = score_consistency(sampled)
    metric = task.kind.summary_column
    # Per repeat, then averaged: for F1 the score of pooled repeats is not the mean of the repeats'.
    per_repeat = pd.concat([task.kind.score(group, gold, task)[["variant", metric]]
                            for _, group in sampled.groupby("repeat", sort=True)], ignore_index=True)
    table["prompt"] = table["variant"].map(prompts)
    table["temperature"] = temperature
    table["metric"] = metric
    table["score_mean"] = table["variant"].map(per_repeat.groupby("variant")[metric].mean())
    return table[CONSISTENCY_COLUMNS]


def _verdict(difference: float, p_adjusted: float, alpha: float = 0.05) -> str:
    if p_adjusted >= alpha or difference == 0:
        return "no clear difference"
    return "better" if difference > 0 else "worse"
