"""A preset with `detect: {region: zones}` detects on the crop around its zones and reports frame coordinates,
in the patrol's path (`preset_visit`: one-image calls, batched by the deployment) and in replay's."""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
import numpy as np
import pytest
import supervision as sv

from citywatch.pipelines.build import open_detector, preset_visit
from citywatch.pipelines.config import CityConfig
from citywatch.pipelines.replay import Replay, ReplayOptions, replay_config
from citywatch.vision.detections import CLASS_NAME
from citywatch.vision.detector import OnnxDetector

DEMO = Path(__file__).resolve().parents[2] / "serving" / "demo"
CAMERA, PRESET = "parking-lot-1", "fixed"
VEHICLES = ("car", "truck", "bus")


def config_with(detect: dict[str, object]) -> CityConfig:
    data = replay_config(DEMO / "city.yaml").model_dump(mode="json")
    data["cameras"][CAMERA]["presets"][PRESET]["detect"] = detect
    return CityConfig.model_validate(data)


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    """Frame 300 (30 s) of the demo clip: cars parked across the lot and one in the fire lane."""
    with av.open(str(DEMO / "parking-demo.mp4")) as container:
        for index, picture in enumerate(container.decode(video=0)):
            if index == 300:
                return np.asarray(picture.to_ndarray(format="bgr24"))
    raise AssertionError("the demo clip has fewer than 301 frames")


@pytest.fixture(scope="module")
def detector() -> OnnxDetector:
    return open_detector(config_with({}).detectors["default"])


def vehicles(detections: sv.Detections) -> np.ndarray:
    return detections.xyxy[np.isin(detections.data[CLASS_NAME], VEHICLES)]


def test_zone_crop_boxes_land_on_the_whole_frame_boxes(frame: np.ndarray, detector: OnnxDetector) -> None:
    config = config_with({"region": "zones", "margin": 0.1})
    shapes: list[tuple[int, ...]] = []

    async def one(image: np.ndarray) -> sv.Detections:  # what the serving deployment's handle does, per image
        shapes.append(image.shape)
        return detector.detect([image])[0]

    visit = preset_visit(config, CAMERA, PRESET, detect=one)
    assert visit.detect is not None
    found = asyncio.run(visit.detect(frame))
    height, width = frame.shape[:2]
    left, top, right, bottom = (
        config.cameras[CAMERA]
        .presets[PRESET]
        .detect.windows(
            width, height, [zone.polygon for zone in config.cameras[CAMERA].presets[PRESET].zones.values()]
        )[0]
    )
    assert shapes == [(bottom - top, right - left, 3)] and (right - left) * (bottom - top) < width * height / 3
    boxes = vehicles(found)
    assert len(boxes) >= 3
    # every box in frame pixels, inside the crop (not at the crop's own origin)
    assert (boxes[:, [0, 2]] >= left).all() and (boxes[:, [0, 2]] <= right).all()
    assert (boxes[:, [1, 3]] >= top).all() and (boxes[:, [1, 3]] <= bottom).all()
    # the car in the fire lane (bottom-centre in the zone) is the same car the whole frame sees
    whole = vehicles(detector.detect([frame])[0])
    in_lane = [b for b in boxes if 0.52 * width <= (b[0] + b[2]) / 2 <= 0.80 * width and b[3] >= 0.9 * height]
    assert in_lane, f"no vehicle in the fire lane among {boxes.tolist()}"
    for box in in_lane:
        assert sv.box_iou_batch(box[None], whole).max() >= 0.5


def test_the_default_is_the_whole_frame(frame: np.ndarray, detector: OnnxDetector) -> None:
    seen: list[np.ndarray] = []

    async def one(image: np.ndarray) -> sv.Detections:
        seen.append(image)
        return detector.detect([image])[0]

    visit = preset_visit(config_with({}), CAMERA, PRESET, detect=one)
    assert visit.detect is not None
    found = asyncio.run(visit.detect(frame))
    assert len(seen) == 1 and seen[0] is frame
    assert np.array_equal(found.xyxy, detector.detect([frame])[0].xyxy)


def test_tiles_run_as_one_call_per_window(frame: np.ndarray, detector: OnnxDetector) -> None:
    calls: list[int] = []

    async def one(image: np.ndarray) -> sv.Detections:
        calls.append(image.shape[0])
        return detector.detect([image])[0]

    visit = preset_visit(config_with({"tiles": "2x2"}), CAMERA, PRESET, detect=one)
    assert visit.detect is not None
    found = asyncio.run(visit.detect(frame))
    assert len(calls) == 5  # the whole frame and four tiles, gathered: the deployment batches them
    whole = vehicles(detector.detect([frame])[0])
    ious = sv.box_iou_batch(vehicles(found), whole)
    assert (ious.max(axis=0) >= 0.5).mean() >= 0.8  # nearly every car of the whole view is still there, once


def test_replay_files_the_fire_lane_case_from_the_zone_crop(tmp_path: Path) -> None:
    config = config_with({"region": "zones"})
    runner = Replay(config, CAMERA, PRESET, tmp_path)
    result = asyncio.run(runner.run([str(DEMO / "parking-demo.mp4")], ReplayOptions()))
    assert result.cases and {case.zone for case in result.cases} == {"fire-lane"}
    case = runner.store.get_case(result.cases[0].case_id)
    assert case is not None
    x1, _, x2, y2 = case.box  # in pixels of the 640×360 frame, its bottom-centre in the lane (x .52-.80, y > .9)
    assert 0.52 * 640 <= (x1 + x2) / 2 <= 0.80 * 640 and y2 >= 0.9 * 360
