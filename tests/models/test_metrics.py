"""The metric against hand-computed AP on tiny cases."""

from __future__ import annotations

import numpy as np
import pytest

from citywatch.models.metrics import ImageDetections, average_precision, box_iou, detection_metrics, match_detections

GT = np.array([[0.0, 0.0, 10.0, 10.0]])


def image(gt: list[list[float]], gt_cls: list[int], det: list[list[float]], scores: list[float], cls: list[int]):
    return ImageDetections(
        np.array(gt, dtype=float).reshape(-1, 4),
        np.array(gt_cls),
        np.array(det, dtype=float).reshape(-1, 4),
        np.array(scores, dtype=float),
        np.array(cls),
    )


def test_box_iou() -> None:
    iou = box_iou(GT, np.array([[0, 0, 10, 6], [20, 20, 30, 30], [5, 0, 15, 10]]))
    np.testing.assert_allclose(iou, [[0.6, 0.0, 50 / 150]])


@pytest.mark.parametrize(
    ("flags", "n_gt", "expected"),
    [
        ([True], 1, 1.0),
        ([False, True], 1, 0.5),  # FP first: precision 0.5 at recall 1, the envelope holds it at 0.5
        ([True], 2, 51 / 101),  # recall reaches 0.5: recall points 0.00…0.50 get precision 1
        ([True, False, True], 2, (51 * 1.0 + 50 * 2 / 3) / 101),
        ([], 3, 0.0),
        ([False, False], 1, 0.0),
    ],
)
def test_average_precision_by_hand(flags: list[bool], n_gt: int, expected: float) -> None:
    assert average_precision(np.array(flags, dtype=bool), n_gt) == pytest.approx(expected)


def test_greedy_matching_gives_one_gt_to_the_most_confident_detection() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 9]], dtype=float)
    tp = match_detections(boxes, np.array([0.4, 0.9]), GT, np.array([0.5]))
    assert tp[:, 0].tolist() == [False, True]  # the 0.9 box takes the only GT


def test_ap50_95_counts_the_thresholds_a_box_passes() -> None:
    # IoU 0.6 passes 0.50, 0.55 and 0.60 of the ten thresholds
    per_class, _ = detection_metrics([image([[0, 0, 10, 10]], [0], [[0, 0, 10, 6]], [0.9], [0])], 1)
    assert per_class[0].ap50 == pytest.approx(1.0)
    assert per_class[0].ap50_95 == pytest.approx(0.3)


def test_classes_are_scored_apart_and_a_class_without_ground_truth_has_no_ap() -> None:
    images = [
        image([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1], [[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [1, 1]),
        image([], [], [[50, 50, 60, 60]], [0.7], [2]),
    ]
    per_class, _ = detection_metrics(images, 3)
    assert per_class[0].ap50 == 0.0  # its box was called class 1
    assert per_class[1].ap50 == pytest.approx(0.5)  # the wrong-class box is an FP ranked above its TP
    assert per_class[2].ap50 is None and per_class[2].instances == 0


def test_precision_and_recall_at_the_best_f1_confidence() -> None:
    # two GT, TP at 0.9, FP at 0.6, TP at 0.3: best F1 is at the lowest confidence (P 2/3, R 1, F1 0.8)
    dets = [[0, 0, 10, 10], [40, 40, 50, 50], [20, 20, 30, 30]]
    per_class, conf = detection_metrics(
        [image([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0], dets, [0.9, 0.6, 0.3], [0, 0, 0])], 1
    )
    assert per_class[0].recall == pytest.approx(1.0, abs=0.02)
    assert per_class[0].precision == pytest.approx(2 / 3, abs=0.02)
    assert conf <= 0.3
