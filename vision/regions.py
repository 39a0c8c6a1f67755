"""Where in a frame a preset's detector looks: the whole frame, or the crop around its zones, optionally in tiles.

A city camera sees objects small; letterboxing a 1920×1080 frame into 320 px shrinks a 60 px bag to 10 px.
Cropping the region around the preset's zones first (and, for a large region, cutting it into overlapping tiles,
SAHI-style) shows the model the objects nearer the scale it learned. The detector runs once on all windows (one
batch); `merge_windows` maps the boxes back to the frame and merges them, once.

    windows = settings.windows(width, height, polygons)   # pixel boxes of the frame
    found = detector.detect(cut(image, windows))           # one batch
    detections = merge_windows(found, windows, width, height)
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import supervision as sv
from pydantic import Field, field_validator

from citywatch.vision.params import Strict

__all__ = [
    "MERGE_IOS",
    "MERGE_IOU",
    "DetectRegion",
    "Window",
    "crop_box",
    "cut",
    "merge_windows",
    "shift",
    "tile_boxes",
    "zones_bounds",
]

Window = tuple[int, int, int, int]
"""A window in frame pixels: left, top, right, bottom (right and bottom exclusive, as in `image[top:bottom]`)."""

MERGE_IOU = 0.5
"""Two boxes of one class from different windows with at least this IoU are the same object: the weaker goes."""
MERGE_IOS = 0.6
"""A box cut by a tile border, lying this much (intersection over the smaller box) in another box of its class,
is part of that object: the two become their union (the whole object, or two halves joined)."""
CUT_EDGE_PX = 2
"""A box edge this close to a window edge inside the frame was cut by that window."""

_EPS = 1e-6
"""Pixel edges are rounded outwards, but not for a float error (0.84 * 50 is 42.00000000000001)."""
_TILES = re.compile(r"^\s*(\d+)\s*[x×]\s*(\d+)\s*$")


def _parse_tiles(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, str):
        match = _TILES.match(value)
        if match is None:
            raise ValueError(f'tiles: write rows x columns, for example "2x2" (or 1 for none); got {value!r}')
        return (int(match.group(1)), int(match.group(2)))
    return value


class DetectRegion(Strict):
    """Where the preset's detector looks (a preset's `detect:`)."""

    region: Literal["frame", "zones"] = Field(
        "frame",
        description="frame: the whole frame; zones: the crop around all the preset's zones (plus `margin`), "
        "widened towards a square (the model's input shape) within the frame, at the model's input scale",
    )
    margin: float = Field(
        0.1, ge=0.0, le=1.0, description="zones: the crop reaches this fraction of the zones' extent beyond them"
    )
    tiles: tuple[int, int] = Field(
        (1, 1), description='The region cut into rows x columns overlapping tiles, e.g. "2x2" (SAHI-style); 1: none'
    )
    overlap: float = Field(0.2, ge=0.0, lt=1.0, description="Tiles overlap their neighbours by this fraction")
    whole: bool = Field(True, description="With tiles: detect on the whole region too (large objects stay whole)")

    @field_validator("tiles", mode="before")
    @classmethod
    def _tiles(cls, value: Any) -> Any:
        return _parse_tiles(value)

    @field_validator("tiles")
    @classmethod
    def _tiles_positive(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 1 or max(value) > 8:
            raise ValueError(f"tiles: rows and columns must be 1..8; got {value[0]}x{value[1]}")
        return value

    @property
    def whole_frame(self) -> bool:
        """Today's behaviour: one window, the frame."""
        return self.region == "frame" and self.tiles == (1, 1)

    def windows(self, width: int, height: int, polygons: Sequence[Sequence[tuple[float, float]]]) -> list[Window]:
        """The windows to detect in, for a `width`×`height` frame and the preset's zone polygons (fractions)."""
        if self.region == "zones" and polygons:
            region = crop_box(zones_bounds(polygons), width, height, self.margin)
        else:
            region = (0, 0, width, height)
        if self.tiles == (1, 1):
            return [region]
        tiles = tile_boxes(region, *self.tiles, self.overlap)
        return [region, *tiles] if self.whole else tiles


def zones_bounds(polygons: Sequence[Sequence[tuple[float, float]]]) -> tuple[float, float, float, float]:
    """The bounding box (x1, y1, x2, y2, fractions of the frame) around all the polygons' points."""
    points = np.asarray([point for polygon in polygons for point in polygon], dtype=float).reshape(-1, 2)
    if len(points) == 0:
        raise ValueError("zones_bounds: no polygon points")
    x1, y1 = points.min(axis=0)
    x2, y2 = points.max(axis=0)
    return float(x1), float(y1), float(x2), float(y2)


def _widen(low: float, high: float, target: float, limit: int) -> tuple[float, float]:
    """[low, high) widened about its centre to `target` long, slid to stay within [0, limit], at most [0, limit]."""
    target = min(float(limit), max(target, high - low))
    centre = (low + high) / 2
    low, high = centre - target / 2, centre + target / 2
    if low < 0:
        low, high = 0.0, target
    if high > limit:
        low, high = limit - target, float(limit)
    return low, high


def crop_box(
    bounds: tuple[float, float, float, float], width: int, height: int, margin: float, aspect: float | None = 1.0
) -> Window:
    """The pixel crop around `bounds` (fractions): `margin` of its extent added on each side, then its shorter
    side widened towards `aspect` (width / height; 1 = the square input of a YOLO export: more context at the
    same scale, since the letterbox would pad it grey anyway), always within the frame."""
    if width < 1 or height < 1:
        raise ValueError(f"crop_box: frame must be at least 1x1; got {width}x{height}")
    x1, y1, x2, y2 = bounds
    if not (0.0 <= x1 <= x2 <= 1.0 and 0.0 <= y1 <= y2 <= 1.0):
        raise ValueError(f"crop_box: bounds must be x1 <= x2, y1 <= y2 within [0, 1]; got {bounds}")
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    left, right = max(0.0, (x1 - dx) * width), min(float(width), (x2 + dx) * width)
    top, bottom = max(0.0, (y1 - dy) * height), min(float(height), (y2 + dy) * height)
    if aspect is not None:
        w, h = right - left, bottom - top
        if w < h * aspect:
            left, right = _widen(left, right, h * aspect, width)
        else:
            top, bottom = _widen(top, bottom, w / aspect, height)
    box = (math.floor(left + _EPS), math.floor(top + _EPS), math.ceil(right - _EPS), math.ceil(bottom - _EPS))
    return (box[0], box[1], max(box[2], box[0] + 1), max(box[3], box[1] + 1))


def tile_boxes(box: Window, rows: int, cols: int, overlap: float) -> list[Window]:
    """`rows`×`cols` tiles covering `box`, each reaching `overlap` of a tile's size into its neighbours."""
    if rows < 1 or cols < 1 or not 0.0 <= overlap < 1.0:
        raise ValueError(f"tile_boxes: rows and cols must be >= 1, overlap in [0, 1); got {rows}, {cols}, {overlap}")
    left, top, right, bottom = box
    tile_w, tile_h = (right - left) / cols, (bottom - top) / rows
    tiles = []
    for r in range(rows):
        for c in range(cols):
            x1 = max(left, math.floor(left + (c - overlap / 2) * tile_w + _EPS))
            y1 = max(top, math.floor(top + (r - overlap / 2) * tile_h + _EPS))
            x2 = min(right, math.ceil(left + (c + 1 + overlap / 2) * tile_w - _EPS))
            y2 = min(bottom, math.ceil(top + (r + 1 + overlap / 2) * tile_h - _EPS))
            tiles.append((x1, y1, x2, y2))
    return tiles


def cut(image: np.ndarray, windows: Sequence[Window]) -> list[np.ndarray]:
    """The image's pixels in each window (the image itself for a whole-frame window: no copy)."""
    height, width = image.shape[:2]
    crops = []
    for left, top, right, bottom in windows:
        if (left, top, right, bottom) == (0, 0, width, height):
            crops.append(image)
        else:
            crops.append(np.ascontiguousarray(image[top:bottom, left:right]))
    return crops


def shift(detections: sv.Detections, dx: int, dy: int) -> sv.Detections:
    """The same detections with their boxes moved by (dx, dy) pixels: window → frame coordinates."""
    if dx == 0 and dy == 0:
        return detections
    moved = detections.xyxy + np.array([dx, dy, dx, dy], dtype=detections.xyxy.dtype)
    return sv.Detections(
        xyxy=moved, confidence=detections.confidence, class_id=detections.class_id, data=dict(detections.data)
    )


def _cut_edges(xyxy: np.ndarray, window: Window, width: int, height: int) -> np.ndarray:
    """N×4 booleans (left, top, right, bottom): which box edges lie on an edge of `window` that is inside the
    frame (the object may go on past it)."""
    left, top, right, bottom = window
    near = CUT_EDGE_PX
    edges = np.zeros((len(xyxy), 4), dtype=bool)
    edges[:, 0] = (left > 0) & (xyxy[:, 0] <= left + near)
    edges[:, 1] = (top > 0) & (xyxy[:, 1] <= top + near)
    edges[:, 2] = (right < width) & (xyxy[:, 2] >= right - near)
    edges[:, 3] = (bottom < height) & (xyxy[:, 3] >= bottom - near)
    return edges


def _span_iou(a1: float, a2: float, b1: float, b2: float) -> float:
    inter = min(a2, b2) - max(a1, b1)
    union = max(a2, b2) - min(a1, b1)
    return max(0.0, inter) / union if union > 0 else 0.0


def _pieces(a: np.ndarray, a_cut: np.ndarray, b: np.ndarray, b_cut: np.ndarray) -> bool:
    """Two boxes are pieces of one object cut by a border: one cut on the side facing the other, touching or
    overlapping there, and spanning the same rows (or columns) across the border."""
    near = CUT_EDGE_PX
    for first, first_cut, second, second_cut in ((a, a_cut, b, b_cut), (b, b_cut, a, a_cut)):
        # first on the left or above, cut on its right (bottom) edge, or second cut on its left (top)
        side = (first_cut[2] or second_cut[0]) and first[0] < second[0] and second[0] <= first[2] + near
        if side and _span_iou(first[1], first[3], second[1], second[3]) >= MERGE_IOS:
            return True
        stacked = (first_cut[3] or second_cut[1]) and first[1] < second[1] and second[1] <= first[3] + near
        if stacked and _span_iou(first[0], first[2], second[0], second[2]) >= MERGE_IOS:
            return True
    return False


def _ios(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """IoU and intersection-over-the-smaller of two boxes."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area_a, area_b = (a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])
    union, smaller = area_a + area_b - inter, min(area_a, area_b)
    return (inter / union if union > 0 else 0.0), (inter / smaller if smaller > 0 else 0.0)


def _joins(a: np.ndarray, a_cut: np.ndarray, b: np.ndarray, b_cut: np.ndarray) -> tuple[bool, bool]:
    """(same object seen whole twice, one object in pieces) for two boxes of one class."""
    iou, ios = _ios(a, b)
    cut = bool(a_cut.any() or b_cut.any())
    piece = cut and (ios >= MERGE_IOS or _pieces(a, a_cut, b, b_cut))
    return (not piece and iou >= MERGE_IOU), piece


def merge_windows(found: Sequence[sv.Detections], windows: Sequence[Window], width: int, height: int) -> sv.Detections:
    """Each window's detections in frame pixels, merged once: the one place where windows meet.

    Greedy by confidence, per class (the detector's own NMS is per class too). A box cut by a window edge inside
    the frame that lies in a kept box of its class (intersection over the smaller >= MERGE_IOS), or meets one
    across that edge spanning the same rows or columns, is a piece of it: the kept box becomes their union, with
    the higher confidence. Otherwise a box that overlaps a kept box of its class by IoU >= MERGE_IOU is the same
    object seen in two windows and is dropped. One window: its detections moved, nothing merged.
    """
    if len(found) != len(windows):
        raise ValueError(f"merge_windows: {len(found)} detection sets for {len(windows)} windows")
    moved = [shift(d, w[0], w[1]) for d, w in zip(found, windows, strict=True)]
    if len(moved) == 1:
        return moved[0]
    merged = sv.Detections.merge(moved)
    if len(merged) == 0:
        return merged
    if merged.confidence is None or merged.class_id is None:
        raise ValueError("merge_windows: detections need confidence and class_id")
    cut_edges = np.concatenate([_cut_edges(d.xyxy, w, width, height) for d, w in zip(moved, windows, strict=True)])
    boxes = merged.xyxy.astype(np.float64)
    kept: list[int] = []
    for i in (int(i) for i in np.argsort(-merged.confidence, kind="stable")):
        for j in (j for j in kept if merged.class_id[j] == merged.class_id[i]):
            duplicate, piece = _joins(boxes[j], cut_edges[j], boxes[i], cut_edges[i])
            if piece:
                a, b = boxes[j], boxes[i]
                # each edge of the union is cut if the box it comes from was cut there (both, on a tie)
                takes_b = np.concatenate([b[:2] < a[:2], b[2:] > a[2:]])
                tie = np.concatenate([b[:2] == a[:2], b[2:] == a[2:]])
                cut_edges[j] = np.where(tie, cut_edges[i] & cut_edges[j], np.where(takes_b, cut_edges[i], cut_edges[j]))
                boxes[j] = np.concatenate([np.minimum(a[:2], b[:2]), np.maximum(a[2:], b[2:])])
                break
            if duplicate:
                break
        else:
            kept.append(i)
    index = np.array(sorted(kept))  # the windows' order: stable output for tests and reports
    return sv.Detections(
        xyxy=boxes[index].astype(merged.xyxy.dtype),
        confidence=merged.confidence[index],
        class_id=merged.class_id[index],
        data={key: np.asarray(value)[index] for key, value in merged.data.items()},
    )
