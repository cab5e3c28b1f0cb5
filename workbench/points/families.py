"""Failure families: how `ErrorClusterer` groups errors so that many labels do not shatter them.

With a handful of labels the (gold, answer) signature is a good first grouping. With 150 labels
almost every signature is unique, and grouping by it alone makes one point per error. So the
members (one per (example, signature)) go through these families, in this order, each taking
what it claims and leaving the rest to the next:

1. ``default answer``: one answer given to most errors of a variant, whatever the gold (see
   `default_answers` for the thresholds). Every member with that answer is ONE point.
2. ``signature`` / ``pair``: members clustered by content within their signature (average
   linkage, as before); then a cluster of "A read as B" and one of "B read as A" join when their
   centres are alike (`join_reverse`: the same boundary confused both ways). A cluster of at
   least `min_size` examples is a point: ``pair`` when it holds both directions, ``signature``
   otherwise. With few labels this is nearly the whole story, as before.
3. ``answer``: the leftovers (members of clusters too small to be points) grouped by answer alone
   ("anything read as X"), kept when the count is unlikely by chance (`chance_families`).
4. ``gold``: the remaining leftovers grouped by gold alone ("X read as anything"), the same test.
5. ``content``: the remaining leftovers linked across signatures when they share a label and
   their texts are alike (`related_components`: confusions within a group of related labels,
   each signature perhaps once; a group that one label runs through is left to steps 3 and 4's
   verdict), a group of at least `min_size` examples being a point; then clustered by content
   alone, where a point needs `family_min` examples (with many labels, two unrelated errors with
   alike texts are common).
6. ``other``: the rest, in their signature's "other" point when the signature recurs (at least
   `min_size` examples in all), else in one shared "other" point, so that unique signatures do
   not each make a point.

Which errors have a gold side and an answer side (`TaskKind.error_sides`, per kind) is limited to what makes sense:
classification's wrong labels (gold label, answer label) and parse failures (answer side
"unparsed", no gold side: a format failure, not a confusion of the gold label), and NER's
wrong-label errors, including a boundary error that also changed the label (gold type, answer
type). NER's missed, spurious and invented entities and multi-label's "missed X" / "extra X"
already name one label in their signature (the signature is itself a gold-alone or answer-alone
grouping, and there are few of them), so they take part in steps 2, 5 and 6 only: merging
"missed DRUG" with "DRUG read as DOSE" under "DRUG read as anything" would join two failures
with different fixes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.stats import binom

from workbench.core.kinds.base import UNPARSED_SIDE
from workbench.points.encoder import unit_rows

FAMILIES = ("default answer", "signature", "pair", "answer", "gold", "content", "other", "relabel")
Key = tuple[str, str]  # (example_id, signature): one member


@dataclass(frozen=True)
class Family:
    """One proposed point: ``kind`` (``point`` or ``other``), ``family`` (one of `FAMILIES`),
    ``signature`` (what went wrong in every member, in words), ``members`` ((example_id,
    signature) keys), ``title`` (a name to use instead of the signature, or None) and ``note``
    (one sentence on what holds it together; empty for plain signature points)."""

    kind: str
    family: str
    signature: str
    members: list[Key] = field(default_factory=list)
    title: str | None = None
    note: str = ""


def default_answers(rows: pd.DataFrame, *, share: float, at_least: int,
                    golds: int) -> dict[str, dict[str, tuple[int, int]]]:
    """{answer: {variant: (examples given it, examples wrong)}} for the default answers in `rows`.

    `rows`: error rows with ``variant``, ``example_id``, ``gold_side`` and ``answer_side``. An
    answer is a variant's default when it is the answer side of at least `share` of the examples
    the variant got wrong, of at least `at_least` examples, of examples of at least `golds`
    different gold labels, and no one gold label has more than half of them: given whatever the
    gold, not one confusion that happens to be common (with few labels, most errors of a variant
    can share an answer because one pair of labels is confused, plus a little noise).
    "unparsed" is never a default answer (it is no answer; step 3 can still group it).
    """
    found: dict[str, dict[str, tuple[int, int]]] = {}
    for variant, mine in rows.groupby("variant", sort=False):
        wrong = mine["example_id"].nunique()
        answered = mine[mine["answer_side"].notna() & (mine["answer_side"] != UNPARSED_SIDE)]
        for answer, given in answered.groupby("answer_side", sort=False):
            count = given["example_id"].nunique()
            per_gold = given.drop_duplicates("example_id")["gold_side"].value_counts()
            if (count >= at_least and count >= share * wrong and len(per_gold) >= golds
                    and per_gold.max() <= count / 2):
                found.setdefault(str(answer), {})[str(variant)] = (count, wrong)
    return found


def chance_families(pool: Sequence[Key], side: dict[Key, str | None], other_side: dict[Key, str | None], *,
                    labels: int, alpha: float, at_least: int, which: str) -> list[Family]:
    """Families of `pool` members sharing one side (`which`: ``answer`` or ``gold``), kept when
    unlikely by chance.

    Chance here: each member's answer spread evenly over the other ``labels - 1`` labels (for
    gold: each member's gold spread evenly over the ``labels`` labels). A side is kept when at
    least `at_least` members share it, they have at least two different values on the other side
    (else they are one signature, whose content did not cluster), and the binomial probability
    of that many or more, times ``labels`` (Bonferroni over the labels that could have been
    tested), is below `alpha`. Gold labels are not evenly common in most data, so a gold family
    says "more errors than an even share", not "worse than its share of the examples".
    "unparsed" answers are grouped without the test: no label is being picked by chance.
    """
    probability = 1 / (labels - 1) if which == "answer" else 1 / labels
    tested = [key for key in pool if side.get(key) is not None and side[key] != UNPARSED_SIDE]
    counts = Counter(side[key] for key in pool if side.get(key) is not None)
    families = []
    for value, count in counts.most_common():
        mine = [key for key in pool if side.get(key) == value]
        if count < at_least or len({other_side.get(key) for key in mine}) < 2:
            continue
        if value == UNPARSED_SIDE:
            families.append(Family("point", which, "anything unparsed", mine,
                                   note=f"{count} answers that could not be read, across gold labels"))
            continue
        if labels < 2:
            continue
        p_value = float(binom.sf(count - 1, len(tested), probability))
        if p_value * labels >= alpha:
            continue
        expected = len(tested) * probability
        signature = f"anything read as {value}" if which == "answer" else f"{value} read as anything"
        others = "gold labels" if which == "answer" else "answers"
        families.append(Family("point", which, signature, mine, note=(
            f"{count} errors {'read as' if which == 'answer' else 'of'} '{value}' across "
            f"{len({other_side.get(key) for key in mine})} {others}, where an even spread would give "
            f"{expected:.1f} (binomial p = {p_value:.1g}, x {labels} labels)")))
    return families


def joined(signatures: Sequence[str], shown: int = 3) -> str:
    """Signatures in words: all of them up to `shown`, then how many more."""
    distinct = list(dict.fromkeys(signatures))
    text = " | ".join(distinct[:shown])
    return text + (f" and {len(distinct) - shown} more" if len(distinct) > shown else "")




def join_reverse(clusters: list[list[Key]], gold: dict[Key, str | None], answer: dict[Key, str | None],
                 vectors: Callable[[list[Key]], np.ndarray], threshold: float, min_size: int) -> list[list[Key]]:
    """`clusters` (each of one signature) with those of "A read as B" and "B read as A" joined when
    both have at least `min_size` examples, the smaller at least half as many as the larger, and
    their centres (mean embeddings) are within cosine distance `threshold`: one boundary confused
    both ways, recurring in each direction. Centres, not average linkage: two related intents'
    texts are on average less alike than each is to the other's centre, and the signatures
    already say the two are related. Both directions must recur, comparably, because with few
    labels a few stray reverse errors are common (measured on complaint_triage: joining 2 reverse
    errors to a planted one-way family of 9 cost it its precision); a one-way confusion stays a
    ``signature`` point, and single errors both ways can still meet in step 5."""
    sides = [(gold[c[0]], answer[c[0]]) for c in clusters]
    centres = {i: unit_rows(vectors(c).mean(axis=0, keepdims=True), dtype=None)[0] for i, c in enumerate(clusters)
               if sides[i][0] is not None and sides[i][1] not in (None, UNPARSED_SIDE)
               and len({example for example, _ in c}) >= min_size}
    parent = list(range(len(clusters)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_sides: dict[tuple, list[int]] = {}
    for i in centres:
        by_sides.setdefault(sides[i], []).append(i)
    for i in centres:
        for j in by_sides.get((sides[i][1], sides[i][0]), []):
            small, large = sorted(len({example for example, _ in clusters[k]}) for k in (i, j))
            if i < j and 2 * small >= large and 1 - float(centres[i] @ centres[j]) <= threshold:
                parent[root(j)] = root(i)
    joined_clusters: dict[int, list[Key]] = {}
    for i, members in enumerate(clusters):
        joined_clusters.setdefault(root(i), []).extend(members)
    return list(joined_clusters.values())


def related_components(pool: list[Key], gold: dict[Key, str | None], answer: dict[Key, str | None],
                       vectors: Callable[[list[Key]], np.ndarray], threshold: float) -> list[list[Key]]:
    """`pool` split into connected groups, two members linked when they share a label (as gold or
    answer, either way round) and either their texts are within cosine distance `threshold` or
    their other two labels were confused by a third member (a triangle of confusions):
    confusions among a few related labels, each (gold, answer) perhaps once. Members with no
    label side are groups of their own."""
    if not pool:
        return []
    named = [sorted({gold[key], answer[key]} - {None, UNPARSED_SIDE}) for key in pool]
    columns = {label: i for i, label in enumerate(dict.fromkeys(label for labels in named for label in labels))}
    rows = [i for i, labels in enumerate(named) for _ in labels]
    incidence = csr_matrix((np.ones(len(rows)), (rows, [columns[label] for labels in named for label in labels])),
                           shape=(len(pool), max(len(columns), 1)))
    # Only pairs that share a label need their texts compared (sparse: few do with many labels).
    shared = (incidence @ incidence.T).tocoo()
    first, second = shared.row, shared.col
    matrix = unit_rows(vectors(pool), dtype=None)
    close = np.einsum("ij,ij->i", matrix[first], matrix[second]) >= 1 - threshold
    # "L read as A" and "L read as B" (either way round) are linked whatever their texts when some
    # member confused A and B too: three labels confused pairwise, which chance rarely makes with
    # many labels (measured: on clinc150 this took planted spread confusions from 0.77 to 1.00
    # recall at 1.00 precision; a ring of confusions with no such triangle still needs alike texts).
    pair = np.array([[columns[label] for label in labels] if len(labels) == 2 else [-1, -1] for labels in named])
    two = (pair[first, 0] >= 0) & (pair[second, 0] >= 0) & (shared.data == 1) & (first != second)
    # With one label in common, the two labels left are those in one pair but not the other.
    sum_first, sum_second = pair[first].sum(axis=1), pair[second].sum(axis=1)
    in_second = (pair[first, 0] == pair[second, 0]) | (pair[first, 0] == pair[second, 1])
    common = np.where(in_second, pair[first, 0], pair[first, 1])
    left, right = sum_first - common, sum_second - common
    width = len(columns) + 1
    edges = np.unique(pair[pair[:, 0] >= 0].min(axis=1) * width + pair[pair[:, 0] >= 0].max(axis=1))
    triangle = two & np.isin(np.minimum(left, right) * width + np.maximum(left, right), edges)
    close |= triangle
    linked = csr_matrix((np.ones(int(close.sum())), (first[close], second[close])), shape=(len(pool), len(pool)))
    _, component = connected_components(linked, directed=False)
    groups: dict[int, list[Key]] = {}
    for key, number in zip(pool, component):
        groups.setdefault(int(number), []).append(key)
    return list(groups.values())


def find_families(members: pd.DataFrame, rows: pd.DataFrame, vectors: Callable[[list[Key]], np.ndarray],
                  cluster: Callable[[np.ndarray], list[int]], *, labels: int, min_size: int, threshold: float,
                  default_share: float, default_min: int, default_golds: int, family_min: int,
                  alpha: float) -> list[Family]:
    """The families of the module docstring, in that order, each member in exactly one.

    `members`: one row per (example_id, signature) with ``example_id``, ``signature``,
    ``gold_side``, ``answer_side``; `rows`: every error row clustered (``variant``,
    ``example_id``, ``gold_side``, ``answer_side``), for the variants' default answers;
    `vectors` maps member keys to their embeddings; `cluster` labels embeddings by content;
    `threshold` is the cosine distance under which two texts or centres count as alike.
    """
    keys: list[Key] = list(zip(members["example_id"], members["signature"]))
    gold = dict(zip(keys, members["gold_side"]))
    answer = dict(zip(keys, members["answer_side"]))

    def examples_of(group: list[Key]) -> int:
        return len({example for example, _ in group})

    families: list[Family] = []

    defaults = default_answers(rows, share=default_share, at_least=default_min, golds=default_golds)
    for value, by_variant in defaults.items():
        mine = [key for key in keys if answer[key] == value]
        shares = [f"{variant} gave '{value}' to {count} of {wrong} of its errors ({count / wrong:.0%})"
                  for variant, (count, wrong) in by_variant.items()]
        first, (count, wrong) = next(iter(by_variant.items()))
        families.append(Family("point", "default answer", f"anything read as {value}", mine,
                               title=f"default answer: '{value}' given to {count} of {wrong} errors of {first}",
                               note="; ".join(shares)))
    taken = {key for family in families for key in family.members}

    # Step 2: signatures clustered by content; a confusion's clusters and its reverse's may join.
    by_signature: dict[str, list[Key]] = {}
    for key in keys:
        if key not in taken:
            by_signature.setdefault(key[1], []).append(key)
    clusters: list[list[Key]] = []
    for grouped in by_signature.values():
        labels_of = cluster(vectors(grouped))
        clusters.extend([key for key, own in zip(grouped, labels_of) if own == label]
                        for label in dict.fromkeys(labels_of))
    leftovers: list[Key] = []
    for mine in join_reverse(clusters, gold, answer, vectors, threshold, min_size):
        if examples_of(mine) < min_size:
            leftovers.extend(mine)
            continue
        signatures = list(dict.fromkeys(signature for _, signature in mine))
        if len(signatures) == 1:
            families.append(Family("point", "signature", signatures[0], mine))
        else:
            a, b = sorted({gold[key] for key in mine})
            families.append(Family("point", "pair", f"{a} and {b} confused", mine,
                                   note=f"read as each other both ways ({joined(signatures)})"))

    # Steps 3 and 4: one side alone, over what no signature point took.
    for which, side, other in (("answer", answer, gold), ("gold", gold, answer)):
        found = chance_families(leftovers, side, other, labels=labels, alpha=alpha, at_least=family_min,
                                which=which)
        families.extend(found)
        claimed = {key for family in found for key in family.members}
        leftovers = [key for key in leftovers if key not in claimed]

    # Step 5: content across signatures: first among errors that share a label (confusions within
    # a group of related labels), then by content alone, where chance pairs are common with many
    # labels, so such a point needs `family_min` examples.
    rest: list[Key] = []
    for component in related_components(leftovers, gold, answer, vectors, threshold):
        # One label in every member is a gold or answer family, which steps 3 and 4 found too
        # likely by chance; only a web of related labels is kept here.
        common = set.intersection(*({gold[key], answer[key]} - {None, UNPARSED_SIDE} for key in component))
        if examples_of(component) >= min_size and not common:
            signatures = [signature for _, signature in component]
            related = sorted({side[key] for side in (gold, answer) for key in component} - {None, UNPARSED_SIDE})
            families.append(Family("point", "content", joined(signatures), component, note=(
                f"similar texts across {len(set(signatures))} signatures of {len(related)} related labels "
                f"({', '.join(related[:5])}{', ...' if len(related) > 5 else ''})")))
        else:
            rest.extend(component)
    leftovers, rest = rest, []
    labels_of = cluster(vectors(leftovers)) if leftovers else []
    for label in dict.fromkeys(labels_of):
        mine = [key for key, own in zip(leftovers, labels_of) if own == label]
        if examples_of(mine) >= max(min_size, family_min):
            signatures = [signature for _, signature in mine]
            families.append(Family("point", "content", joined(signatures), mine,
                                   note=f"similar texts across {len(set(signatures))} signature(s)"))
        else:
            rest.extend(mine)

    # Step 6: what is left; a signature that recurs keeps its own "other" point.
    recurring = Counter(signature for _, signature in keys)  # members are distinct (example, signature)
    shared: list[Key] = []
    by_signature: dict[str, list[Key]] = {}
    for key in rest:
        if recurring[key[1]] >= min_size:
            by_signature.setdefault(key[1], []).append(key)
        else:
            shared.append(key)
    for signature, mine in by_signature.items():
        families.append(Family("other", "other", signature, mine))
    if shared:
        signatures = [signature for _, signature in shared]
        many = len(set(signatures)) > 1
        families.append(Family("other", "other", joined(signatures), shared,
                               title=f"no recurring pattern: {len(set(signatures))} signatures" if many else None,
                               note="errors whose signature occurs once and whose text is like no other error's"
                               if many else ""))
    return families
