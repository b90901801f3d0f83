"""Train/val/test split grouped by ROI and stratified by class as far as the groups allow.

Patches of one ROI share ground, season and often clouds; putting them in two splits would leak. So
whole ROIs are assigned, largest first (in a seeded random order among equals), each to the split
where it most reduces the squared gap between the class counts reached and the counts wanted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from cloudcover.train.errors import CloudcoverError

SPLITS = ("train", "val", "test")


def parse_split(text: str) -> tuple[float, float, float]:
    """'0.7,0.15,0.15' -> fractions of train, val, test (non-negative, summing to 1, train > 0)."""
    try:
        parts = tuple(float(p) for p in str(text).split(","))
    except ValueError:
        raise CloudcoverError(f"--split {text!r}: not three comma-separated numbers") from None
    if len(parts) != 3:
        raise CloudcoverError(f"--split {text!r}: need three fractions (train,val,test)")
    if any(not math.isfinite(p) or p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6 or parts[0] <= 0:
        raise CloudcoverError(f"--split {text!r}: fractions must be >= 0, sum to 1, and train must be > 0")
    return parts  # type: ignore[return-value]


def grouped_split(groups: Sequence[str], labels: Sequence[int], fractions: Sequence[float], seed: int,
                  n_classes: int | None = None) -> list[str]:
    """The split name ('train', 'val', 'test') of every item; items of one group always share it."""
    if len(groups) != len(labels):
        raise ValueError("groups and labels differ in length")
    if not groups:
        return []
    k = n_classes or (max(labels) + 1)
    names = sorted(set(groups))
    index = {g: i for i, g in enumerate(names)}
    counts = np.zeros((len(names), k), np.int64)
    for g, c in zip(groups, labels):
        counts[index[g], c] += 1
    frac = np.asarray(fractions, np.float64)
    want = frac[:, None] * counts.sum(axis=0)[None, :]  # (splits, classes)
    want_n = frac * counts.sum()
    have = np.zeros_like(want)
    have_n = np.zeros_like(want_n)

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    order = sorted(order, key=lambda i: -counts[i].sum())  # stable: random among equal sizes
    assign = np.empty(len(names), np.int64)
    for gi in order:
        best, best_cost = 0, math.inf
        for s in range(len(frac)):
            if frac[s] <= 0:
                continue
            after = have[s] + counts[gi]
            cost = (((after - want[s]) ** 2).sum() - ((have[s] - want[s]) ** 2).sum()
                    + (have_n[s] + counts[gi].sum() - want_n[s]) ** 2 - (have_n[s] - want_n[s]) ** 2)
            if cost < best_cost:
                best, best_cost = s, cost
        assign[gi] = best
        have[best] += counts[gi]
        have_n[best] += counts[gi].sum()
    return [SPLITS[assign[index[g]]] for g in groups]
