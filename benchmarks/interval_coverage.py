"""Measured coverage of the workbench's 95% intervals on simulated test sets, beside the plain
percentile bootstrap they replace.

For accuracy (one answer per example) the report uses Wilson's score interval; for NER micro F1
(and other F1 scores) the BCa bootstrap with Hesterberg's small-sample widening. The baseline is
the percentile bootstrap over the same resamples, as the workbench used before. Nominal is 95%;
a method that under-covers makes differences look more certain than they are. No asserts: the
coverage test in tests/unit/test_significance.py checks the same figures.

    .venv/bin/python benchmarks/interval_coverage.py [--trials 1000]
"""

from __future__ import annotations

import argparse

import numpy as np

from workbench.evaluation.significance import _resampled_metric
from workbench.testing.coverage import ACCURACY, NER_MICRO_F1, interval_coverage, simulated_statistics


def percentile_coverage(metric: str, n: int, trials: int, n_resamples: int, seed: int = 0) -> float:
    truth = ACCURACY if metric == "accuracy" else NER_MICRO_F1
    rng = np.random.default_rng(seed)
    covered = 0
    for trial in range(trials):
        stats = simulated_statistics(metric, n, rng)
        samples = _resampled_metric(stats.to_numpy(float), list(stats.columns), metric, n_resamples, trial)
        low, high = np.percentile(samples[np.isfinite(samples)], [2.5, 97.5])
        covered += low <= truth <= high
    return covered / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    print(f"95% intervals, {args.trials} simulated test sets per row, {args.resamples} bootstrap resamples")
    print(f"{'metric':<10} {'n':>4}  {'method':<14} {'coverage':>8} {'width':>6}   {'percentile bootstrap':>20}")
    for metric in ("accuracy", "micro_f1"):
        for n in (24, 40, 200):
            ours = interval_coverage(metric, n, trials=args.trials, n_resamples=args.resamples)
            baseline = percentile_coverage(metric, n, args.trials, args.resamples)
            print(f"{metric:<10} {n:>4}  {ours['method']:<14} {ours['coverage']:>8.1%} {ours['mean_width']:>6.3f}"
                  f"   {baseline:>20.1%}")
    print(f"(population values: accuracy {ACCURACY}, NER micro F1 {NER_MICRO_F1:.4f})")


if __name__ == "__main__":
    main()
