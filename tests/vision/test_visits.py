"""Rules judged across visits (persistence, groups) and the visit API of `PresetScene`.

A visit here is three frames 2 s apart; visits are 10 minutes apart. Each case lists, per visit, the detections
of each of its frames, and expects the indices of the visits whose `end_visit()` files a violation.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
import supervision as sv

from citywatch.vision.frame import Frame
from citywatch.vision.persistence import group_boxes
from citywatch.vision.rules import Rule
from citywatch.vision.scene import PresetScene
from citywatch.vision.violation import Violation
from tests.vision.factories import IMAGE, T0, Item, boxes, parking_rule, persistence_rule, stall_rule, watching

VISIT_EVERY = timedelta(minutes=10)


def make_scene(rule: Rule, preset: str = "p1") -> PresetScene:
    return watching(rule, preset=preset)


def visit(scene: PresetScene, index: int, frames: list[sv.Detections]) -> list[Violation]:
    """One visit: begin, observe each frame 2 s apart, end; returns everything that fired."""
    start = T0 + index * VISIT_EVERY
    scene.begin_visit(start)
    fired = []
    for i, detections in enumerate(frames):
        fired += scene.observe(
            Frame(IMAGE, scene.camera_id, scene.preset_id, start + timedelta(seconds=2 * i)), detections
        )
    return fired + scene.end_visit()


def fired_visits(rule: Rule, visits: list[list[sv.Detections]]) -> list[int]:
    scene = make_scene(rule)
    return [i for i, frames in enumerate(visits) for _ in visit(scene, i, frames)]


PILE: Item = (20.0, 50.0, 70.0, 90.0, "garbage", 0.7)
PILE_SHIFTED: Item = (24.0, 48.0, 76.0, 92.0, "garbage", 0.6)  # the same pile, framed a little differently
DIM_PILE: Item = (20.0, 50.0, 70.0, 90.0, "garbage", 0.4)
PILE_B: Item = (120.0, 50.0, 170.0, 90.0, "garbage", 0.7)
PILE_C: Item = (80.0, 10.0, 110.0, 40.0, "garbage", 0.7)
NOTHING = boxes()
SEEN = [boxes(PILE)] * 3
GONE = [NOTHING] * 3

PERSISTENCE_CASES = {
    "seen every visit: fires from the 2nd visit on": ([SEEN] * 4, [1, 2, 3]),
    "2 of 3 with a gap": ([SEEN, GONE, SEEN], [2]),
    "1 of the last 3 is not enough": ([SEEN, GONE, GONE, SEEN], []),
    "flickers below threshold in the middle visit": ([SEEN, [boxes(DIM_PILE)] * 3, SEEN], [2]),
    "seen in one frame of each visit (occluded in the others)": ([[NOTHING, boxes(PILE), NOTHING]] * 2, [1]),
    "the same pile framed a little differently": ([SEEN, [boxes(PILE_SHIFTED)] * 3], [1]),
    # Something passing through is at a different place in every visit.
    "passes through: a different place each visit": ([[boxes(PILE)], [boxes(PILE_C)], [boxes(PILE_B)]], []),
    # Two piles trade places with a third: only the pile that stayed (B) persists.
    "one pile stays, another moves away": ([[boxes(PILE, PILE_B)], [boxes(PILE_C, PILE_B)]], [1]),
    "a visit without frames does not count": ([SEEN, [], SEEN], [2]),
    "other classes are ignored": ([[boxes((20.0, 50.0, 70.0, 90.0, "car", 0.9))]] * 3, []),
}


@pytest.mark.parametrize(("visits", "expected"), PERSISTENCE_CASES.values(), ids=PERSISTENCE_CASES.keys())
def test_persistence(visits: list[list[sv.Detections]], expected: list[int]) -> None:
    assert fired_visits(persistence_rule(), visits) == expected


def test_a_persisting_pile_is_one_ongoing_violation() -> None:
    scene = make_scene(persistence_rule())
    fired = [v for i in range(4) for v in visit(scene, i, [NOTHING, boxes(PILE), boxes(PILE_SHIFTED)])]
    assert len(fired) == 3
    assert len({v.track_id for v in fired}) == 1
    assert {v.first_seen for v in fired} == {T0 + timedelta(seconds=2)}
    assert [v.seen_in for v in fired] == [(2, 2), (3, 3), (3, 3)]
    assert fired[0].confidence == pytest.approx(0.7)  # the best frame of the visit is the evidence
    assert fired[0].frame.captured_at == T0 + VISIT_EVERY + timedelta(seconds=2)


def test_repeat_every_limits_reports_of_a_persisting_pile() -> None:
    rule = persistence_rule(repeat_every=timedelta(minutes=25))
    assert fired_visits(rule, [SEEN] * 6) == [1, 4]


def test_camera_moved_to_another_preset_between_visits() -> None:
    # The patrol alternates p1 and p2; a pile at the same pixels in p2 says nothing about p1.
    rule = persistence_rule(visits=2, of=2)
    p1, p2 = make_scene(rule, "p1"), make_scene(rule, "p2")
    assert visit(p1, 0, SEEN) == []
    assert visit(p2, 1, SEEN) == []
    assert visit(p1, 2, GONE) == []
    assert visit(p2, 3, SEEN) != []  # p2's own two visits
    assert visit(p1, 4, SEEN) == []  # p1: seen in 1 of its last 2 visits
    with pytest.raises(ValueError, match="preset 'p2'"):
        p1.observe(Frame(IMAGE, "cam-1", "p2", T0 + timedelta(hours=1)), boxes(PILE))


def test_fixed_camera_without_visits_counts_each_frame_as_a_visit() -> None:
    scene = make_scene(persistence_rule())
    fired = [bool(scene.observe(Frame(IMAGE, "cam-1", "p1", T0 + timedelta(seconds=i)), boxes(PILE))) for i in range(3)]
    assert fired == [False, True, True]


def test_dwell_by_overlap_spans_visits_and_dwell_by_track_does_not() -> None:
    # A car parked through every visit (and hidden in some frames) is one ongoing violation by overlap.
    car: Item = (20.0, 40.0, 60.0, 80.0, "car", 0.8)
    common = {"min_dwell": timedelta(minutes=5), "max_gap": timedelta(minutes=15), "repeat_every": VISIT_EVERY}
    sequence = [boxes(car), NOTHING, boxes(car)]
    by_overlap = make_scene(parking_rule(**common, identity="overlap"))
    fired = [v for i in range(4) for v in visit(by_overlap, i, sequence)]
    assert [(v.last_seen - T0) // timedelta(minutes=1) for v in fired] == [10, 20, 30]
    assert len({v.track_id for v in fired}) == 1
    assert {v.first_seen for v in fired} == {T0}
    by_track = make_scene(parking_rule(**common, identity="track"))
    assert [v for i in range(4) for v in visit(by_track, i, sequence)] == []


UMBRELLA: Item = (40.0, 10.0, 90.0, 40.0, "umbrella", 0.6)
TABLE: Item = (50.0, 45.0, 80.0, 70.0, "dining table", 0.5)  # 5 px under the umbrella
CHAIR: Item = (85.0, 50.0, 100.0, 70.0, "chair", 0.4)  # 5 px right of the table
CHAIR_2: Item = (105.0, 50.0, 120.0, 70.0, "chair", 0.4)
FAR_TABLE: Item = (150.0, 70.0, 180.0, 95.0, "dining table", 0.5)  # 60 px from the umbrella: 2× its height
PERSON_1: Item = (0.0, 10.0, 20.0, 90.0, "person", 0.8)
PERSON_2: Item = (22.0, 10.0, 42.0, 90.0, "person", 0.8)
PERSON_3: Item = (110.0, 10.0, 130.0, 90.0, "person", 0.8)  # 68 px from PERSON_2: within reach of a person
CARRIED_UMBRELLA: Item = (125.0, 30.0, 165.0, 50.0, "umbrella", 0.5)  # 83+ px from PERSON_1 and PERSON_2


@pytest.mark.parametrize(
    ("items", "groups"),
    [
        ([UMBRELLA, TABLE], [[0, 1]]),
        ([UMBRELLA, TABLE, CHAIR], [[0, 1, 2]]),  # a chain: the chair reaches the umbrella through the table
        ([CHAIR, CHAIR_2], []),  # two chairs are one class: not a stall
        ([UMBRELLA, FAR_TABLE], []),
        ([UMBRELLA, TABLE, FAR_TABLE], [[0, 1]]),
        ([UMBRELLA], []),
        # A crowd: people next to each other link only through the umbrella one of them carries.
        ([PERSON_1, PERSON_2, PERSON_3, CARRIED_UMBRELLA], [[2, 3]]),
    ],
)
def test_group_boxes(items: list[Item], groups: list[list[int]]) -> None:
    detections = boxes(*items)
    names = [str(n) for n in detections.data["class_name"]]
    found = group_boxes(detections.xyxy, names, distance=1.0, min_members=2, min_classes=2)
    assert [g.tolist() for g in found] == groups


STALL = [boxes(UMBRELLA, TABLE, CHAIR)] * 2
GROUP_CASES = {
    "a stall in every visit": ([STALL] * 3, [1, 2]),
    "umbrella alone (a pedestrian's) never fires": ([[boxes(UMBRELLA)] * 2] * 3, []),
    "umbrella and table too far apart": ([[boxes(UMBRELLA, FAR_TABLE)] * 2] * 3, []),
    "stall set up in only one visit": ([STALL, [NOTHING], [NOTHING]], []),
    "stall partly hidden: two members are enough": ([STALL, [boxes(UMBRELLA, TABLE)]], [1]),
}


@pytest.mark.parametrize(("visits", "expected"), GROUP_CASES.values(), ids=GROUP_CASES.keys())
def test_group(visits: list[list[sv.Detections]], expected: list[int]) -> None:
    assert fired_visits(stall_rule(), visits) == expected


def test_group_violation_carries_its_members_and_their_union() -> None:
    scene = make_scene(stall_rule())
    (violation,) = [v for i in range(2) for v in visit(scene, i, STALL)]
    assert violation.box == (40.0, 10.0, 100.0, 70.0)
    assert violation.class_name == "chair+dining table+umbrella"
    assert sorted(m.class_name for m in violation.members) == ["chair", "dining table", "umbrella"]
    assert violation.confidence == pytest.approx(0.5)
    assert violation.code == "09006"


@pytest.mark.parametrize(
    ("make", "kwargs", "message"),
    [
        (persistence_rule, {"visits": 4, "of": 3}, "visits <= of"),
        (persistence_rule, {"visits": 0}, "visits <= of"),
        (stall_rule, {"min_classes": 4}, "min_classes"),
        (stall_rule, {"min_members": 1, "min_classes": 1}, "min_members"),
        (stall_rule, {"group_distance": -1.0}, "group_distance"),
    ],
)
def test_bad_visit_rules_are_refused(make: Callable[..., Rule], kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_visit_api_misuse_is_refused() -> None:
    scene = make_scene(persistence_rule())
    with pytest.raises(RuntimeError, match="end_visit without begin_visit"):
        scene.end_visit()
    with pytest.raises(ValueError, match="timezone-aware UTC"):
        scene.begin_visit(datetime(2026, 5, 4, 2, 0))
    scene.begin_visit(T0 + timedelta(minutes=1))
    assert scene.in_visit
    with pytest.raises(RuntimeError, match="still open"):
        scene.begin_visit(T0 + timedelta(minutes=2))
    assert scene.end_visit() == []
    assert not scene.in_visit
