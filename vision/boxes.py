"""Box geometry for YOLO detectors: letterbox, its inverse, NMS and decoding of the raw head output.

Pure numpy (and cv2.resize for the picture itself); no onnxruntime, so every function here is testable with
tiny hand-made arrays. Everything is vectorised: the only Python loops run over blocks of rows, classes or
suppression rounds, never over individual boxes.

The conventions follow Ultralytics on purpose, so a model exported from Ultralytics gives the same boxes
here as in `YOLO(model).predict` with a fixed square letterbox:
- `letterbox` is `ultralytics.data.augment.LetterBox(auto=False, scaleup=True, center=True)`: the same
  scale, the same Python `round` (half to even) for the resized size, the same `round(d - 0.1)` padding split;
- `decode_yolo` is `ultralytics.utils.nms.non_max_suppression(multi_label=False, agnostic=False)`: one label
  per box (argmax), a strict `> conf` filter on the best class score, at most 30,000 boxes into NMS, and
  class-aware NMS that suppresses at IoU strictly greater than the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

__all__ = [
    "MAX_NMS",
    "Box",
    "Letterbox",
    "as_box",
    "batched_nms",
    "box_iou",
    "compute_letterbox",
    "cxcywh_to_xyxy",
    "decode_yolo",
    "iou_matrix",
    "letterbox",
    "letterbox_into",
    "nms",
    "unletterbox_boxes",
]

Box = tuple[float, float, float, float]
"""One box as plain floats, xyxy in pixels: what violations, cases and warnings carry."""


def as_box(row: np.ndarray) -> Box:
    """One xyxy row of an array (numpy floats) as a `Box` of plain floats."""
    return (float(row[0]), float(row[1]), float(row[2]), float(row[3]))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a) × len(b)) of xyxy boxes; 0 where two boxes do not overlap or have no area."""
    a, b = a.reshape(-1, 4).astype(np.float64), b.reshape(-1, 4).astype(np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-16), 0.0)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two xyxy boxes; 0 when they do not overlap."""
    return float(iou_matrix(np.asarray(a), np.asarray(b))[0, 0])


MAX_NMS = 30_000
"""Most candidate boxes `decode_yolo` passes into NMS (Ultralytics' `max_nms`): the best-scoring ones."""

# The pairwise IoU work in NMS is done in blocks of rows so that a low confidence threshold (8,400 candidates
# at conf 0.001 for evaluation) needs a few tens of MB, not the 0.5 GB a full float64 N×N matrix would.
_NMS_BLOCK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into the network input: resized by `scale` (each side rounded), then padded.

    Per axis, input pixel = frame pixel × round(side·scale)/side + pad.
    """

    scale: float
    """Input pixels per frame pixel (Ultralytics' `gain`)."""
    pad_x: float
    """Columns of padding on the left of the resized frame."""
    pad_y: float
    """Rows of padding above the resized frame."""
    size: tuple[int, int]
    """(height, width) of the network input."""

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"Letterbox scale must be > 0; got {self.scale}")
        if self.pad_x < 0 or self.pad_y < 0:
            raise ValueError(f"Letterbox pads must be >= 0; got pad_x={self.pad_x}, pad_y={self.pad_y}")
        if len(self.size) != 2 or self.size[0] <= 0 or self.size[1] <= 0:
            raise ValueError(f"Letterbox size must be (height, width) > 0; got {self.size}")


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    if len(size) != 2 or int(size[0]) <= 0 or int(size[1]) <= 0:
        raise ValueError(f"letterbox size must be (height, width) with both > 0; got {size}")
    return int(size[0]), int(size[1])


def compute_letterbox(image_shape: tuple[int, ...], size: tuple[int, int]) -> tuple[Letterbox, tuple[int, int]]:
    """The letterbox of a frame of `image_shape` (h, w[, c]) into `size` (h, w), and the resized (h, w).

    Same arithmetic as Ultralytics' LetterBox (auto=False, scaleup=True, center=True), Python's half-to-even
    `round` included, so boxes line up with what Ultralytics predicts on the same model.
    """
    out_h, out_w = _check_size(size)
    h, w = int(image_shape[0]), int(image_shape[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"cannot letterbox an empty image of shape {tuple(image_shape)}")
    r = min(out_h / h, out_w / w)
    new_w, new_h = round(w * r), round(h * r)
    dw, dh = (out_w - new_w) / 2, (out_h - new_h) / 2
    left, top = round(dw - 0.1), round(dh - 0.1)
    return Letterbox(scale=r, pad_x=float(left), pad_y=float(top), size=(out_h, out_w)), (new_h, new_w)


def letterbox_into(image: np.ndarray, out: np.ndarray, color: int = 114) -> Letterbox:
    """Letterbox `image` into the preallocated H×W×C array `out` (a slot of a batch) and say how.

    Writing into the caller's array is what lets the detector fill a whole batch without concatenating.
    """
    if image.ndim != 3 or out.ndim != 3 or image.shape[2] != out.shape[2]:
        raise ValueError(f"letterbox_into needs H×W×C image and out with equal C; got {image.shape} -> {out.shape}")
    lb, (new_h, new_w) = compute_letterbox(image.shape, (out.shape[0], out.shape[1]))
    if (new_h, new_w) != image.shape[:2]:
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, left = int(lb.pad_y), int(lb.pad_x)
    out[...] = color
    out[top : top + new_h, left : left + new_w] = image
    return lb


def letterbox(image: np.ndarray, size: tuple[int, int], color: int = 114) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio, pad centred to `size` (h, w) with `color` (Ultralytics-compatible)."""
    if image.ndim != 3:
        raise ValueError(f"letterbox needs an H×W×C image; got shape {image.shape}")
    out_h, out_w = _check_size(size)
    out = np.empty((out_h, out_w, image.shape[2]), dtype=image.dtype)
    return out, letterbox_into(image, out, color)


def _as_boxes(xyxy: np.ndarray, name: str = "xyxy") -> np.ndarray:
    boxes = np.asarray(xyxy)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4); got {boxes.shape}")
    return boxes


def unletterbox_boxes(xyxy: np.ndarray, lb: Letterbox, image_shape: tuple[int, ...]) -> np.ndarray:
    """Map (N, 4) xyxy boxes from network-input pixels back to frame pixels, clipped to the frame.

    `image_shape` is the frame's (h, w) (a longer shape such as (h, w, 3) is accepted). Returns a new array,
    float32 for float32 input (the model's precision), float64 otherwise.
    """
    boxes = _as_boxes(xyxy)
    h, w = int(image_shape[0]), int(image_shape[1])
    out = np.array(boxes, dtype=np.promote_types(boxes.dtype, np.float32), copy=True)
    out -= np.array([lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y], dtype=out.dtype)
    # The picture was resized to round(w·scale) × round(h·scale) pixels, so the exact inverse divides each axis by
    # its own ratio, not by `scale` (854×480 → 640×360: y by 0.75, not 0.7494, or boxes sit 0.3 px too low at
    # the bottom). Ultralytics' scale_boxes does the same (checked against 8.4.190).
    gain_x, gain_y = max(round(w * lb.scale), 1) / w, max(round(h * lb.scale), 1) / h
    out /= np.array([gain_x, gain_y, gain_x, gain_y], dtype=out.dtype)
    # Clip x to [0, w] and y to [0, h], as Ultralytics' clip_boxes does.
    np.clip(out, 0, np.array([w, h, w, h], dtype=out.dtype), out=out)
    return out


def cxcywh_to_xyxy(cxcywh: np.ndarray) -> np.ndarray:
    """(N, 4) centre-size boxes to corner boxes (same arithmetic as Ultralytics' xywh2xyxy)."""
    boxes = _as_boxes(cxcywh, "cxcywh")
    half = boxes[:, 2:] / 2
    return np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1)


def _overlap_edges(boxes: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (j, i) with j < i whose IoU is above the threshold; boxes are already in descending score order.

    Row blocks bound the memory; IoU > t is tested as inter > t·union, which avoids a division and treats
    degenerate pairs (union 0) as not overlapping, as torchvision does (its 0/0 is NaN, never > t).
    """
    n = boxes.shape[0]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    block = max(1, _NMS_BLOCK_ELEMENTS // max(n, 1))
    sources: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    for start in range(0, n, block):
        stop = min(n, start + block)
        rows = boxes[start:stop, None, :]
        cols = boxes[None, start:, :]  # columns before `start` can never be a later (lower-scoring) box
        iw = np.minimum(rows[..., 2], cols[..., 2]) - np.maximum(rows[..., 0], cols[..., 0])
        ih = np.minimum(rows[..., 3], cols[..., 3]) - np.maximum(rows[..., 1], cols[..., 1])
        inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
        union = area[start:stop, None] + area[None, start:] - inter
        hit = inter > iou_threshold * union
        hit &= np.arange(start, stop)[:, None] < np.arange(start, n)[None, :]
        j, i = np.nonzero(hit)
        sources.append(j + start)
        targets.append(i + start)
    return np.concatenate(sources), np.concatenate(targets)


def _greedy_from_edges(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Greedy NMS keep-mask from overlap edges (src scores higher than dst), without a loop over boxes.

    Greedy NMS keeps box i iff no *kept* higher-scoring box overlaps it. That recursion has exactly one
    solution, and iterating keep ← ¬(some kept box overlaps) from "keep all" reaches it: box i is final once
    every box that can suppress it is final, so the number of rounds is the length of the longest chain of
    suppressions (a handful in practice), each round one vectorised pass over the edges.
    """
    keep = np.ones(n, dtype=bool)
    while True:
        suppressed = np.zeros(n, dtype=bool)
        suppressed[dst[keep[src]]] = True
        new_keep = ~suppressed
        if np.array_equal(new_keep, keep):
            return keep
        keep = new_keep


def _validated(
    xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    boxes = _as_boxes(xyxy)
    conf = np.asarray(scores)
    if conf.shape != (boxes.shape[0],):
        raise ValueError(f"scores must have shape ({boxes.shape[0]},) to match xyxy; got {conf.shape}")
    if class_ids is None:
        return boxes, conf, None
    cls = np.asarray(class_ids)
    if cls.shape != (boxes.shape[0],):
        raise ValueError(f"class_ids must have shape ({boxes.shape[0]},) to match xyxy; got {cls.shape}")
    return boxes, conf, cls


def _nms(xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray | None, iou_threshold: float) -> np.ndarray:
    boxes, conf, cls = _validated(xyxy, scores, class_ids)
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1]; got {iou_threshold}")
    n = boxes.shape[0]
    if n == 0:
        return np.empty(0, dtype=np.int64)
    order = np.argsort(-conf.astype(np.float64), kind="stable")  # stable: equal scores keep input order
    ordered = boxes[order].astype(np.float64)
    if cls is None:
        src, dst = _overlap_edges(ordered, iou_threshold)
    else:
        # Class-aware without the coordinate-offset trick: boxes are grouped by class (a loop over classes,
        # not boxes) and only same-class pairs are compared. Same result as offsetting by class × max_wh,
        # without the float32 precision that offset costs, and with far fewer pairs.
        ordered_cls = cls[order]
        by_class = np.argsort(ordered_cls, kind="stable")  # keeps descending score order inside each class
        sorted_cls = ordered_cls[by_class]
        class_starts = np.flatnonzero(sorted_cls[1:] != sorted_cls[:-1]) + 1
        sources: list[np.ndarray] = []
        targets: list[np.ndarray] = []
        for members in np.split(by_class, class_starts):
            local_src, local_dst = _overlap_edges(ordered[members], iou_threshold)
            sources.append(members[local_src])
            targets.append(members[local_dst])
        src, dst = np.concatenate(sources), np.concatenate(targets)
    keep = _greedy_from_edges(n, src, dst)
    kept: np.ndarray = order[keep]
    return kept


def nms(xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS ignoring classes: indices of the kept boxes, highest score first.

    A box is dropped when a kept, higher-scoring box overlaps it with IoU strictly above `iou_threshold`
    (torchvision.ops.nms semantics).
    """
    return _nms(xyxy, scores, None, iou_threshold)


def batched_nms(xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-aware greedy NMS: a box only suppresses boxes of its own class. Kept indices, best first."""
    return _nms(xyxy, scores, np.asarray(class_ids), iou_threshold)


def decode_yolo(
    output: np.ndarray, conf: float, iou: float, max_det: int = 300
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """One image's raw YOLO (v8/11) detect output, (4 + nc, anchors), into (xyxy, confidence, class_id).

    Rows 0-3 are cx, cy, w, h in network-input pixels; rows 4.. are per-class scores (already sigmoid).
    Each anchor gets its best class; anchors whose best score is not above `conf` are dropped; class-aware NMS
    at `iou`; at most `max_det` boxes, highest confidence first. Boxes stay in network-input pixels
    (see `unletterbox_boxes`).
    """
    raw = np.asarray(output)
    if raw.ndim != 2 or raw.shape[0] < 5:
        raise ValueError(f"decode_yolo needs one image's (4 + nc, anchors) output with nc >= 1; got {raw.shape}")
    if not 0.0 <= conf <= 1.0:
        raise ValueError(f"conf must be in [0, 1]; got {conf}")
    if max_det < 0:
        raise ValueError(f"max_det must be >= 0; got {max_det}")
    class_scores = raw[4:]
    best = class_scores.max(axis=0)
    candidates = np.flatnonzero(best > conf)
    if candidates.size > MAX_NMS:
        top = np.argsort(-best[candidates], kind="stable")[:MAX_NMS]
        candidates = candidates[top]
    confidence = best[candidates].astype(np.float32)
    class_id = class_scores[:, candidates].argmax(axis=0).astype(np.int64)
    xyxy = cxcywh_to_xyxy(raw[:4, candidates].T).astype(np.float32)
    keep = batched_nms(xyxy, confidence, class_id, iou)[:max_det]
    return xyxy[keep], confidence[keep], class_id[keep]
