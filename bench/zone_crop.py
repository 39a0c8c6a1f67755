"""Detect in a region of the frame at the model's input scale, and map the boxes back to the frame.

A city camera sees garbage small; letterboxing a 1080p frame into 320 px shrinks a 60 px bag to 18 px. Cropping
the region around a preset's zones first (or cutting a large region into tiles, SAHI-style) keeps objects at the
scale the model learned. These are plain functions for the field benchmark; the product would run them per
preset (issue 15, section 3).

    detections = detect_in_region(detector, frame, (0.0, 0.4, 1.0, 1.0))        # the lower 60 %
    detections = detect_tiled(detector, frame, (0.0, 0.0, 1.0, 1.0), rows=2, cols=2, with_full=True)
"""

from __future__ import annotations

import numpy as np
import supervision as sv

from citywatch.vision.detector import OnnxDetector

__all__ = ["detect_in_region", "detect_tiled", "region_pixels", "shift"]

Region = tuple[float, float, float, float]
"""Normalised x1, y1, x2, y2 of the frame."""


def region_pixels(shape: tuple[int, ...], region: Region) -> tuple[int, int, int, int]:
    """The region in whole pixels of a frame of `shape` (H, W, …), at least one pixel each way."""
    height, width = shape[0], shape[1]
    x1, y1, x2, y2 = region
    if not (0.0 <= x1 < x2 <= 1.0 and 0.0 <= y1 < y2 <= 1.0):
        raise ValueError(f"region must be normalised x1 < x2, y1 < y2 within [0, 1]; got {region}")
    left, top = int(x1 * width), int(y1 * height)
    right, bottom = max(left + 1, round(x2 * width)), max(top + 1, round(y2 * height))
    return left, top, right, bottom


def shift(detections: sv.Detections, dx: int, dy: int) -> sv.Detections:
    """The same detections with boxes moved by (dx, dy) pixels: crop coordinates → frame coordinates."""
    moved = detections.xyxy + np.array([dx, dy, dx, dy], dtype=detections.xyxy.dtype)
    return sv.Detections(
        xyxy=moved,
        confidence=detections.confidence,
        class_id=detections.class_id,
        data=dict(detections.data),
    )


def detect_in_region(detector: OnnxDetector, image: np.ndarray, region: Region, *, conf: float) -> sv.Detections:
    """Detections of one region of `image`, in frame pixels."""
    left, top, right, bottom = region_pixels(image.shape, region)
    crop = np.ascontiguousarray(image[top:bottom, left:right])
    return shift(detector.detect([crop], conf=conf)[0], left, top)


def detect_tiled(
    detector: OnnxDetector,
    image: np.ndarray,
    region: Region,
    *,
    rows: int,
    cols: int,
    overlap: float = 0.2,
    with_full: bool = True,
    conf: float,
    nms_iou: float = 0.5,
) -> sv.Detections:
    """Tiles over the region (each `overlap` wider than its share), optionally the whole region too, one batch,
    merged once by per-class NMS: a box cut by a tile edge is usually also whole in a neighbour or the full view."""
    if rows < 1 or cols < 1 or not 0.0 <= overlap < 1.0:
        raise ValueError(f"rows and cols must be >= 1 and overlap in [0, 1); got {rows}, {cols}, {overlap}")
    x1, y1, x2, y2 = region
    width, height = (x2 - x1) / cols, (y2 - y1) / rows
    regions: list[Region] = [region] if with_full else []
    for r in range(rows):
        for c in range(cols):
            regions.append(
                (
                    max(x1, x1 + (c - overlap / 2) * width),
                    max(y1, y1 + (r - overlap / 2) * height),
                    min(x2, x1 + (c + 1 + overlap / 2) * width),
                    min(y2, y1 + (r + 1 + overlap / 2) * height),
                )
            )
    pixels = [region_pixels(image.shape, reg) for reg in regions]
    crops = [np.ascontiguousarray(image[t:b, left:right]) for left, t, right, b in pixels]
    found = detector.detect(crops, conf=conf)
    merged = sv.Detections.merge([shift(d, p[0], p[1]) for d, p in zip(found, pixels, strict=True)])
    if len(merged) == 0:
        return merged
    return merged.with_nms(threshold=nms_iou, class_agnostic=False)
