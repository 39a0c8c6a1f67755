"""Label checks for YOLO detect labels: what is kept, and for everything dropped, why.

A label file is lines of ``class cx cy w h`` (fractions of the image). `check_labels` reads one file's text
against the image size, the source's class names and the class map, and returns the kept boxes (with
*target* class ids) and one `Drop` per line it refused. An empty label file is a background image, which is
allowed. Boxes that overshoot the image by less than `OVERSHOOT_TOLERANCE` (exporters' rounding) are clipped;
boxes further outside are dropped, not guessed at.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

__all__ = ["OVERSHOOT_TOLERANCE", "Drop", "DropReason", "check_labels", "count_drops"]

OVERSHOOT_TOLERANCE = 0.01
"""How far (fraction of the image side) a box may reach outside the image and still be clipped and kept."""

MIN_BOX_PIXELS = 1.0
"""A box narrower or lower than this many pixels, after clipping, is degenerate."""


class DropReason(StrEnum):
    """Why a label line or an image was left out of a dataset."""

    MALFORMED = "malformed line"
    """Not five numbers (for example a segmentation polygon, or text)."""
    UNKNOWN_CLASS = "unknown class id"
    """A class id the source's names do not have."""
    UNMAPPED_CLASS = "class not mapped"
    """The class map sends this source class to nothing (deliberately excluded)."""
    OUTSIDE_IMAGE = "box outside the image"
    """The box reaches outside the image by more than the tolerance, or its centre is outside."""
    DEGENERATE = "degenerate box"
    """Zero, negative or sub-pixel width or height."""
    UNREADABLE_IMAGE = "unreadable image"
    """The image file cannot be decoded (the whole image and its labels are dropped)."""
    NEAR_DUPLICATE = "near-duplicate image"
    """Its perceptual hash is within the threshold of an image already kept."""
    GROUP_LEAK = "group in two splits"
    """Its group (camera, source picture) is also in an evaluation split; the training copy is dropped."""
    EXTRA_COPY = "extra copy of a source picture"
    """Its group already has the recipe's `copies_per_group` in this split (augmented exports)."""


@dataclass(frozen=True)
class Drop:
    """One thing left out: a label line (`line` ≥ 1) or a whole image (`line` None)."""

    source: str
    item: str
    """The image's path relative to its source (or another stable id for sources that are not folders)."""
    reason: DropReason
    detail: str
    line: int | None = None

    def as_dict(self) -> dict[str, str | int | None]:
        return {
            "source": self.source,
            "item": self.item,
            "line": self.line,
            "reason": self.reason.value,
            "detail": self.detail,
        }


def count_drops(drops: Iterable[Drop]) -> dict[str, int]:
    """Number of drops per reason, reasons in the enum's order, zero counts left out."""
    counts = Counter(drop.reason for drop in drops)
    return {reason.value: counts[reason] for reason in DropReason if counts[reason]}


def _parse(line: str) -> list[float] | None:
    parts = line.split()
    if len(parts) != 5:
        return None
    try:
        values = [float(part) for part in parts]
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in values) or values[0] != int(values[0]):
        return None
    return values


def _clip(cx: float, cy: float, w: float, h: float) -> tuple[float, float, float, float] | str:
    """The box clipped to the image, or why it cannot be kept."""
    x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    if not (0.0 <= cx <= 1.0 and 0.0 <= cy <= 1.0):
        return f"centre ({cx:.4f}, {cy:.4f}) is outside the image"
    worst = max(-x1, -y1, x2 - 1.0, y2 - 1.0)
    if worst > OVERSHOOT_TOLERANCE:
        return f"reaches {worst:.4f} of the image side outside it (tolerance {OVERSHOOT_TOLERANCE})"
    x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, 1.0), min(y2, 1.0)
    return (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1


def check_labels(
    text: str,
    *,
    image_size: tuple[int, int],
    source_names: Sequence[str],
    class_map: Mapping[str, int | None],
    source: str,
    item: str,
) -> tuple[np.ndarray, list[Drop]]:
    """Kept boxes (N×5: target class id, cx, cy, w, h) and the drops of one label file.

    `image_size` is (height, width) in pixels. `class_map` maps a source class *name* to a target class id,
    or None to exclude it; a source name missing from the map is a configuration error, caught earlier by
    the recipe, so here it counts as unmapped.
    """
    height, width = image_size
    kept: list[list[float]] = []
    drops: list[Drop] = []

    def drop(number: int, reason: DropReason, detail: str) -> None:
        drops.append(Drop(source, item, reason, detail, line=number))

    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        values = _parse(raw)
        if values is None:
            drop(number, DropReason.MALFORMED, f"expected 'class cx cy w h'; got {raw.strip()[:80]!r}")
            continue
        class_id, cx, cy, w, h = int(values[0]), *values[1:]
        if not 0 <= class_id < len(source_names):
            drop(number, DropReason.UNKNOWN_CLASS, f"class {class_id}; the source has {len(source_names)} classes")
            continue
        name = source_names[class_id]
        target = class_map.get(name)
        if target is None:
            drop(number, DropReason.UNMAPPED_CLASS, f"{name!r} is excluded by the class map")
            continue
        if w <= 0 or h <= 0:
            drop(number, DropReason.DEGENERATE, f"width {w} and height {h} must be > 0")
            continue
        clipped = _clip(cx, cy, w, h)
        if isinstance(clipped, str):
            drop(number, DropReason.OUTSIDE_IMAGE, clipped)
            continue
        cx, cy, w, h = clipped
        if w * width < MIN_BOX_PIXELS or h * height < MIN_BOX_PIXELS:
            drop(number, DropReason.DEGENERATE, f"{w * width:.2f}×{h * height:.2f} px after clipping")
            continue
        kept.append([float(target), cx, cy, w, h])
    return np.array(kept, dtype=np.float64).reshape(-1, 5), drops
