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
