"""Evidence rendering: decodable JPEGs, the box drawn where the object is, a crop around it, a sidecar."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from citywatch.vision.evidence import annotate, crop, render_evidence
from citywatch.vision.frame import Frame
from citywatch.vision.violation import Member, Violation

T0 = datetime(2026, 5, 4, 2, 0, tzinfo=UTC)


def violation(width: int, height: int) -> Violation:
    rng = np.random.default_rng(0)
    image = rng.integers(60, 120, size=(height, width, 3), dtype=np.uint8)  # grey noise, no pure red
    box = (width * 0.4, height * 0.5, width * 0.6, height * 0.8)
    polygon = np.array([[0, height // 2], [width - 1, height // 2], [width - 1, height - 1], [0, height - 1]])
    return Violation(
        kind="motor_vehicle_illegal_parking",
        code="09009",
        rule="illegal_parking",
        zone="fire-lane",
        class_name="car",
        confidence=0.81,
        box=box,
        first_seen=T0,
        last_seen=T0 + timedelta(minutes=6),
        frame=Frame(image, "gate-3", "main", T0 + timedelta(minutes=6), 42),
        zone_polygon=polygon.astype(np.int32),
        track_id=7,
        model_version="coco-yolo11n@abc",
    )


def decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (854, 480)])
def test_evidence_set_is_complete_and_legible(width: int, height: int) -> None:
    v = violation(width, height)
    evidence = render_evidence(v, jpeg_quality=90)
    assert set(evidence) == {"annotated", "crop", "frame", "sidecar"}
    annotated = decode(evidence["annotated"].data)
    frame = decode(evidence["frame"].data)
    assert annotated.shape == frame.shape == (height, width, 3)
    x1, y1, x2, y2 = (round(c) for c in v.box)

    # The box's left edge is red (BGR ~ (45, 17, 232)) on the annotated image and absent from the untouched one.
    def redness_along_left_edge(image: np.ndarray) -> float:
        strip = image[y1 + 4 : y2 - 4, x1 - 2 : x1 + 3].astype(int)
        return float(np.median((strip[..., 2] - strip[..., 1]).max(axis=1)))

    assert redness_along_left_edge(annotated) > 120
    assert redness_along_left_edge(frame) < 60
    crop_image = decode(evidence["crop"].data)
    box_w, box_h = x2 - x1, y2 - y1
    assert box_w < crop_image.shape[1] <= box_w * 1.3 + 4
    assert box_h < crop_image.shape[0] <= box_h * 1.3 + 4
    assert evidence["sidecar"].content_type == "application/json"


def test_sidecar_says_what_fired_where_and_when() -> None:
    facts = json.loads(render_evidence(violation(854, 480))["sidecar"].data)
    assert facts["camera_id"] == "gate-3" and facts["preset_id"] == "main"
    assert facts["code"] == "09009" and facts["name_zh"] == "机动车乱停放"
    assert facts["rule"] == "illegal_parking" and facts["zone"] == "fire-lane"
    assert facts["dwell_seconds"] == 360.0
    assert facts["model_version"] == "coco-yolo11n@abc"
    assert facts["captured_at"] == "2026-05-04T02:06:00+00:00"


def test_crop_is_clipped_to_the_frame_and_refuses_boxes_outside() -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    assert crop(image, (90.0, 90.0, 100.0, 100.0)).shape == (12, 12, 3)
    with pytest.raises(ValueError, match="outside"):
        crop(image, (150.0, 150.0, 160.0, 160.0))


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (854, 480)])
def test_group_evidence_draws_every_member(width: int, height: int) -> None:
    base = violation(width, height)
    w, h = width, height
    members = (
        Member("umbrella", 0.6, (w * 0.30, h * 0.30, w * 0.45, h * 0.50)),
        Member("dining table", 0.5, (w * 0.50, h * 0.55, w * 0.65, h * 0.75)),
    )
    group = dataclasses.replace(
        base,
        kind="road_occupying_business",
        code="09006",
        class_name="dining table+umbrella",
        box=(w * 0.30, h * 0.30, w * 0.65, h * 0.75),
        members=members,
        seen_in=(2, 3),
    )
    evidence = render_evidence(group)
    annotated, frame = decode(evidence["annotated"].data), decode(evidence["frame"].data)
    for member in members:
        x1, y1, _, y2 = (round(c) for c in member.box)
        strip = annotated[y1 + 4 : y2 - 4, x1 - 2 : x1 + 3].astype(int)
        assert np.median((strip[..., 2] - strip[..., 1]).max(axis=1)) > 120, member.class_name
    assert not np.array_equal(annotated, frame)
    facts = json.loads(evidence["sidecar"].data)
    assert facts["seen_in_visits"] == [2, 3]
    assert [m["class_name"] for m in facts["members"]] == ["umbrella", "dining table"]


@pytest.mark.parametrize("group", [False, True], ids=["object", "group"])
def test_the_object_keeps_its_colour_and_the_zone_around_it_is_tinted(group: bool) -> None:
    v = violation(854, 480)
    if group:  # a stall: the members keep their colours, the gap between them is zone
        left, right = (340.0, 240.0, 400.0, 380.0), (440.0, 260.0, 510.0, 380.0)
        v = dataclasses.replace(
            v, box=(340.0, 240.0, 510.0, 380.0), members=(Member("umbrella", 0.7, left), Member("chair", 0.6, right))
        )
    boxes = [m.box for m in v.members] or [v.box]
    annotated, frame = annotate(v), v.frame.image
    inset = 2 * max(2, round(480 / 240))  # clear of the red box line drawn over the edge
    for x1, y1, x2, y2 in ((round(c) for c in box) for box in boxes):
        inside = (slice(y1 + inset, y2 - inset), slice(x1 + inset, x2 - inset))
        assert np.array_equal(annotated[inside], frame[inside])  # untouched: not a pixel recoloured
    # The rest of the zone (the polygon is the lower half) is tinted yellow: more red and green than blue.
    zone_patch = (slice(400, 460), slice(40, 200))
    tint = annotated[zone_patch].astype(int) - frame[zone_patch].astype(int)
    assert tint[..., 2].mean() > 10 and tint[..., 1].mean() > 10 and tint[..., 0].mean() < 0
    if group:
        gap = (slice(300, 370), slice(415, 430))
        assert not np.array_equal(annotated[gap], frame[gap])
