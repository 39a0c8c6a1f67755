"""What every rule state holds (its rule, zone and model version) and how it words the violations it files."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

import numpy as np

from citywatch.vision.boxes import Box
from citywatch.vision.frame import Frame
from citywatch.vision.rules import Rule
from citywatch.vision.taxonomy import kind as taxonomy_kind
from citywatch.vision.violation import Member, Violation

R = TypeVar("R", bound=Rule)


@dataclass
class RuleState(Generic[R]):
    """One rule watching one zone of one preset; subclasses keep what the rule remembers between frames."""

    rule: R
    zone: str
    zone_polygon: np.ndarray
    """N×2 int32 pixel polygon of the zone, for drawing the evidence."""
    model_version: str = ""

    def _due(self, reported_at: datetime | None, now: datetime) -> bool:
        """Whether an object last reported at `reported_at` may be reported again at `now` (`repeat_every`)."""
        return reported_at is None or now - reported_at >= self.rule.repeat_every

    def _violation(
        self,
        frame: Frame,
        *,
        track_id: int,
        class_name: str,
        confidence: float,
        box: Box,
        first_seen: datetime,
        members: tuple[Member, ...] = (),
        seen_in: tuple[int, int] | None = None,
    ) -> Violation:
        """This rule's violation of one object (or group) on `frame`, last seen there."""
        entry = taxonomy_kind(self.rule.kind)
        return Violation(
            kind=entry.key,
            code=entry.code,
            rule=self.rule.name,
            zone=self.zone,
            class_name=class_name,
            confidence=confidence,
            box=box,
            first_seen=first_seen,
            last_seen=frame.captured_at,
            frame=frame,
            zone_polygon=self.zone_polygon,
            track_id=track_id,
            model_version=self.model_version,
            members=members,
            seen_in=seen_in,
        )
