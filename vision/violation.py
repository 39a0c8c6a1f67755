"""A violation: what a rule concluded about one object in one zone, ready to become a case."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from citywatch.vision.frame import Frame


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
    box: tuple[float, float, float, float]
    """xyxy in pixels of `frame`."""
    first_seen: datetime
    last_seen: datetime
    frame: Frame
    """The frame the rule fired on: the evidence is rendered from it."""
    zone_polygon: np.ndarray
    """N×2 int32 pixel polygon of the zone in `frame`, for drawing."""
    track_id: int | None = None
    model_version: str = ""

    def __post_init__(self) -> None:
        x1, y1, x2, y2 = self.box
        if not (x2 > x1 and y2 > y1):
            raise ValueError(f"Violation box must be xyxy with x2>x1 and y2>y1; got {self.box}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"Violation confidence must be in [0, 1]; got {self.confidence}")
        if self.last_seen < self.first_seen:
            raise ValueError(f"Violation last_seen {self.last_seen} is before first_seen {self.first_seen}")

    @property
    def camera_id(self) -> str:
        return self.frame.camera_id

    @property
    def preset_id(self) -> str | None:
        return self.frame.preset_id

    @property
    def dwell_seconds(self) -> float:
        return (self.last_seen - self.first_seen).total_seconds()
