"""Group splits never put one group in two splits; dHash finds re-encoded copies and not different scenes."""

from __future__ import annotations

import random
from collections import defaultdict

import cv2
import numpy as np
import pytest

from citywatch.datasets.dedupe import dhash, hamming, near_duplicates
from citywatch.datasets.splits import split_by_group


@pytest.mark.parametrize("seed", range(5))
def test_no_group_is_in_two_splits_and_fractions_are_roughly_met(seed: int) -> None:
    rng = random.Random(seed)
    groups = [f"camera-{rng.randrange(12)}" for _ in range(400)]
    splits = split_by_group(groups, {"train": 0.7, "val": 0.2, "test": 0.1}, seed=seed)
    seen: dict[str, set[str]] = defaultdict(set)
    for group, split in zip(groups, splits, strict=True):
        seen[group].add(split)
    assert all(len(s) == 1 for s in seen.values())
    assert abs(splits.count("train") / len(splits) - 0.7) < 0.15
    assert splits.count("val") > 0


def test_split_is_deterministic_and_depends_on_the_seed() -> None:
    groups = [f"g{i % 30}" for i in range(300)]
    first = split_by_group(groups, {"train": 0.8, "val": 0.2}, seed=1)
    assert first == split_by_group(groups, {"train": 0.8, "val": 0.2}, seed=1)
    assert first != split_by_group(groups, {"train": 0.8, "val": 0.2}, seed=2)


def test_bad_fractions_are_refused() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_group(["a"], {"train": 0.8, "val": 0.3})


def _scene(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    return cv2.resize(small, (320, 240), interpolation=cv2.INTER_CUBIC)


def test_dhash_matches_a_recompressed_copy_and_separates_scenes() -> None:
    scene = _scene(0)
    ok, jpeg = cv2.imencode(".jpg", scene, [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert ok
    copy = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    assert hamming(dhash(scene), dhash(copy)) <= 2
    assert hamming(dhash(scene), dhash(_scene(1))) > 16


def test_near_duplicates_keep_the_first_of_each_cluster() -> None:
    a, b = dhash(_scene(0)), dhash(_scene(1))
    assert near_duplicates([a, b, a ^ 0b11, b, a ^ (2**40 - 1)], max_distance=4) == {2: 0, 3: 1}
