"""Where a preset's detector looks: crop around the zones, tiles, boxes mapped back and merged once."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv
from pydantic import ValidationError

from citywatch.vision.detections import CLASS_NAME
from citywatch.vision.regions import DetectRegion, crop_box, cut, merge_windows, tile_boxes, zones_bounds


def dets(boxes: list[list[float]], conf: list[float], cls: list[int]) -> sv.Detections:
    return sv.Detections(
        xyxy=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        confidence=np.array(conf, dtype=np.float32),
        class_id=np.array(cls, dtype=int),
        data={CLASS_NAME: np.array([f"c{c}" for c in cls])},
    )


def test_zones_bounds_spans_every_polygon() -> None:
    polygons = [[(0.2, 0.5), (0.4, 0.5), (0.4, 0.9)], [(0.6, 0.7), (0.8, 0.6), (0.7, 0.95)]]
    assert zones_bounds(polygons) == (0.2, 0.5, 0.8, 0.95)


def test_crop_adds_margin_without_aspect() -> None:
    # 0.2..0.6 × 0.4..0.8 of a 100×50 frame, 10 % margin each side: x 16..64, y 18..42
    assert crop_box((0.2, 0.4, 0.6, 0.8), 100, 50, 0.1, aspect=None) == (16, 18, 64, 42)


def test_margin_clamps_to_the_frame() -> None:
    assert crop_box((0.0, 0.5, 1.0, 1.0), 200, 100, 0.5, aspect=None) == (0, 25, 200, 100)


def test_crop_widens_its_short_side_to_a_square_within_the_frame() -> None:
    # a flat strip along the bottom of a 400×300 frame: 400 wide, 30 high → as tall as the frame allows, slid up
    box = crop_box((0.0, 0.9, 1.0, 1.0), 400, 300, 0.0)
    assert box == (0, 0, 400, 300)
    # a narrow strip in the middle: widened about its centre to a square
    assert crop_box((0.45, 0.25, 0.55, 0.75), 400, 200, 0.0) == (150, 50, 250, 150)
    # near the left edge: slid right to stay inside
    assert crop_box((0.0, 0.25, 0.05, 0.75), 400, 200, 0.0) == (0, 50, 100, 150)


def test_tiles_cover_the_box_with_overlap() -> None:
    tiles = tile_boxes((0, 0, 100, 60), 2, 2, 0.2)
    assert tiles == [(0, 0, 55, 33), (45, 0, 100, 33), (0, 27, 55, 60), (45, 27, 100, 60)]
    assert tile_boxes((10, 20, 30, 40), 1, 1, 0.2) == [(10, 20, 30, 40)]


def test_settings_parse_tiles_and_refuse_nonsense() -> None:
    assert DetectRegion.model_validate({"region": "zones", "tiles": "2x3"}).tiles == (2, 3)
    assert DetectRegion.model_validate({"tiles": 1}).tiles == (1, 1)
    assert DetectRegion().whole_frame
    for bad in ({"tiles": "two"}, {"tiles": "0x2"}, {"region": "crop"}, {"overlap": 1.0}, {"margin": -0.1}):
        with pytest.raises(ValidationError):
            DetectRegion.model_validate(bad)


def test_windows_for_each_setting() -> None:
    zones = [[(0.25, 0.5), (0.75, 0.5), (0.75, 1.0), (0.25, 1.0)]]
    assert DetectRegion().windows(400, 200, zones) == [(0, 0, 400, 200)]
    assert DetectRegion(region="zones", margin=0.0).windows(400, 200, zones) == [(100, 0, 300, 200)]
    tiled = DetectRegion(region="zones", margin=0.0, tiles=(1, 2), overlap=0.0).windows(400, 200, zones)
    assert tiled == [(100, 0, 300, 200), (100, 0, 200, 200), (200, 0, 300, 200)]
    assert len(DetectRegion(tiles=(2, 2), whole=False).windows(400, 200, zones)) == 4


def test_cut_gives_each_window_and_the_frame_itself() -> None:
    image = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    whole, part = cut(image, [(0, 0, 8, 6), (2, 1, 5, 4)])
    assert whole is image
    assert part.shape == (3, 3, 3) and np.array_equal(part, image[1:4, 2:5])


def test_a_box_in_a_crop_maps_back_exactly() -> None:
    found = [dets([[10, 20, 30, 40]], [0.9], [2])]
    back = merge_windows(found, [(100, 50, 300, 250)], 640, 480)
    assert back.xyxy.tolist() == [[110, 70, 130, 90]]
    assert back.data[CLASS_NAME].tolist() == ["c2"]


def test_a_box_cut_by_a_tile_border_becomes_one() -> None:
    # two tiles of a 200×100 frame meeting at x 100 with no overlap; an object spans x 80..130
    windows = [(0, 0, 100, 100), (100, 0, 200, 100)]
    found = [dets([[80, 10, 100, 60]], [0.6], [0]), dets([[0, 12, 30, 58]], [0.8], [0])]
    merged = merge_windows(found, windows, 200, 100)
    assert merged.xyxy.tolist() == [[80, 10, 130, 60]]
    assert merged.confidence is not None and merged.confidence.tolist() == pytest.approx([0.8])


def test_a_cut_piece_joins_the_whole_view_and_duplicates_go() -> None:
    # the whole region plus two tiles; the car is whole in the region view, cut in the left tile, whole in the right
    windows = [(0, 0, 200, 100), (0, 0, 110, 100), (90, 0, 200, 100)]
    found = [
        dets([[95, 20, 150, 60], [10, 10, 40, 40]], [0.7, 0.5], [0, 1]),
        dets([[95, 20, 110, 60], [10, 10, 40, 40]], [0.9, 0.6], [0, 1]),
        dets([[5, 21, 60, 61]], [0.8], [0]),
    ]
    merged = merge_windows(found, windows, 200, 100)
    by_class = {int(c): box for c, box in zip(merged.class_id, merged.xyxy.tolist(), strict=True)}
    assert len(merged) == 2
    assert by_class[0] == [95, 20, 150, 61]
    assert by_class[1] == [10, 10, 40, 40]


def test_neighbours_of_one_class_and_other_classes_stay_apart() -> None:
    windows = [(0, 0, 200, 100), (0, 0, 100, 100)]
    found = [
        dets([[10, 10, 50, 50], [52, 10, 92, 50]], [0.9, 0.8], [0, 0]),
        dets([[10, 10, 50, 50]], [0.7], [1]),
    ]
    merged = merge_windows(found, windows, 200, 100)
    assert len(merged) == 3


def test_no_detections_anywhere() -> None:
    empty = sv.Detections.empty()
    assert len(merge_windows([empty, empty], [(0, 0, 10, 10), (5, 0, 10, 10)], 10, 10)) == 0
    with pytest.raises(ValueError, match="2 detection sets for 1 windows"):
        merge_windows([empty, empty], [(0, 0, 10, 10)], 10, 10)
