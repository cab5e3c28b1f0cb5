"""How well `ErrorClusterer` finds training points, side by side with k-means and HDBSCAN.

Three parts, in one run (prints figures; not a test: no asserts):

1. Agreement with the demo runs' hard-case families. `runs/demo_complaints` (classification) and
   `runs/demo_app_reviews` (multi-label), or the folders given with --run; a missing folder is
   reported and skipped. Over the errored examples (one point per example: the point of its first
   error row), the discovered points are compared with the family in each row's ``tags``
   (``["hard", "<family>"]``; untagged rows are family "none"): adjusted Rand index over all errored
   examples ("none" counted as one family) and over tagged examples only, purity over tagged
   examples only (each point's share of its commonest family, weighted by size), and, per family
   with at least two errored examples, the largest share of it that one point holds.
2. Planted failure. The complaint_triage test set answered right by 3 variants, then one coherent
   family flipped to one wrong label in every variant, plus noise (each other example wrong with
   probability 0.15 in one random variant, to a random label). The point that best matches the
   family (highest F1 over example ids) gives recall and precision; over --seeds seeds, the means
   and how often one point recovers the family (recall >= 0.8 and precision >= 0.8).
   ErrorClusterer is fitted with ``label_issues=None``, so the family is not set aside as
   suspected gold errors. Then a harder case: two planted families with one signature (complaints
   about fees, and complaints about the app or website, all read as requests), which the signature
   cannot separate: per family the best point's recall and precision, and how often both are
   recovered by two different points.
3. Scale. --errors synthetic classification errors (one per example; texts from the
   complaint_triage train+test texts with small variations; 6 signatures): wall time of `fit`,
   of `SentenceEncoder().encode` on the same contexts (timed separately), of a fit whose encoder
   returns those vectors (the clustering alone), and peak memory: the process's
   ``ru_maxrss`` (peak resident set, whole process, all parts so far) and tracemalloc's peak
   during the clustering-only fit (Python and numpy allocations only, no torch).

4. Many labels: clinc150 (``--clinc``, default ``../shared/datasets/clinc150``, read in place;
   skipped when absent). 151 labels (150 intents and "oos"); per seed a run of 8 test-split
   examples per label (1,208), two variants, everything answered right except what is planted,
   each planted example wrong in exactly one variant:
   (a) a default answer: zero_shot answers one seeded intent to 80 examples of other intents, and
       makes 25 random mistakes besides (the default is 76% of its errors);
   (b) confusions of related intents, both ways: 6 pairs drawn from `PAIRS` (same domain, close
       texts; each pair's cosine between its train-split centroids is printed), few_shot
       answering B to 3 examples of A and A to 3 of B: 6 members, 2 signatures per family;
   (c) confusions spread over unique signatures: 3 domains drawn from `DOMAINS`, 4 intents each,
       few_shot making 6 mistakes within the domain, each (gold, answer) once and no reverse pair,
       so only content can put them together (or the three-labels-confused-pairwise rule);
   (c') confusions in a ring: 2 more domains, 4 mistakes each (A->B, B->C, C->D, D->A), where no
       three labels are confused pairwise, so only alike texts can put them together;
   (d) noise: few_shot answers a random other label to 60 other examples.
   A planted family F (its example ids) is **recovered** when one point (kind "point": "other"
   and "relabel" points never count) holds at least 80% of F and F is at least 80% of that
   point's examples. Per family: **recall** = the largest share of F that one point holds;
   **precision** = F's share of that point (the point holding most of F, ties to the smaller
   point). The table gives the mean recall and precision over families and seeds, and how many
   families were recovered; for the default answer also in how many seeds the recovering point is
   a "default answer" point. Fitted with ``label_issues=None``. Also printed: points made, points
   of one example, real points holding no planted example (made of the noise alone), and distinct
   signatures (what grouping by signature alone would start from).

The alternatives use the embeddings the clusterer uses (`SentenceEncoder` on
``task.kind.error_context(row)``), one member per (example, signature) as the clusterer has,
grouped by ``task.kind.error_signature(row)``, and the clusterer's rule for small clusters:
clusters under 2 examples, and HDBSCAN's noise, go to one "other" point per signature. A baseline,
"signature only", makes each signature one point. In part 2 "other" points never count as
recovering the family.

Run: .venv/bin/python benchmarks/training_points.py [--run PATH ...] [--seeds 5] [--errors 10000]
     [--clinc PATH] [--only clinc]
"""

from __future__ import annotations

import argparse
import math
import random
import resource
import time
import tracemalloc
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import HDBSCAN, KMeans
from sklearn.metrics import adjusted_rand_score

from workbench.core.data import load_dataset, validate_dataset
from workbench.core.task import load_task, task_from_dict
from workbench.evaluation.errors import find_errors
from workbench.experiments.runs import is_run_folder, load_run, resolve_run_folder
from workbench.points.cluster import ErrorClusterer
from workbench.points.encoder import SentenceEncoder

ROOT = Path(__file__).resolve().parents[1]
DEMO_RUNS = [ROOT / "runs/demo_complaints", ROOT / "runs/demo_app_reviews"]
CLINC = ROOT.parent / "shared/datasets/clinc150"
# Related intents of one domain whose requests read alike (part 4b).
PAIRS = [("balance", "transfer"), ("bill_balance", "bill_due"), ("credit_limit", "credit_limit_change"),
         ("pto_request", "pto_request_status"), ("reminder", "reminder_update"), ("todo_list", "todo_list_update"),
         ("shopping_list", "shopping_list_update"), ("oil_change_how", "oil_change_when"),
         ("travel_alert", "travel_notification"), ("calendar", "calendar_update"), ("insurance", "insurance_change"),
         ("pto_balance", "pto_used")]
# Four intents of one domain each (part 4c); none of them in PAIRS, so the families do not meet.
DOMAINS = [("tire_change", "tire_pressure", "jump_start", "schedule_maintenance"),
           ("book_flight", "flight_status", "carry_on", "lost_luggage"),
           ("recipe", "ingredients_list", "ingredient_substitution", "cook_time"),
           ("credit_score", "improve_credit_score", "apr", "interest_rate"),
           ("restaurant_reviews", "restaurant_suggestion", "restaurant_reservation", "accept_reservations"),
           ("play_music", "next_song", "update_playlist", "what_song")]
# (gold, answer) positions within a domain: six mistakes, each signature once, no reverse pair.
DOMAIN_MISTAKES = [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (1, 3)]
# The same in a ring: four mistakes, no three labels confused pairwise (part 4c').
RING_MISTAKES = [(0, 1), (1, 2), (2, 3), (3, 0)]
THRESHOLDS = (0.4, 0.55, 0.7)
METHODS = ([f"agglomerative {t}" for t in THRESHOLDS] + ["k-means sqrt(n/2)", "HDBSCAN mcs=2"]
           + ["signature only"])


def short(method: str) -> str:
    return method.replace("agglomerative", "agglo").replace(" sqrt(n/2)", "").replace(" mcs=2", "").replace(
        " only", "")


class FixedEncoder:
    """Vectors already computed, looked up by text: lets a fit skip the sentence encoder."""

    def __init__(self, texts: list[str], vectors: np.ndarray):
        self.index = {text: i for i, text in enumerate(texts)}
        self.vectors = vectors

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.vectors[[self.index[text] for text in texts]]


def example_points(errors: pd.DataFrame, predictions: pd.DataFrame, task, method: str, vectors_for) -> tuple[
        dict[str, str], float]:
    """{example_id: point} (the point of the example's first error row) and the noise share
    (HDBSCAN only; 0 otherwise) of the members, for one method."""
    if method.startswith("agglomerative"):
        threshold = float(method.split()[-1])
        encoder = FixedEncoder(*vectors_for(errors))
        assigned = ErrorClusterer(distance_threshold=threshold, encoder=encoder).fit(
            errors, predictions, task, label_issues=None).assignments_
        first = assigned.drop_duplicates("example_id")
        return dict(zip(first["example_id"], first["point_id"])), 0.0
    frame = errors.reset_index(drop=True).copy()
    frame["signature"] = [task.kind.error_signature(row) for row in frame.to_dict("records")]
    members = frame.drop_duplicates(["example_id", "signature"])
    texts, vectors = vectors_for(errors)
    index = {text: i for i, text in enumerate(texts)}
    point_of: dict[tuple[str, str], str] = {}
    noise = 0
    for signature, group in members.groupby("signature", sort=False):
        keys = list(zip(group["example_id"], group["signature"]))
        matrix = vectors[[index[task.kind.error_context(row)] for row in group.to_dict("records")]]
        n = len(keys)
        if method == "signature only":
            labels = [0] * n
        elif method.startswith("k-means"):
            k = max(1, min(n, round(math.sqrt(n / 2))))
            labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(matrix) if n > 1 else [0]
        else:
            labels = HDBSCAN(min_cluster_size=2).fit_predict(matrix) if n > 2 else np.full(n, -1)
            noise += int((np.asarray(labels) == -1).sum())
        sizes = Counter(labels)
        for key, label in zip(keys, labels):
            small = label == -1 or sizes[label] < 2
            point_of[key] = f"{signature}|other" if small else f"{signature}|{label}"
    first = frame.drop_duplicates("example_id")
    return ({example: point_of[(example, signature)] for example, signature in
             zip(first["example_id"], first["signature"])}, noise / max(len(members), 1))


def make_vectors_for(task, encoder):
    """A function errors -> (contexts, vectors), the contexts encoded once and then remembered."""
    cache: dict[str, np.ndarray] = {}

    def vectors_for(errors: pd.DataFrame):
        contexts = list(dict.fromkeys(task.kind.error_context(row) for row in errors.to_dict("records")))
        missing = [text for text in contexts if text not in cache]
        if missing:
            cache.update(zip(missing, encoder.encode(missing)))
        return contexts, np.stack([cache[text] for text in contexts])

    return vectors_for


def purity(points: list[str], families: list[str]) -> float:
    by_point: dict[str, Counter] = {}
    for point, family in zip(points, families):
        by_point.setdefault(point, Counter())[family] += 1
    return sum(counts.most_common(1)[0][1] for counts in by_point.values()) / max(len(points), 1)


def family_agreement(label: str, run, vectors_for) -> None:
    errors = find_errors(run.predictions, run.dataset, run.task)
    family = {example: (tags[1] if len(tags) > 1 else "none")
              for example, tags in zip(run.dataset["example_id"], run.dataset["tags"])}
    errored = list(dict.fromkeys(errors["example_id"]))
    tagged = [example for example in errored if family[example] != "none"]
    sizes = Counter(family[example] for example in tagged)
    shown = sorted((name for name, size in sizes.items() if size >= 2), key=lambda name: (-sizes[name], name))
    print(f"\n{label} ({run.task.kind}): {len(errors)} error rows, {len(errored)} errored examples, "
          f"{len(tagged)} tagged in {len(sizes)} families ({len(shown)} with >= 2 errored examples)")
    results = {}
    for method in METHODS:
        points, noise = example_points(errors, run.predictions, run.task, method, vectors_for)
        results[method] = (points, noise)
    print(f"  {'method':<20} {'points':>6} {'ARI all':>8} {'ARI tagged':>10} {'purity tagged':>13} "
          f"{'families held':>13} {'noise':>6}")
    for method, (points, noise) in results.items():
        held = sum(max(Counter(points[e] for e in tagged if family[e] == name).values()) / sizes[name] > 0.5
                   for name in shown)
        print(f"  {method:<20} {len(set(points.values())):>6} "
              f"{adjusted_rand_score([family[e] for e in errored], [points[e] for e in errored]):>8.3f} "
              f"{adjusted_rand_score([family[e] for e in tagged], [points[e] for e in tagged]):>10.3f} "
              f"{purity([points[e] for e in tagged], [family[e] for e in tagged]):>13.3f} "
              f"{f'{held}/{len(shown)}':>13} {noise:>6.0%}")
    if shown:
        print("  largest share of each family (>= 2 errored examples) held by one point:")
        print(f"    {'family':<28} {'n':>3} " + " ".join(f"{short(m):>12}" for m in METHODS))
        for name in shown:
            cells = []
            for method in METHODS:
                points = results[method][0]
                counts = Counter(points[e] for e in tagged if family[e] == name)
                point, top = counts.most_common(1)[0]
                cells.append(f"{top}/{sizes[name]}" + ("*" if "other" in point else ""))
            print(f"    {name:<28} {sizes[name]:>3} " + " ".join(f"{cell:>12}" for cell in cells))
        print("    (* the point holding it is a signature's 'other' point)")


def planted_predictions(dataset: pd.DataFrame, labels: list[str], family: set[str], wrong: str,
                        seed: int, also: dict[str, str] | None = None) -> pd.DataFrame:
    """Every variant answers `wrong` on `family` (and `also`: example -> wrong label, a second
    planted family), each other example is wrong in one variant with probability 0.15."""
    rng = random.Random(seed)
    variants = ["zero_shot", "few_shot", "cot"]
    also = also or {}
    noisy = {example: rng.choice(variants) for example in dataset["example_id"]
             if example not in family and example not in also and rng.random() < 0.15}
    rows = []
    for variant in variants:
        for example, gold in zip(dataset["example_id"], dataset["label"]):
            answer = gold
            if example in family:
                answer = wrong
            elif example in also:
                answer = also[example]
            elif noisy.get(example) == variant:
                answer = random.Random(f"{seed}-{example}").choice([label for label in labels if label != gold])
            rows.append({"variant": variant, "example_id": example, "repeat": 0, "prediction": answer,
                         "parse_error": None, "request_error": None, "hallucinations": [],
                         "raw_response": f'{{"label": "{answer}"}}'})
    return pd.DataFrame(rows)


def planted_failure(seeds: int, vectors_for) -> None:
    task = load_task(ROOT / "data/complaint_triage/task.yaml")
    dataset = load_dataset(ROOT / "data/complaint_triage/test.jsonl", task)
    labels = list(task.label_names)
    lowered = dataset["text"].str.lower()
    families = {
        "tag app_scam (fraud) -> request": (set(dataset.loc[dataset["tags"].map(lambda t: "app_scam" in t),
                                                            "example_id"]), "request"),
        "complaints saying fee/charge -> fraud": (set(dataset.loc[lowered.str.contains("fee|charge") &
                                                                  (dataset["label"] == "complaint"),
                                                                  "example_id"]), "fraud"),
    }
    print(f"\nplanted failure: complaint_triage test ({len(dataset)} examples), 3 variants, "
          f"noise p=0.15, {seeds} seeds")
    for name, (family, wrong) in families.items():
        print(f"\n  family {name!r}: {len(family)} examples")
        print(f"    {'method':<20} {'errored ex.':>11} {'recall':>7} {'precision':>9} {'recovered':>9} "
              f"{'points':>6} {'noise':>6}")
        for method in METHODS:
            recalls, precisions, recovered, counts, noises, errored = [], [], 0, [], [], []
            for seed in range(seeds):
                predictions = planted_predictions(dataset, labels, family, wrong, seed)
                errors = find_errors(predictions, dataset, task)
                points, noise = example_points(errors, predictions, task, method, vectors_for)
                members: dict[str, set[str]] = {}
                for example, point in points.items():
                    members.setdefault(point, set()).add(example)
                # A signature's "other" point is where unclustered errors go: finding the family
                # there is not finding it, so only real points compete.
                candidates = [m for point, m in members.items() if "other" not in point] or [set()]
                best = max(candidates, key=lambda m: 2 * len(m & family) / (len(m) + len(family)))
                recall, precision = len(best & family) / len(family), len(best & family) / max(len(best), 1)
                recalls.append(recall)
                precisions.append(precision)
                recovered += recall >= 0.8 and precision >= 0.8
                counts.append(len(members))
                noises.append(noise)
                errored.append(len(points))
            print(f"    {method:<20} {np.mean(errored):>11.1f} {np.mean(recalls):>7.2f} {np.mean(precisions):>9.2f} "
                  f"{f'{recovered}/{seeds}':>9} {np.mean(counts):>6.1f} {np.mean(noises):>6.0%}")


def best_match(members: dict[str, set[str]], family: set[str]) -> tuple[str | None, float, float]:
    """The real point (not an "other" one) with the highest F1 over example ids: (point, recall, precision)."""
    candidates = {point: m for point, m in members.items() if "other" not in point}
    if not candidates:
        return None, 0.0, 0.0
    point = max(candidates, key=lambda p: 2 * len(candidates[p] & family) / (len(candidates[p]) + len(family)))
    found = candidates[point] & family
    return point, len(found) / len(family), len(found) / max(len(candidates[point]), 1)


def planted_pair(seeds: int, vectors_for) -> None:
    """Two families with one signature (complaints about fees, and about the app or website, both
    read as requests): the signature alone cannot tell them apart, the content has to."""
    task = load_task(ROOT / "data/complaint_triage/task.yaml")
    dataset = load_dataset(ROOT / "data/complaint_triage/test.jsonl", task)
    labels = list(task.label_names)
    lowered = dataset["text"].str.lower()
    complaint = dataset["label"] == "complaint"
    digital = lowered.str.contains("app|online|website|login|log in")
    fees = set(dataset.loc[complaint & lowered.str.contains("fee|charge") & ~digital, "example_id"])
    apps = set(dataset.loc[complaint & digital & ~lowered.str.contains("fee|charge"), "example_id"])
    print(f"\nplanted pair: two families in one signature ('complaint read as request'): fees ({len(fees)} "
          f"examples) and the app or website ({len(apps)} examples); 3 variants, noise p=0.15, {seeds} seeds")
    print(f"    {'method':<20} {'fees R/P':>11} {'app R/P':>11} {'both apart':>10} {'points':>6}")
    for method in METHODS:
        scores, apart, counts = {"fees": [], "apps": []}, 0, []
        for seed in range(seeds):
            predictions = planted_predictions(dataset, labels, fees, "request", seed,
                                              also={example: "request" for example in apps})
            errors = find_errors(predictions, dataset, task)
            points, _ = example_points(errors, predictions, task, method, vectors_for)
            members: dict[str, set[str]] = {}
            for example, point in points.items():
                members.setdefault(point, set()).add(example)
            found = {name: best_match(members, family) for name, family in (("fees", fees), ("apps", apps))}
            for name, (_, recall, precision) in found.items():
                scores[name].append((recall, precision))
            recovered = {name: point for name, (point, recall, precision) in found.items()
                         if recall >= 0.8 and precision >= 0.8}
            apart += len(recovered) == 2 and recovered["fees"] != recovered["apps"]
            counts.append(len(members))
        cell = {name: "{:.2f}/{:.2f}".format(*np.mean(values, axis=0)) for name, values in scores.items()}
        print(f"    {method:<20} {cell['fees']:>11} {cell['apps']:>11} {f'{apart}/{seeds}':>10} "
              f"{np.mean(counts):>6.1f}")


def synthetic_errors(count: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    task = load_task(ROOT / "data/complaint_triage/task.yaml")
    texts = pd.concat([load_dataset(ROOT / f"data/complaint_triage/{part}.jsonl", task)
                       for part in ("train", "test")])["text"].tolist()
    rng = random.Random(seed)
    openers = ["", "Hi, ", "Hello. ", "Quick one: ", "Good morning, ", "Sorry to bother you, "]
    closers = ["", " Thanks.", " Cheers", " Please help.", " Regards, Sam", " Thank you!"]
    signatures = [("complaint", "request"), ("hardship", "complaint"), ("fraud", "request"),
                  ("request", "complaint"), ("complaint", "fraud"), ("hardship", "request")]
    error_rows, prediction_rows = [], []
    for number in range(count):
        words = rng.choice(texts).split()
        if len(words) > 4 and rng.random() < 0.5:
            del words[rng.randrange(len(words))]
        text = rng.choice(openers) + " ".join(words) + rng.choice(closers) + f" (ref {rng.randrange(10_000)})"
        gold, predicted = rng.choice(signatures)
        example = f"syn-{number}"
        error_rows.append({"example_id": example, "variant": "zero_shot", "repeat": 0, "error_type": "wrong_label",
                           "gold": gold, "predicted": predicted, "text": text, "raw_response": "",
                           "parse_error": None})
        prediction_rows.append({"variant": "zero_shot", "example_id": example, "repeat": 0, "prediction": predicted})
    return pd.DataFrame(error_rows), pd.DataFrame(prediction_rows)


def scale(count: int) -> None:
    task = load_task(ROOT / "data/complaint_triage/task.yaml")
    errors, predictions = synthetic_errors(count, seed=0)
    contexts = [task.kind.error_context(row) for row in errors.to_dict("records")]
    print(f"\nscale: {len(errors):,} synthetic errors, {len(set(contexts)):,} distinct texts, "
          f"{errors.groupby(['gold', 'predicted']).ngroups} signatures (largest "
          f"{errors.groupby(['gold', 'predicted']).size().max():,} errors)")
    SentenceEncoder().encode(["warm-up"])  # the model load is not part of any timing
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    clusterer = ErrorClusterer().fit(errors, predictions, task, label_issues=None)
    fit_s = time.perf_counter() - started
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    vectors = SentenceEncoder().encode(contexts)
    encode_s = time.perf_counter() - started
    tracemalloc.start()
    started = time.perf_counter()
    ErrorClusterer(encoder=FixedEncoder(contexts, vectors)).fit(errors, predictions, task, label_issues=None)
    cluster_s = time.perf_counter() - started
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    points = clusterer.points_
    print(f"  {'ErrorClusterer().fit (default encoder)':<56} {fit_s:8.1f} s")
    print(f"  {'SentenceEncoder().encode on the same contexts':<56} {encode_s:8.1f} s  "
          f"({encode_s / fit_s:.0%} of fit, {len(contexts) / encode_s:,.0f} texts/s)")
    print(f"  {'fit with precomputed vectors (clustering, keywords)':<56} {cluster_s:8.1f} s  "
          f"(under tracemalloc)")
    # On a shared machine the encoder's speed varies between calls; the fit's own embedding time
    # is bounded by the fit less the clustering-only fit.
    print(f"  {'fit less the clustering-only fit (embedding inside fit)':<56} {fit_s - cluster_s:8.1f} s  "
          f"({(fit_s - cluster_s) / fit_s:.0%} of fit)")
    print(f"  points: {int((points['kind'] == 'point').sum()):,} points + {int((points['kind'] == 'other').sum())} "
          f"'other', {int(points.loc[points['kind'] == 'other', 'size'].sum()):,} errors in 'other'")
    print(f"  peak RSS of the process (ru_maxrss, includes the encoder model and parts 1-2): "
          f"{rss_before / 1024:,.0f} MiB before fit, {rss_after / 1024:,.0f} MiB after")
    print(f"  tracemalloc peak during the clustering-only fit (Python + numpy, not torch): "
          f"{traced_peak / 2**20:,.0f} MiB")


def clinc_task(folder: Path):
    """The clinc150 task (151 labels) and its test and train splits, read in place."""
    frames = {part: pd.read_json(folder / f"{part}.jsonl", lines=True).rename(columns={"id": "example_id"})
              for part in ("test", "train")}
    labels = sorted(set(frames["test"]["label"]))
    task = task_from_dict({"name": "clinc150", "kind": "classification",
                           "labels": [{"name": label, "definition": label.replace("_", " ")} for label in labels]})
    return task, {part: validate_dataset(frame, task, source=f"clinc150 {part}") for part, frame in frames.items()}


def planted_clinc(test: pd.DataFrame, labels: list[str], seed: int) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                               dict[str, tuple[str, set[str]]]]:
    """(run dataset, predictions, {family name: (family type, example ids)}) for one seed (part 4)."""
    rng = random.Random(seed)
    run = (test.groupby("label", group_keys=False).sample(n=8, random_state=seed)
           .sort_values("example_id").reset_index(drop=True))
    by_label = {label: list(ids) for label, ids in run.groupby("label")["example_id"]}
    for ids in by_label.values():
        rng.shuffle(ids)
    gold = dict(zip(run["example_id"], run["label"]))
    answers: dict[str, dict[str, str]] = {"zero_shot": {}, "few_shot": {}}
    families: dict[str, tuple[str, set[str]]] = {}
    pairs = rng.sample(PAIRS, 6)
    domains = rng.sample(DOMAINS, 5)
    for a, b in pairs:
        mine = {example: b for example in by_label[a][:3]} | {example: a for example in by_label[b][:3]}
        answers["few_shot"].update(mine)
        families[f"pair {a} / {b}"] = ("confusion pair", set(mine))
    for number, domain in enumerate(domains):
        used: dict[str, int] = {}
        mine = {}
        ring = number >= 3
        for g, w in RING_MISTAKES if ring else DOMAIN_MISTAKES:
            example = by_label[domain[g]][used.get(domain[g], 0)]
            used[domain[g]] = used.get(domain[g], 0) + 1
            mine[example] = domain[w]
        answers["few_shot"].update(mine)
        families[f"domain {domain[0]}..."] = ("confusion ring" if ring else "confusion spread", set(mine))
    planted = {example for _, members in families.values() for example in members}
    reserved = {label for pair in pairs for label in pair} | {label for d in domains for label in d}
    default = rng.choice([label for label in labels if label not in reserved and label != "oos"])
    free = [example for example in run["example_id"] if example not in planted and gold[example] not in reserved
            and gold[example] != default]
    rng.shuffle(free)
    defaulted, zero_noise, few_noise = free[:80], free[80:105], free[105:165]
    answers["zero_shot"].update({example: default for example in defaulted})
    families[f"default {default}"] = ("default answer", set(defaulted))
    for variant, chosen in (("zero_shot", zero_noise), ("few_shot", few_noise)):
        answers[variant].update({example: rng.choice([label for label in labels if label != gold[example]])
                                 for example in chosen})
    rows = [{"variant": variant, "example_id": example, "repeat": 0,
             "prediction": answers[variant].get(example, gold[example]), "parse_error": None,
             "request_error": None, "hallucinations": [], "raw_response": ""}
            for variant in answers for example in run["example_id"]]
    return run, pd.DataFrame(rows), families


def clinc_families(folder: Path, seeds: int, encoder) -> None:
    if not (folder / "test.jsonl").exists():
        print(f"\n{folder}: no clinc150 here (pass --clinc); part 4 skipped")
        return
    task, splits = clinc_task(folder)
    labels = list(task.label_names)
    train = splits["train"]
    print(f"\nclinc150: {len(labels)} labels, {len(splits['test']):,} test examples; {seeds} seeds")
    closeness = []
    for a, b in PAIRS:
        centres = [encoder.encode(train.loc[train["label"] == label, "text"].head(20).tolist()).mean(axis=0)
                   for label in (a, b)]
        closeness.append(float(centres[0] @ centres[1] / np.linalg.norm(centres[0]) / np.linalg.norm(centres[1])))
    print("  pairs' centroid cosine (20 train texts each): " + ", ".join(
        f"{a}/{b} {value:.2f}" for (a, b), value in zip(PAIRS, closeness)))
    vectors_for = make_vectors_for(task, encoder)
    results: dict[str, list[tuple[float, float, bool, str]]] = {}
    made, singletons, signatures, families_made, noise_only, noise_families = [], [], [], Counter(), [], Counter()
    for seed in range(seeds):
        run, predictions, planted = planted_clinc(splits["test"], labels, seed)
        errors = find_errors(predictions, run, task)
        clusterer = ErrorClusterer(encoder=FixedEncoder(*vectors_for(errors))).fit(errors, predictions, task,
                                                                                   label_issues=None)
        points = clusterer.points_
        real = points[points["kind"] == "point"]
        members = {pid: set(ids) for pid, ids in zip(real["point_id"], real["example_ids"])}
        family_of = dict(zip(points["point_id"], points["family"]))
        made.append(len(points))
        singletons.append(int((points["size"] == 1).sum()))
        signatures.append(clusterer.assignments_["signature"].nunique())
        families_made.update(points["family"])
        planted_ids = {example for _, family in planted.values() for example in family}
        noise_only.append(sum(not (ids & planted_ids) for ids in members.values()))
        noise_families.update(family_of[pid] for pid, ids in members.items() if not ids & planted_ids)
        for name, (kind, family) in planted.items():
            best = max(members, key=lambda pid: (len(members[pid] & family), -len(members[pid])), default=None)
            held = members[best] & family if best else set()
            recall = len(held) / len(family)
            precision = len(held) / len(members[best]) if best else 0.0
            results.setdefault(kind, []).append((recall, precision, recall >= 0.8 and precision >= 0.8,
                                                 family_of.get(best, "")))
    print(f"  per seed: {np.mean(signatures):.0f} distinct signatures on average; the clusterer made "
          f"{np.mean(made):.1f} points ({np.mean(singletons):.1f} of one example; {np.mean(noise_only):.1f} real "
          f"points made of noise alone, of the 85 noise errors); families made over all seeds: "
          + ", ".join(f"{family} {count}" for family, count in families_made.most_common())
          + "; noise-only points by family: " + (", ".join(f"{family} {count}" for family, count in
                                                         noise_families.most_common()) or "none"))
    print(f"    {'planted family':<18} {'families':>8} {'recall':>7} {'precision':>9} {'recovered':>9}  "
          f"recovering point's family")
    for kind, values in results.items():
        recall, precision = np.mean([v[0] for v in values]), np.mean([v[1] for v in values])
        recovered = sum(v[2] for v in values)
        by_family = Counter(v[3] for v in values if v[2])
        print(f"    {kind:<18} {len(values):>8} {recall:>7.2f} {precision:>9.2f} {f'{recovered}/{len(values)}':>9}  "
              + ", ".join(f"{family} {count}" for family, count in by_family.most_common()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", type=Path, help="run folder(s) for part 1 (default: the demo runs)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--errors", type=int, default=10_000, help="synthetic errors for part 3 (0 skips it)")
    parser.add_argument("--clinc", type=Path, default=CLINC, help="the clinc150 folder for part 4")
    parser.add_argument("--only", choices=["clinc"], help="run part 4 alone")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)

    encoder = SentenceEncoder()
    if args.only == "clinc":
        print("part 4: many labels (clinc150)")
        clinc_families(args.clinc, args.seeds, encoder)
        return
    print("part 1: agreement with hard-case families (tags); 'ARI all' counts untagged examples as family "
          "'none', the other columns use tagged examples only")
    for folder in args.run or DEMO_RUNS:
        if not is_run_folder(resolve_run_folder(folder)):
            print(f"\n{folder}: no run folder here (run the demo experiment first); skipped")
            continue
        run = load_run(folder)
        family_agreement(folder.name, run, make_vectors_for(run.task, encoder))
    print("\npart 2: planted failure (best-matching point by F1 over example ids; recovered = recall and "
          "precision >= 0.8)")
    task = load_task(ROOT / "data/complaint_triage/task.yaml")
    planted_failure(args.seeds, make_vectors_for(task, encoder))
    planted_pair(args.seeds, make_vectors_for(task, encoder))
    if args.errors > 0:
        print("\npart 3: scale")
        scale(args.errors)
    print("\npart 4: many labels (clinc150)")
    clinc_families(args.clinc, args.seeds, encoder)


if __name__ == "__main__":
    main()
