"""Dwell rules and zones, driven by tiny hand-made detection sequences (one sample every 2 s)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
import supervision as sv

from citywatch.vision.rules import ActiveWindow, DwellRule
from citywatch.vision.scene import PresetScene
from citywatch.vision.zones import Zone
from tests.vision.factories import T0, boxes, frame, parking_rule, watching

LEFT_HALF = Zone("no-parking", ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)))


def scene(rule: DwellRule | None = None) -> PresetScene:
    return watching(rule or parking_rule(), zone=LEFT_HALF)


def run(scene: PresetScene, sequence: list[sv.Detections], step: float = 2.0) -> list[list[str]]:
    """Feed one detection set per sample; return, per sample, the zones of the violations that fired."""
    return [[v.zone for v in scene.observe(frame(i * step), d)] for i, d in enumerate(sequence)]


PARKED = (20.0, 40.0, 60.0, 80.0, "car", 0.8)  # bottom-centre (40, 80): inside the left half


def test_a_car_that_stays_files_exactly_once_within_repeat_interval() -> None:
    fired = run(scene(), [boxes(PARKED)] * 20)  # 38 s of samples
    # Confirmed by the tracker at sample 1 (second sighting); 5 samples × 2 s later the dwell reaches 10 s.
    assert [i for i, zones in enumerate(fired) if zones] == [6]


def test_a_staying_car_is_reported_again_after_repeat_every() -> None:
    fired = run(scene(parking_rule(repeat_every=timedelta(seconds=20))), [boxes(PARKED)] * 20)
    assert [i for i, zones in enumerate(fired) if zones] == [6, 16]


def test_a_car_driving_through_files_nothing() -> None:
    # Enters at the left edge, crosses the zone at 20 px per sample, leaves on the right.
    sequence = [boxes((x, 40.0, x + 40.0, 80.0, "car", 0.9)) for x in range(0, 200, 20)]
    assert run(scene(), sequence) == [[]] * len(sequence)


def test_a_car_parked_outside_the_zone_files_nothing() -> None:
    outside = (120.0, 40.0, 160.0, 80.0, "car", 0.9)  # bottom-centre x = 140 > 100
    assert not any(run(scene(), [boxes(outside)] * 20))


def test_anchor_is_the_bottom_centre_not_the_box() -> None:
    # Box mostly inside the zone, but its wheels (bottom-centre x = 105) are outside.
    straddling = (60.0, 40.0, 150.0, 80.0, "car", 0.9)
    assert not any(run(scene(), [boxes(straddling)] * 20))


def test_a_flicker_below_confidence_does_not_restart_the_dwell() -> None:
    dim = (20.0, 40.0, 60.0, 80.0, "car", 0.3)  # below min_confidence 0.4 for one sample
    sequence = [boxes(PARKED)] * 3 + [boxes(dim)] + [boxes(PARKED)] * 4
    fired = run(scene(), sequence)
    assert [i for i, zones in enumerate(fired) if zones] == [6]


def test_an_absence_longer_than_max_gap_restarts_the_dwell() -> None:
    sequence = [boxes(PARKED)] * 4 + [boxes()] * 4 + [boxes(PARKED)] * 8  # gone 8 s > max_gap 6 s
    fired = run(scene(), sequence)
    # Back at sample 8 with the same track id, but the gap ended the first stay: the dwell restarts there.
    assert [i for i, zones in enumerate(fired) if zones] == [13]


def test_other_classes_and_weak_detections_are_ignored() -> None:
    person = (20.0, 40.0, 60.0, 80.0, "person", 0.9)
    weak_car = (20.0, 40.0, 60.0, 80.0, "car", 0.35)
    assert not any(run(scene(), [boxes(person)] * 20))
    assert not any(run(scene(), [boxes(weak_car)] * 20))


def test_two_cars_give_two_violations_with_their_own_boxes() -> None:
    other = (20.0, 0.0, 60.0, 30.0, "truck", 0.7)
    s = scene()
    fired = [s.observe(frame(i * 2.0), boxes(PARKED, other)) for i in range(8)]
    violations = [v for sample in fired for v in sample]
    assert sorted(v.class_name for v in violations) == ["car", "truck"]
    assert len({v.track_id for v in violations}) == 2
    assert {v.box for v in violations} == {PARKED[:4], other[:4]}


def test_two_cars_swapping_places_keep_separate_dwell_clocks() -> None:
    # A stays for 6 s and leaves; B arrives in the same spot right after: B's dwell starts at its arrival.
    car_a = (20.0, 40.0, 60.0, 80.0, "car", 0.8)
    car_b = (22.0, 42.0, 62.0, 82.0, "truck", 0.8)
    sequence = [boxes(car_a)] * 3 + [boxes(car_b)] * 6
    s = scene(parking_rule(min_dwell=timedelta(seconds=8)))
    fired = [s.observe(frame(i * 2.0), d) for i, d in enumerate(sequence)]
    violations = [v for sample in fired for v in sample]
    assert len(violations) == 1
    assert violations[0].class_name == "truck"
    assert violations[0].dwell_seconds >= 8


def test_violation_carries_time_from_the_frame_and_the_zone_polygon() -> None:
    s = scene()
    violations = [v for i in range(7) for v in s.observe(frame(i * 2.0), boxes(PARKED))]
    (violation,) = violations
    assert violation.first_seen == T0 + timedelta(seconds=2)  # confirmed on the second sighting
    assert violation.last_seen == T0 + timedelta(seconds=12)
    assert violation.code == "09009"
    assert violation.zone_polygon.tolist() == [[0, 0], [100, 0], [100, 99], [0, 99]]


def test_rule_inactive_outside_its_hours() -> None:
    # 07:00-09:00 Shanghai; the samples are at 10:00 Shanghai.
    rule = parking_rule(active=ActiveWindow(time(7), time(9)))
    assert not any(run(scene(rule), [boxes(PARKED)] * 20))
    rule = parking_rule(active=ActiveWindow(time(9), time(11)))
    assert any(run(scene(rule), [boxes(PARKED)] * 20))


def test_window_across_midnight() -> None:
    window = ActiveWindow(time(22), time(6), "UTC")
    assert window.contains(datetime(2026, 1, 1, 23, 0, tzinfo=UTC))
    assert window.contains(datetime(2026, 1, 1, 5, 59, tzinfo=UTC))
    assert not window.contains(datetime(2026, 1, 1, 12, 0, tzinfo=UTC))


def test_scene_refuses_frames_of_another_preset() -> None:
    with pytest.raises(ValueError, match="preset 'p2'"):
        scene().observe(frame(0, preset="p2"), boxes(PARKED))


def test_reset_forgets_stays_when_the_camera_moved_away() -> None:
    s = scene()
    for i in range(4):
        assert s.observe(frame(i * 2.0), boxes(PARKED)) == []
    s.reset()  # camera went to another preset and came back
    assert [s.observe(frame(8 + i * 2.0), boxes(PARKED)) != [] for i in range(7)] == [False] * 6 + [True]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "no_such_kind"}, "unknown kind 'no_such_kind'"),
        ({"classes": frozenset()}, "classes must not be empty"),
        ({"min_confidence": 1.5}, "min_confidence"),
    ],
)
def test_bad_rules_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises((ValueError, KeyError), match=message):
        parking_rule(**kwargs)


@pytest.mark.parametrize(
    ("polygon", "message"),
    [(((0.0, 0.0), (1.0, 1.0)), "at least 3"), (((0.0, 0.0), (1.2, 0.0), (0.0, 1.0)), r"\[0, 1\]")],
)
def test_bad_zones_are_refused(polygon: tuple[tuple[float, float], ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Zone("z", polygon)


def test_zone_follows_a_resolution_change() -> None:
    detections = boxes(PARKED)
    assert LEFT_HALF.contains(detections, 200, 100).tolist() == [True]
    assert LEFT_HALF.contains(detections, 60, 100).tolist() == [False]  # the zone is now x < 30
