"""A violation: what a rule concluded about one object in one zone, ready to become a case."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import numpy as np

from citywatch.vision.boxes import Box
from citywatch.vision.frame import Frame


class Member(NamedTuple):
    """One object of a group violation (combination evidence: umbrella + table + chairs)."""

    class_name: str
    confidence: float
    box: Box
    """xyxy in pixels of the violation's frame."""


@dataclass(frozen=True, eq=False)
class Violation:
    """One rule firing on one object (or group of objects) in one zone of one preset."""

    kind: str
    """Taxonomy key, for example ``motor_vehicle_illegal_parking``."""
    code: str
    """GB/T 47678.5 problem code, for example ``09009``."""
    rule: str
    """Name of the configured rule that fired."""
    zone: str
    class_name: str
    confidence: float
    box: Box
    """xyxy in pixels of `frame`."""
    first_seen: datetime
    last_seen: datetime
    frame: Frame
    """The frame the rule fired on: the evidence is rendered from it."""
    zone_polygon: np.ndarray
    """N×2 int32 pixel polygon of the zone in `frame`, for drawing."""
    track_id: int | None = None
    """Id of the object within its rule and zone: a ByteTrack id, or the id of a stay or site kept by overlap."""
    model_version: str = ""
    members: tuple[Member, ...] = ()
    """The objects of a group violation (their union is `box`); empty for a single object."""
    seen_in: tuple[int, int] | None = None
    """(k, n): seen in k of the last n visits, for rules judged across visits."""

    def __post_init__(self) -> None:
        x1, y1, x2, y2 = self.box
        if not (x2 > x1 and y2 > y1):
            raise ValueError(f"Violation box must be xyxy with x2>x1 and y2>y1; got {self.box}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"Violation confidence must be in [0, 1]; got {self.confidence}")
        if self.last_seen < self.first_seen:
            raise ValueError(f"Violation last_seen {self.last_seen} is before first_seen {self.first_seen}")
        if self.seen_in is not None and not 1 <= self.seen_in[0] <= self.seen_in[1]:
            raise ValueError(f"Violation seen_in must be (k, n) with 1 <= k <= n; got {self.seen_in}")
        for member in self.members:
            if not (member.box[2] >= member.box[0] and member.box[3] >= member.box[1]):
                raise ValueError(f"Violation member box must be xyxy; got {member.box} ({member.class_name})")

    @property
    def camera_id(self) -> str:
        return self.frame.camera_id

    @property
    def preset_id(self) -> str | None:
        return self.frame.preset_id

    @property
    def dwell_seconds(self) -> float:
        return (self.last_seen - self.first_seen).total_seconds()
