"""Calibrate the near-duplicate threshold of `workbench.trainingdata.leakage` on the demo data and on
clinc150 (a real, paraphrase-rich intent dataset, read in place from /work/shared/datasets).

Two distributions of cosine similarity (all-MiniLM-L6-v2, the encoder the leakage check uses):
- near-duplicates: every demo text against light edits of itself (lower case and no punctuation;
  one word dropped; two neighbouring words swapped; every number changed; the first sentence alone
  when there are several);
- distinct examples: every test example against its nearest training example of the same task
  (train and test splits are distinct examples written apart; on clinc150, 10 seeded examples per
  intent of its test split against 10 per intent of its train split, which are distinct requests
  but often paraphrases of each other: the share above a threshold is how much of a real pool the
  near-duplicate groups will join, not a share of mistakes).
A threshold between the two flags edits and passes distinct examples. Prints percentiles of both,
how many of each a few thresholds would flag, and the pairs of distinct examples above 0.8.

Run: .venv/bin/python benchmarks/leakage_threshold.py [--clinc150]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import warnings
from pathlib import Path

import numpy as np

from workbench.core.data import load_dataset
from workbench.core.task import load_task
from workbench.points.encoder import SentenceEncoder
from workbench.trainingdata.leakage import NEAR_DUPLICATE_COSINE

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["complaint_triage", "adverse_events", "app_review_topics"]
CLINC = Path("/work/shared/datasets/clinc150")


def demo_texts() -> list[tuple[str, list[str], list[str]]]:
    """(task name, train texts, test texts) of each demo task."""
    result = []
    for name in TASKS:
        task = load_task(ROOT / "data" / name / "task.yaml")
        train = load_dataset(ROOT / "data" / name / "train.jsonl", task)
        test = load_dataset(ROOT / "data" / name / "test.jsonl", task)
        result.append((name, list(train["text"]), list(test["text"])))
    return result


def clinc_texts(per_intent: int = 10, seed: int = 0) -> list[tuple[str, list[str], list[str]]]:
    """clinc150's train and test texts, `per_intent` seeded examples of each intent (oos left out)."""
    rng = random.Random(seed)
    splits = []
    for split in ("train", "test"):
        rows = [json.loads(line) for line in (CLINC / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
        by_label: dict[str, list[str]] = {}
        for row in rows:
            if row["label"] != "oos":
                by_label.setdefault(row["label"], []).append(row["text"])
        splits.append([text for label in sorted(by_label) for text in rng.sample(by_label[label], per_intent)])
    return [("clinc150", splits[0], splits[1])]


def edits(text: str, rng: random.Random) -> list[str]:
    words = text.split()
    variants = [re.sub(r"[^\w\s]", "", text.lower())]
    if len(words) > 3:
        dropped = list(words)
        del dropped[rng.randrange(len(dropped))]
        variants.append(" ".join(dropped))
        swapped = list(words)
        i = rng.randrange(len(swapped) - 1)
        swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
        variants.append(" ".join(swapped))
    if re.search(r"\d", text):
        variants.append(re.sub(r"\d+", lambda m: str(int(m.group()) + 7), text))
    sentences = re.split(r"(?<=[.!?])\s+", text)
    if len(sentences) > 1:
        variants.append(sentences[0])
    return variants


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clinc150", action="store_true", help="clinc150 instead of the demo tasks")
    args = parser.parse_args()
    encoder = SentenceEncoder()
    rng = random.Random(0)
    near, distinct, close_pairs = [], [], []
    for name, train_texts, test_texts in (clinc_texts() if args.clinc150 else demo_texts()):
        texts = train_texts + test_texts
        originals, edited = [], []
        for text in texts:
            for variant in edits(text, rng):
                originals.append(text)
                edited.append(variant)
        a, b = encoder.encode(originals), encoder.encode(edited)
        near.extend(np.sum(a * b, axis=1).tolist())
        scores = encoder.encode(test_texts) @ encoder.encode(train_texts).T
        best = scores.max(axis=1)
        distinct.extend(best.tolist())
        for i in np.flatnonzero(best >= 0.8):
            close_pairs.append((name, float(best[i]), test_texts[i], train_texts[int(scores[i].argmax())]))
        print(f"{name}: {len(texts)} texts, {len(edited)} edits, {len(test_texts)} test examples vs {len(train_texts)} train")
    near, distinct = np.array(near), np.array(distinct)
    print(f"\n{'':<44} {'min':>6} {'p1':>6} {'p5':>6} {'p50':>6} {'p95':>6} {'p99':>6} {'max':>6}")
    for label, values in (("light edits vs their original", near), ("test vs nearest train (distinct)", distinct)):
        p = np.percentile(values, [1, 5, 50, 95, 99])
        print(f"{label:<44} {values.min():>6.3f} " + " ".join(f"{v:>6.3f}" for v in p) + f" {values.max():>6.3f}")
    print(f"\n{'threshold':>9} {'edits flagged':>14} {'distinct flagged':>17}")
    for threshold in (0.75, 0.8, NEAR_DUPLICATE_COSINE, 0.9, 0.95):
        print(f"{threshold:>9.2f} {np.mean(near >= threshold):>14.1%} {np.mean(distinct >= threshold):>17.1%}"
              + ("   <- NEAR_DUPLICATE_COSINE" if threshold == NEAR_DUPLICATE_COSINE else ""))
    print(f"\ndistinct pairs at 0.8 or above: {len(close_pairs)}, the closest 20:")
    for name, score, test_text, train_text in sorted(close_pairs, key=lambda pair: -pair[1])[:20]:
        print(f"  {name} {score:.3f}\n    test:  {test_text[:110]}\n    train: {train_text[:110]}")


if __name__ == "__main__":
    main()
