"""Detect in a region of the frame at the model's input scale, boxes mapped back to the frame: the bench's
handle on `citywatch.vision.regions` (the product's geometry and merge, used by a preset's `detect:`).

    detections = detect_in_region(detector, frame, (0.0, 0.4, 1.0, 1.0))        # the lower 60 %, as it is
    detections = detect_tiled(detector, frame, (0.0, 0.0, 1.0, 1.0), rows=2, cols=2, with_full=True)
    detections = detect_windows(detector, frame, DetectRegion(region="zones"), polygons)   # as a preset does
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import supervision as sv

from citywatch.vision.detector import OnnxDetector
from citywatch.vision.regions import DetectRegion, Window, crop_box, cut, merge_windows, tile_boxes

__all__ = ["detect_in_region", "detect_tiled", "detect_windows", "region_box"]

Region = tuple[float, float, float, float]
"""Normalised x1, y1, x2, y2 of the frame."""


def region_box(shape: tuple[int, ...], region: Region) -> Window:
    """The region in whole pixels of a frame of `shape` (H, W, …), as it is (no margin, not widened)."""
    return crop_box(region, shape[1], shape[0], 0.0, aspect=None)


def _run(detector: OnnxDetector, image: np.ndarray, windows: Sequence[Window], conf: float) -> sv.Detections:
    height, width = image.shape[:2]
    return merge_windows(detector.detect(cut(image, windows), conf=conf), windows, width, height)


def detect_in_region(detector: OnnxDetector, image: np.ndarray, region: Region, *, conf: float) -> sv.Detections:
    """Detections of one region of `image`, in frame pixels."""
    return _run(detector, image, [region_box(image.shape, region)], conf)


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
) -> sv.Detections:
    """Tiles over the region, optionally the whole region too, one batch, merged once (`merge_windows`)."""
    box = region_box(image.shape, region)
    tiles = tile_boxes(box, rows, cols, overlap)
    return _run(detector, image, [box, *tiles] if with_full else tiles, conf)


def detect_windows(
    detector: OnnxDetector,
    image: np.ndarray,
    settings: DetectRegion,
    polygons: Sequence[Sequence[tuple[float, float]]],
    *,
    conf: float,
) -> sv.Detections:
    """What a preset with `detect: settings` and zones `polygons` sees, at `conf`."""
    height, width = image.shape[:2]
    return _run(detector, image, settings.windows(width, height, polygons), conf)
