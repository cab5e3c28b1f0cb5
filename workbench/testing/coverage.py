"""How often an interval covers the truth: simulated test sets drawn from a known population.

The coverage test and `benchmarks/interval_coverage.py` both use this, so the figure the benchmark
prints is the one the test checks. Each trial draws `n` examples, builds the per-example statistics
`workbench.evaluation.significance.example_statistics` would build from a run, and asks
`metric_interval` for the interval the report would show.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.evaluation.significance import metric_interval

# Accuracy: each answer right with this probability (one answer per example).
ACCURACY = 0.7
# NER: gold entities per text ~ Poisson(ENTITIES); each found (exact span and type) with HIT;
# spurious entities per text ~ Poisson(SPURIOUS).
ENTITIES, HIT, SPURIOUS = 1.5, 0.75, 0.4
# The population's micro F1 (a ratio of expected counts): 2 TP / (2 TP + FP + FN).
NER_MICRO_F1 = 2 * ENTITIES * HIT / (2 * ENTITIES * HIT + SPURIOUS + ENTITIES * (1 - HIT))


def simulated_statistics(metric: str, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Per-example statistics of one simulated test set of `n` examples."""
    if metric == "accuracy":
        return pd.DataFrame({"rows": 1.0, "correct": (rng.random(n) < ACCURACY).astype(float)})
    gold = rng.poisson(ENTITIES, n)
    tp = rng.binomial(gold, HIT)
    return pd.DataFrame({"rows": 1.0, "tp": tp.astype(float), "fp": rng.poisson(SPURIOUS, n).astype(float),
                         "fn": (gold - tp).astype(float)})


def interval_coverage(metric: str, n: int, *, trials: int = 1000, n_resamples: int = 1000, confidence: float = 0.95,
                      seed: int = 0) -> dict[str, float | int | str]:
    """Share of `trials` simulated test sets whose interval contains the population value.

    `metric` is ``accuracy`` (Wilson's interval) or ``micro_f1`` (NER, BCa bootstrap). Returns
    ``metric``, ``n``, ``method``, ``trials``, ``coverage``, ``mean_width``, ``below`` and
    ``above`` (shares of misses on each side).
    """
    truth = ACCURACY if metric == "accuracy" else NER_MICRO_F1
    rng = np.random.default_rng(seed)
    covered = below = above = 0
    widths = []
    method = ""
    for trial in range(trials):
        interval = metric_interval(simulated_statistics(metric, n, rng), metric, n_resamples=n_resamples,
                                   confidence=confidence, seed=seed * 100_003 + trial)
        method = str(interval["method"])
        low, high = float(interval["low"]), float(interval["high"])
        widths.append(high - low)
        if truth < low:
            above += 1
        elif truth > high:
            below += 1
        else:
            covered += 1
    return {"metric": metric, "n": n, "method": method, "trials": trials, "coverage": covered / trials,
            "mean_width": float(np.mean(widths)), "below": below / trials, "above": above / trials}
