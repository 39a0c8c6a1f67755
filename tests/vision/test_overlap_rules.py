"""Dwell by box overlap and presence, driven by tiny hand-made detection sequences (one sample every 2 s).

Each case is a sequence of detection sets; the expectation is the list of sample indices on which a violation
fires. Boxes are (x1, y1, x2, y2, class, confidence) in a 200×100 frame whose zone is the whole picture.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import supervision as sv

from citywatch.vision.rules import Rule
from tests.vision.factories import T0, Item, boxes, frame, overlap_rule, presence_rule, watching


def fired_at(rule: Rule, sequence: list[sv.Detections], step: float = 2.0) -> list[int]:
    """Sample indices on which the rule fires (once per violation)."""
    scene = watching(rule)
    return [i for i, d in enumerate(sequence) for _ in scene.observe(frame(i * step), d)]


CAR: Item = (20.0, 40.0, 60.0, 80.0, "car", 0.8)
DIM_CAR: Item = (20.0, 40.0, 60.0, 80.0, "car", 0.3)
SAME_CAR_AS_TRUCK: Item = (21.0, 41.0, 61.0, 81.0, "truck", 0.6)  # an SUV read as a truck for one sample
TRUCK_RIGHT: Item = (110.0, 20.0, 190.0, 80.0, "truck", 0.8)
# The swap: the small car now stands where the truck was and the truck where the car was.
CAR_RIGHT: Item = (130.0, 40.0, 170.0, 80.0, "car", 0.8)
TRUCK_LEFT: Item = (0.0, 20.0, 80.0, 80.0, "truck", 0.8)
NOTHING = boxes()


def driving(step_px: float, samples: int) -> list[sv.Detections]:
    return [boxes((i * step_px, 40.0, i * step_px + 40.0, 80.0, "car", 0.9)) for i in range(samples)]


OVERLAP_DWELL_CASES = {
    # First seen at sample 0: 10 s of dwell is reached at sample 5; repeat_every 60 s keeps it to one report.
    "parked": ([boxes(CAR)] * 20, [5]),
    "drives through (20 px per sample)": (driving(20, 10), []),
    # 4 px per sample keeps a high IoU sample to sample, but the car drifts off its first box within 4 samples.
    "creeps in a queue (4 px per sample)": (driving(4, 25), []),
    "flickers below min_confidence": ([boxes(CAR)] * 3 + [boxes(DIM_CAR)] + [boxes(CAR)] * 4, [5]),
    "occluded for 2 samples (4 s < max_gap)": ([boxes(CAR)] * 2 + [NOTHING] * 2 + [boxes(CAR)] * 4, [5]),
    "gone 8 s > max_gap, then back": ([boxes(CAR)] * 4 + [NOTHING] * 4 + [boxes(CAR)] * 8, [13]),
    "read as truck for one sample (classes are one group)": (
        [boxes(CAR)] * 3 + [boxes(SAME_CAR_AS_TRUCK)] + [boxes(CAR)] * 4,
        [5],
    ),
    # Both spots stay occupied, but by objects of other sizes: both dwells restart at the swap (sample 3).
    "two objects swap places": ([boxes(CAR, TRUCK_RIGHT)] * 3 + [boxes(CAR_RIGHT, TRUCK_LEFT)] * 6, [8, 8]),
}


@pytest.mark.parametrize(("sequence", "expected"), OVERLAP_DWELL_CASES.values(), ids=OVERLAP_DWELL_CASES.keys())
def test_dwell_by_overlap(sequence: list[sv.Detections], expected: list[int]) -> None:
    assert fired_at(overlap_rule(), sequence) == expected


# With a max_gap long enough to span patrol visits, misses in a row are what tell a parked car from a lane
# whose cars pass the same spot one after another (seen on the shared motorway clip).
MISSED_CASES = {
    "a lane of traffic: a car on the spot every 5th sample": (([boxes(CAR)] + [NOTHING] * 4) * 5, []),
    "occluded for 3 samples (max_missed)": ([boxes(CAR)] * 2 + [NOTHING] * 3 + [boxes(CAR)] * 2, [5]),
    "occluded for 4 samples: a new stay": ([boxes(CAR)] * 2 + [NOTHING] * 4 + [boxes(CAR)] * 6, [11]),
}


@pytest.mark.parametrize(("sequence", "expected"), MISSED_CASES.values(), ids=MISSED_CASES.keys())
def test_dwell_by_overlap_ends_after_max_missed_samples(sequence: list[sv.Detections], expected: list[int]) -> None:
    assert fired_at(overlap_rule(max_gap=timedelta(minutes=15)), sequence) == expected


def test_dwell_by_overlap_reports_a_staying_object_again_with_the_same_id() -> None:
    scene = watching(overlap_rule(repeat_every=timedelta(seconds=20)))
    violations = [v for i in range(20) for v in scene.observe(frame(i * 2.0), boxes(CAR))]
    assert [v.last_seen - T0 for v in violations] == [timedelta(seconds=10), timedelta(seconds=30)]
    assert len({v.track_id for v in violations}) == 1
    assert {v.first_seen for v in violations} == {T0}


PILE: Item = (20.0, 50.0, 70.0, 90.0, "garbage", 0.7)
PILE_GROWN: Item = (15.0, 45.0, 80.0, 92.0, "garbage", 0.75)  # IoU 0.66 with PILE: the same pile
DIM_PILE: Item = (20.0, 50.0, 70.0, 90.0, "garbage", 0.4)
OTHER_PILE: Item = (120.0, 50.0, 170.0, 90.0, "garbage", 0.6)

PRESENCE_CASES = {
    "a pile fires at once, then again after repeat_every": ([boxes(PILE)] * 12, [0, 10]),
    "a pile that grows is the same pile": ([boxes(PILE)] * 3 + [boxes(PILE_GROWN)] * 3, [0]),
    "below min_confidence never fires": ([boxes(DIM_PILE)] * 12, []),
    "flickering below threshold is not a new pile": ([boxes(PILE), boxes(DIM_PILE)] * 4, [0]),
    "a second pile is its own violation": ([boxes(PILE)] * 2 + [boxes(PILE, OTHER_PILE)] * 2, [0, 2]),
    "gone longer than max_gap, then back: a new violation": ([boxes(PILE)] + [NOTHING] * 6 + [boxes(PILE)], [0, 7]),
    "other classes are ignored": ([boxes(CAR)] * 5, []),
}


@pytest.mark.parametrize(("sequence", "expected"), PRESENCE_CASES.values(), ids=PRESENCE_CASES.keys())
def test_presence(sequence: list[sv.Detections], expected: list[int]) -> None:
    assert fired_at(presence_rule(), sequence) == expected


@pytest.mark.parametrize(
    ("rule", "kwargs", "message"),
    [
        (overlap_rule, {"identity": "kalman"}, "identity must be"),
        (overlap_rule, {"min_overlap": 0.0}, "min_overlap"),
        (presence_rule, {"max_gap": timedelta(0)}, "max_gap"),
        (presence_rule, {"classes": frozenset()}, "classes must not be empty"),
    ],
)
def test_bad_rules_are_refused(rule: type[Rule], kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rule(**kwargs)
