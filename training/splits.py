"""Patient-grouped, label- and source-stratified, seeded train/val/test splits.

Images are joined into groups that must never straddle two splits: same source and patient id,
and byte-identical files (same sha256, whatever their names). Groups are then dealt, per stratum
(source x group label), in a seeded random order to the split furthest below its target share.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from training.sources import Item

SPLITS = ("train", "val", "test")


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def group_ids(items: Sequence[Item], hashes: Sequence[str]) -> list[int]:
    """Group index per item: same (source, patient) or same file content -> same group."""
    uf = _UnionFind(len(items))
    first: dict[tuple[str, str], int] = {}
    for i, it in enumerate(items):
        for key in (("p", f"{it.source}\0{it.patient_id}"), ("h", hashes[i])):
            if key in first:
                uf.union(first[key], i)
            else:
                first[key] = i
    roots: dict[int, int] = {}
    return [roots.setdefault(uf.find(i), len(roots)) for i in range(len(items))]


def assign_splits(items: Sequence[Item], groups: Sequence[int],
                  fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
                  seed: int = 0) -> list[str]:
    """Split name per item. Deterministic for a given seed and item order."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ValueError("fractions must be three non-negative numbers")
    total = sum(fractions)
    fr = [f / total for f in fractions]
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    strata: dict[tuple[str, int], list[int]] = defaultdict(list)
    for g, idx in members.items():
        src = items[idx[0]].source
        label = max(items[i].label for i in idx)
        strata[(src, label)].append(g)
    rng = random.Random(seed)
    split_of_group: dict[int, str] = {}
    for key in sorted(strata):
        gs = sorted(strata[key])
        rng.shuffle(gs)
        counts = [0, 0, 0]
        for g in gs:
            n = len(members[g])
            after = sum(counts) + n
            # the split furthest below its share of what has been dealt so far (incl. this one)
            deficit = [fr[k] * after - counts[k] for k in range(3)]
            k = max(range(3), key=lambda j: (deficit[j], -j))
            counts[k] += n
            split_of_group[g] = SPLITS[k]
    return [split_of_group[g] for g in groups]


def assign_folds(groups: Sequence[object], labels: Sequence[int], k: int = 5, seed: int = 0,
                 strata: Sequence[str] | None = None) -> list[int]:
    """Fold number (0..k-1) per image for patient-grouped, label-stratified k-fold CV.

    Groups (patients, duplicates) never straddle two folds; within each stratum (``strata``,
    e.g. the source, x the group's label) groups are dealt in a seeded random order to the
    fold with the fewest images so far, so folds get near-equal sizes and prevalences.
    """
    if k < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    members: dict[object, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    if len(members) < k:
        raise ValueError(f"{len(members)} patient groups cannot fill {k} folds")
    by_stratum: dict[tuple[str, int], list[object]] = defaultdict(list)
    for g, idx in members.items():
        s = strata[idx[0]] if strata is not None else ""
        by_stratum[(s, max(int(labels[i]) for i in idx))].append(g)
    rng = random.Random(seed)
    fold_of: dict[object, int] = {}
    counts = [0] * k
    for key in sorted(by_stratum):
        gs = sorted(by_stratum[key], key=str)
        rng.shuffle(gs)
        per = [0] * k  # images of this stratum per fold: balance the stratum, then the total
        for g in gs:
            f = min(range(k), key=lambda j: (per[j], counts[j], j))
            per[f] += len(members[g])
            counts[f] += len(members[g])
            fold_of[g] = f
    return [fold_of[g] for g in groups]
