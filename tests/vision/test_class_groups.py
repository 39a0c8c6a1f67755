"""One object, one violation: the demo's shipped rules on a vehicle whose label flickers, and plausible boxes.

The rules and zones are the ones `serving/demo/city.yaml` ships, read as the config reads them; detections are
hand-made (the factories' 200×100 frame, a sample every 2 s).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import supervision as sv
import yaml

from citywatch.vision.rules import DwellRule, PresenceRule, Rule
from citywatch.vision.scene import PresetScene
from citywatch.vision.violation import Violation
from citywatch.vision.zones import Zone
from tests.vision.factories import Item, boxes, frame, watching

CITY = yaml.safe_load((Path(__file__).resolve().parents[2] / "serving" / "demo" / "city.yaml").read_text())


def shipped(name: str, **changes: Any) -> Rule:
    """The demo config's rule `name` (its key is its name), with `changes`."""
    data = CITY["rules"][name] | {"name": name} | changes
    return (DwellRule if data["type"] == "dwell" else PresenceRule).model_validate(data)


def shipped_zone(camera: str, preset: str, zone: str) -> Zone:
    polygon = CITY["cameras"][camera]["presets"][preset]["zones"][zone]["polygon"]
    return Zone(zone, tuple((float(x), float(y)) for x, y in polygon))


FIRE_LANE = shipped_zone("parking-lot-1", "fixed", "fire-lane")  # x 0.52-0.80, y 0.90-1.0
KERB = shipped_zone("dome-1", "parking", "kerb")  # x 0-0.50, y 0.80-1.0
PARKING_RULES = {"illegal_parking": FIRE_LANE, "kerb_parking": KERB}


def run(scene: PresetScene, sequence: list[sv.Detections]) -> list[Violation]:
    return [v for i, detections in enumerate(sequence) for v in scene.observe(frame(i * 2.0), detections)]


def vehicle(x: float, label: str, confidence: float, shift: float = 0.0) -> Item:
    """A vehicle standing with its wheels at the bottom of the frame, left edge at `x`; `shift` nudges the box
    by a pixel or two, as a second label's box on the same vehicle is."""
    return (x + shift, 60.0 + shift, x + 40.0, 98.0, label, confidence)


# The field report's car: scored 0.27-0.45, called car or truck from one sample to the next, and in some samples
# both (the detector's NMS is per class). Truck is the commoner label among the samples at or above 0.4.
FLICKER = [
    [("car", 0.43)],
    [("truck", 0.31)],
    [("truck", 0.41), ("car", 0.40)],
    [("car", 0.29)],
    [("truck", 0.44)],
    [("car", 0.33), ("truck", 0.27)],
    [("truck", 0.42)],
    [("car", 0.30)],
]


def flickering(x: float, samples: int, pattern: list[list[tuple[str, float]]] = FLICKER) -> list[sv.Detections]:
    return [
        boxes(*(vehicle(x, label, conf, shift=1.5 * n) for n, (label, conf) in enumerate(pattern[i % len(pattern)])))
        for i in range(samples)
    ]


@pytest.mark.parametrize("name", PARKING_RULES)
def test_a_vehicle_flickering_car_truck_in_the_zone_is_filed_once(name: str) -> None:
    rule, zone = shipped(name), PARKING_RULES[name]
    x = (zone.polygon[0][0] + 0.05) * 200  # wheels well inside the zone
    violations = run(watching(rule, zone=zone), flickering(x, 28))  # 54 s: past min_dwell, within repeat_every
    assert len(violations) == 1, [(v.class_name, v.first_seen) for v in violations]
    (violation,) = violations
    assert violation.class_name == "truck"  # the label seen most often, whatever the last sample said
    assert violation.dwell_seconds >= rule.min_dwell.total_seconds()  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", PARKING_RULES)
def test_lowering_min_confidence_files_a_vehicle_scored_about_0_3(name: str) -> None:
    zone = PARKING_RULES[name]
    x = (zone.polygon[0][0] + 0.05) * 200
    faint = [[("car", 0.31)], [("truck", 0.29), ("car", 0.27)], [("truck", 0.33)], [("truck", 0.30)]]
    sequence = flickering(x, 28, faint)
    assert run(watching(shipped(name), zone=zone), sequence) == []  # all below the shipped 0.4: nothing
    # The staff's fix: min_confidence down to the detector's conf. The tracker follows it; no hidden 0.45.
    violations = run(watching(shipped(name, min_confidence=0.25), zone=zone), sequence)
    assert [v.class_name for v in violations] == ["truck"]


def test_two_vehicles_side_by_side_stay_two() -> None:
    rule = shipped("illegal_parking")
    left, right = 90.0, 125.0  # wheels at x 110 and 145, both in the fire lane; the boxes barely touch
    sequence = [boxes(vehicle(left, "car", 0.8), vehicle(right, "truck", 0.7, shift=1.0))] * 14
    assert sorted(v.class_name for v in run(watching(rule, zone=FIRE_LANE), sequence)) == ["car", "truck"]


def test_a_frame_wide_garbage_box_is_dropped_while_a_normal_pile_fires() -> None:
    rule = shipped("exposed_garbage")
    zone = shipped_zone("dome-1", "bins", "bin-corner")  # the centre of the picture, top to bottom
    frame_wide = (0.0, 0.0, 200.0, 100.0, "garbage", 0.9)  # area 1.0 of the frame
    pavement = (0.0, 78.0, 200.0, 96.0, "garbage", 0.8)  # the whole width, 18 px high: aspect 11
    pile = (85.0, 55.0, 115.0, 80.0, "garbage", 0.7)
    assert run(watching(rule, zone=zone), [boxes(frame_wide), boxes(pavement)]) == []
    (violation,) = run(watching(rule, zone=zone), [boxes(frame_wide, pavement, pile)])
    assert violation.box == pile[:4]
    # The limits are the rule's: a rule for a wide view can allow the strip.
    wide = shipped("exposed_garbage", max_aspect=12.0)
    assert [v.box for v in run(watching(wide, zone=zone), [boxes(pavement)])] == [pavement[:4]]
