"""Label checks: each kind of bad line is dropped with its reason; good and slightly-overshooting boxes kept."""

from __future__ import annotations

import numpy as np
import pytest

from citywatch.datasets.validate import DropReason, check_labels

NAMES = ("garbage", "garbage_bin", "overflow", "person")
CLASS_MAP = {"garbage": 0, "garbage_bin": 1, "overflow": 2, "person": None}


def check(text: str, size: tuple[int, int] = (100, 200)) -> tuple[np.ndarray, list[DropReason]]:
    boxes, drops = check_labels(
        text, image_size=size, source_names=NAMES, class_map=CLASS_MAP, source="s", item="images/train/a.jpg"
    )
    return boxes, [d.reason for d in drops]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("0 0.5 0.5 0.2", DropReason.MALFORMED),
        ("0 0.5 0.5 0.2 0.2 0.3", DropReason.MALFORMED),  # a segmentation polygon
        ("zero 0.5 0.5 0.2 0.2", DropReason.MALFORMED),
        ("0.5 0.5 0.5 0.2 0.2", DropReason.MALFORMED),  # fractional class id
        ("0 nan 0.5 0.2 0.2", DropReason.MALFORMED),
        ("7 0.5 0.5 0.2 0.2", DropReason.UNKNOWN_CLASS),
        ("-1 0.5 0.5 0.2 0.2", DropReason.UNKNOWN_CLASS),
        ("3 0.5 0.5 0.2 0.2", DropReason.UNMAPPED_CLASS),  # person → null in the class map
        ("0 0.5 0.5 0 0.2", DropReason.DEGENERATE),
        ("0 0.5 0.5 0.001 0.2", DropReason.DEGENERATE),  # 0.2 px wide in a 200 px image
        ("0 0.95 0.5 0.2 0.2", DropReason.OUTSIDE_IMAGE),  # reaches 0.05 past the right edge
        ("0 1.2 0.5 0.1 0.1", DropReason.OUTSIDE_IMAGE),  # centre outside
    ],
)
def test_bad_lines_are_dropped_with_their_reason(line: str, reason: DropReason) -> None:
    boxes, reasons = check(line)
    assert len(boxes) == 0
    assert reasons == [reason]


def test_good_lines_are_kept_with_target_ids_and_tiny_overshoot_clipped() -> None:
    boxes, reasons = check("2 0.5 0.5 0.2 0.4\n\n1 0.1 0.5 0.205 0.2\n")
    assert reasons == []
    assert boxes[:, 0].tolist() == [2.0, 1.0]
    # 0.1 ± 0.1025 overshoots the left edge by 0.0025 (< 1 % tolerance): clipped to [0, 0.2025]
    np.testing.assert_allclose(boxes[1, 1:], [0.10125, 0.5, 0.2025, 0.2])


def test_an_empty_label_file_is_a_background_image() -> None:
    boxes, reasons = check("")
    assert boxes.shape == (0, 5)
    assert reasons == []


def test_drops_name_the_line() -> None:
    _, drops = check_labels(
        "0 0.5 0.5 0.2 0.2\n9 0.5 0.5 0.2 0.2",
        image_size=(10, 10),
        source_names=NAMES,
        class_map=CLASS_MAP,
        source="s",
        item="x.jpg",
    )
    assert [(d.line, d.item, d.source) for d in drops] == [(2, "x.jpg", "s")]
