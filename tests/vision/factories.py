"""What the rule tests are built from: hand-made detections, frames, a zone, and one factory per rule.

Boxes are (x1, y1, x2, y2, class name, confidence) in a 200×100 frame; frames start at 10:00 in Asia/Shanghai.
Each factory gives a rule with the test's usual parameters; keyword arguments override any of them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import numpy as np
import supervision as sv

from citywatch.vision.frame import Frame
from citywatch.vision.rules import DwellRule, GroupRule, PersistenceRule, PresenceRule, Rule
from citywatch.vision.scene import PresetScene, WatchedZone
from citywatch.vision.zones import Zone

Item = tuple[float, float, float, float, str, float]

T0 = datetime(2026, 5, 4, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai
IMAGE = np.zeros((100, 200, 3), dtype=np.uint8)
WHOLE = Zone("sidewalk", ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)))


def boxes(*items: Item) -> sv.Detections:
    """Detections as the detector returns them (class names in `data`); no items gives an empty set."""
    if not items:
        detections = sv.Detections.empty()
        detections.data["class_name"] = np.array([], dtype=str)
        return detections
    return sv.Detections(
        xyxy=np.array([item[:4] for item in items], dtype=float),
        confidence=np.array([item[5] for item in items]),
        class_id=np.zeros(len(items), dtype=int),
        data={"class_name": np.array([item[4] for item in items])},
    )


def frame(second: float, preset: str | None = "p1") -> Frame:
    """A frame of camera cam-1 `second` seconds after T0."""
    return Frame(IMAGE, "cam-1", preset, T0 + timedelta(seconds=second))


def watching(*rules: Rule, zone: Zone = WHOLE, preset: str = "p1") -> PresetScene:
    """The scene of cam-1's `preset` with `rules` on one zone."""
    return PresetScene("cam-1", preset, [WatchedZone(zone, rules)])


R = TypeVar("R", bound=Rule)


def _rule(kind: type[R], fields: dict[str, Any], overrides: dict[str, Any]) -> R:
    return kind.model_validate(fields | overrides)


def parking_rule(**overrides: Any) -> DwellRule:
    """Cars and trucks that stay 10 s (by track), gone after 6 s unseen, reported again after a minute."""
    fields = {
        "name": "illegal_parking",
        "kind": "motor_vehicle_illegal_parking",
        "classes": frozenset({"car", "truck"}),
        "min_dwell": timedelta(seconds=10),
        "min_confidence": 0.4,
        "max_gap": timedelta(seconds=6),
        "repeat_every": timedelta(seconds=60),
    }
    return _rule(DwellRule, fields, overrides)


def overlap_rule(**overrides: Any) -> DwellRule:
    """`parking_rule` recognising the car by its box overlapping where it was first seen."""
    return parking_rule(**({"identity": "overlap"} | overrides))


def presence_rule(**overrides: Any) -> PresenceRule:
    """Garbage in the zone, reported again after 20 s, forgotten 10 s after it was last seen."""
    fields = {
        "name": "garbage",
        "kind": "exposed_garbage",
        "classes": frozenset({"garbage"}),
        "min_confidence": 0.5,
        "repeat_every": timedelta(seconds=20),
        "max_gap": timedelta(seconds=10),
    }
    return _rule(PresenceRule, fields, overrides)


def persistence_rule(**overrides: Any) -> PersistenceRule:
    """A garbage pile seen at the same place in 2 of the last 3 visits."""
    fields = {
        "name": "garbage_pile",
        "kind": "accumulated_garbage",
        "classes": frozenset({"garbage"}),
        "min_confidence": 0.5,
        "visits": 2,
        "of": 3,
    }
    return _rule(PersistenceRule, fields, overrides)


def stall_rule(**overrides: Any) -> GroupRule:
    """Umbrellas, tables and chairs standing together in 2 of the last 3 visits."""
    fields = {
        "name": "stall",
        "kind": "road_occupying_business",
        "classes": frozenset({"umbrella", "dining table", "chair"}),
        "min_confidence": 0.3,
        "visits": 2,
        "of": 3,
    }
    return _rule(GroupRule, fields, overrides)
