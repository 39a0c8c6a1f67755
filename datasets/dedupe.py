"""Near-duplicate frames, found with a cheap perceptual hash (dHash: 64 bits of horizontal gradient signs
on a 9×8 grey thumbnail). Consecutive frames of a still camera hash within a few bits of each other;
different scenes differ in ~32."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["DEFAULT_MAX_DISTANCE", "dhash", "hamming", "near_duplicates"]

DEFAULT_MAX_DISTANCE = 4
"""Bits of 64 within which two images count as the same picture."""


def dhash(image: np.ndarray) -> int:
    """64-bit difference hash of a BGR or grey uint8 image."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    small = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def near_duplicates(hashes: Sequence[int], max_distance: int = DEFAULT_MAX_DISTANCE) -> dict[int, int]:
    """{index: index of the earlier kept image it duplicates}, scanning in order and keeping the first."""
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0; got {max_distance}")
    array = np.array(hashes, dtype=np.uint64)
    kept: list[int] = []
    duplicates: dict[int, int] = {}
    for index, value in enumerate(array):
        if kept:
            xor = (array[kept] ^ value).view(np.uint8).reshape(-1, 8)
            distances = np.unpackbits(xor, axis=1).sum(axis=1)  # popcount (np.bitwise_count needs numpy 2)
            nearest = int(np.argmin(distances))
            if int(distances[nearest]) <= max_distance:
                duplicates[index] = kept[nearest]
                continue
        kept.append(index)
    return duplicates
