"""Splits that keep groups apart: every group (a camera, a source image and its augmented copies…) lands in
exactly one split, so a model is never validated on the place or picture it was trained on."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence

__all__ = ["split_by_group"]


def split_by_group(groups: Sequence[str], fractions: Mapping[str, float], *, seed: int = 0) -> list[str]:
    """The split of each item, given each item's group key and the wanted fraction of items per split.

    Groups are shuffled with `seed`, then each goes to the split furthest below its target item count
    (largest groups first, so a big camera cannot overshoot a small split at the end). Deterministic for a
    given input and seed; no group is ever in two splits. With fewer groups than splits some splits stay empty.
    """
    if not fractions:
        raise ValueError("split_by_group: give at least one split, e.g. {'train': 0.8, 'val': 0.2}")
    if any(f < 0 for f in fractions.values()) or abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise ValueError(f"split_by_group: fractions must be >= 0 and sum to 1; got {dict(fractions)}")
    sizes = Counter(groups)
    order = sorted(sizes)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda g: -sizes[g])  # stable: equal sizes keep the shuffled order
    total = len(groups)
    assigned: dict[str, str] = {}
    filled = dict.fromkeys(fractions, 0)
    for group in order:
        split = max(fractions, key=lambda s: fractions[s] * total - filled[s])
        assigned[group] = split
        filled[split] += sizes[group]
    return [assigned[g] for g in groups]
