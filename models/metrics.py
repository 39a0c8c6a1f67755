"""Detection metrics in numpy: per-class precision, recall, AP50 and AP50-95, COCO style.

- Matching (per image, per class, per IoU threshold): detections in descending confidence each take the
  unmatched ground-truth box they overlap most, if that IoU ≥ the threshold (COCO's greedy rule; ties in
  confidence keep input order, as COCO's mergesort does).
- AP: COCO's 101-point interpolation. Precision is made monotone (the best precision at any higher recall),
  sampled at recall 0, 0.01, …, 1 (0 where the recall is never reached), and averaged.
- AP50-95 averages AP over IoU 0.50, 0.55, …, 0.95. Classes without ground truth get no AP (None) and are
  left out of the means.
- Precision and recall are read at one confidence for all classes: the one that maximises the mean F1 over
  classes at IoU 0.5 (after the same light smoothing Ultralytics applies), so they are comparable with
  Ultralytics' P and R columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from citywatch.vision.boxes import iou_matrix as box_iou

__all__ = [
    "IOU_THRESHOLDS",
    "ClassMetrics",
    "ImageDetections",
    "average_precision",
    "box_iou",
    "detection_metrics",
    "match_detections",
]

IOU_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
_CONF_GRID = np.linspace(0.0, 1.0, 1000)
_EPS = 1e-16


@dataclass(frozen=True)
class ImageDetections:
    """One image: ground truth and detections, boxes as N×4 xyxy in pixels, classes as ints."""

    gt_boxes: np.ndarray
    gt_classes: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __post_init__(self) -> None:
        if self.gt_boxes.reshape(-1, 4).shape[0] != len(self.gt_classes):
            raise ValueError(f"gt_boxes {self.gt_boxes.shape} and gt_classes {self.gt_classes.shape} differ in length")
        if not (self.boxes.reshape(-1, 4).shape[0] == len(self.scores) == len(self.classes)):
            raise ValueError(
                f"boxes {self.boxes.shape}, scores {self.scores.shape} and classes {self.classes.shape} differ"
            )


@dataclass(frozen=True)
class ClassMetrics:
    class_id: int
    instances: int
    """Ground-truth boxes of the class."""
    images: int
    """Images with at least one ground-truth box of the class."""
    detections: int
    precision: float | None
    recall: float | None
    ap50: float | None
    ap50_95: float | None
    ap: tuple[float, ...] | None
    """AP at each of IOU_THRESHOLDS."""


def match_detections(
    boxes: np.ndarray, scores: np.ndarray, gt_boxes: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS
) -> np.ndarray:
    """True positives (len(boxes) × len(thresholds)) of one image and one class, in the input order."""
    tp = np.zeros((len(scores), len(thresholds)), dtype=bool)
    if len(scores) == 0 or len(gt_boxes) == 0:
        return tp
    order = np.argsort(-scores, kind="mergesort")
    ious = box_iou(boxes[order], gt_boxes)
    for t, threshold in enumerate(thresholds):
        taken = np.zeros(len(gt_boxes), dtype=bool)
        for rank, detection in enumerate(order):
            candidates = np.where(taken, -1.0, ious[rank])
            best = int(np.argmax(candidates))
            if candidates[best] >= threshold - 1e-12:
                taken[best] = True
                tp[detection, t] = True
    return tp


def average_precision(tp_sorted: np.ndarray, n_gt: int) -> float:
    """COCO 101-point AP from true-positive flags sorted by descending confidence."""
    if n_gt == 0:
        raise ValueError("average_precision: no ground truth, AP is undefined")
    if len(tp_sorted) == 0:
        return 0.0
    tps = np.cumsum(tp_sorted, dtype=np.float64)
    fps = np.cumsum(~tp_sorted, dtype=np.float64)
    recall = tps / n_gt
    precision = tps / (tps + fps)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    index = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.where(index < len(envelope), envelope[np.minimum(index, len(envelope) - 1)], 0.0)
    return float(sampled.mean())


def _smooth(y: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Box filter over `fraction` of the points (Ultralytics' `smooth`, used before picking the best F1)."""
    width = round(len(y) * fraction * 2) // 2 + 1
    pad = np.ones(width // 2)
    return np.convolve(np.concatenate((pad * y[0], y, pad * y[-1])), np.ones(width) / width, mode="valid")


def detection_metrics(images: Sequence[ImageDetections], num_classes: int) -> tuple[list[ClassMetrics], float]:
    """Per-class metrics over a set of images, and the confidence at which P and R are read."""
    scores: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
    flags: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
    n_gt = np.zeros(num_classes, dtype=int)
    n_images = np.zeros(num_classes, dtype=int)
    for image in images:
        gt_boxes, gt_classes = image.gt_boxes.reshape(-1, 4), image.gt_classes.astype(int)
        boxes, classes = image.boxes.reshape(-1, 4), image.classes.astype(int)
        for c in np.unique(np.concatenate([gt_classes, classes])):
            if not 0 <= c < num_classes:
                raise ValueError(f"class id {c} outside 0..{num_classes - 1}")
            gt = gt_boxes[gt_classes == c]
            mine = classes == c
            n_gt[c] += len(gt)
            n_images[c] += int(len(gt) > 0)
            scores[c].append(image.scores[mine].astype(np.float64))
            flags[c].append(match_detections(boxes[mine], image.scores[mine], gt))

    curves_p, curves_r, per_class = [], [], []
    for c in range(num_classes):
        s = np.concatenate(scores[c]) if scores[c] else np.zeros(0)
        tp = np.concatenate(flags[c]) if flags[c] else np.zeros((0, len(IOU_THRESHOLDS)), dtype=bool)
        order = np.argsort(-s, kind="mergesort")
        s, tp = s[order], tp[order]
        if n_gt[c] == 0:
            per_class.append(ClassMetrics(c, 0, 0, len(s), None, None, None, None, None))
            continue
        aps = tuple(average_precision(tp[:, t], int(n_gt[c])) for t in range(len(IOU_THRESHOLDS)))
        per_class.append(
            ClassMetrics(c, int(n_gt[c]), int(n_images[c]), len(s), None, None, aps[0], float(np.mean(aps)), aps)
        )
        tps = np.cumsum(tp[:, 0], dtype=np.float64)
        recall = tps / n_gt[c]
        precision = tps / np.arange(1, len(s) + 1) if len(s) else np.zeros(0)
        # Curves over the confidence grid; xp must increase, hence the minus signs.
        curves_r.append(np.interp(-_CONF_GRID, -s, recall, left=0) if len(s) else np.zeros_like(_CONF_GRID))
        curves_p.append(
            np.interp(-_CONF_GRID, -s, precision, left=1) if len(s) else np.zeros_like(_CONF_GRID)
        )  # none: P 0, as Ultralytics
    if not curves_p:
        return per_class, 0.0
    p, r = np.array(curves_p), np.array(curves_r)
    f1 = 2 * p * r / (p + r + _EPS)
    best = int(_smooth(f1.mean(axis=0)).argmax())
    with_gt = iter(range(len(curves_p)))
    result = []
    for metrics in per_class:
        if metrics.instances == 0:
            result.append(metrics)
            continue
        row = next(with_gt)
        result.append(
            ClassMetrics(
                metrics.class_id,
                metrics.instances,
                metrics.images,
                metrics.detections,
                float(p[row, best]),
                float(r[row, best]),
                metrics.ap50,
                metrics.ap50_95,
                metrics.ap,
            )
        )
    return result, float(_CONF_GRID[best])
