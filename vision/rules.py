"""Rules: when does an object in a zone become a violation.

A rule is a frozen description (`DwellRule`); its state for one zone of one preset lives in a `DwellState`.
Time always comes from the frame, so a recorded sequence replays to the same violations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import cast
from zoneinfo import ZoneInfo

import numpy as np
import supervision as sv

from citywatch.vision.frame import Frame
from citywatch.vision.taxonomy import kind as taxonomy_kind
from citywatch.vision.violation import Violation


@dataclass(frozen=True)
class ActiveWindow:
    """Daily local-time window in which a rule may fire; `start > end` wraps past midnight."""

    start: time
    end: time
    timezone: str = "Asia/Shanghai"

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(ZoneInfo(self.timezone)).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@dataclass(frozen=True)
class DwellRule:
    """An object of one of `classes` stays in the zone for at least `min_dwell`."""

    name: str
    kind: str
    """Taxonomy key of the violation this rule files."""
    classes: frozenset[str]
    min_dwell: timedelta
    min_confidence: float = 0.25
    max_gap: timedelta = timedelta(seconds=30)
    """An object unseen for longer than this has left; if it comes back, its dwell starts again."""
    repeat_every: timedelta = timedelta(minutes=1)
    """While the object stays, report it again this often, so its open case keeps its last-seen time."""
    active: ActiveWindow | None = None

    def __post_init__(self) -> None:
        taxonomy_kind(self.kind)  # raises with the list of known kinds
        if not self.classes:
            raise ValueError(f"rule {self.name!r}: classes must not be empty")
        if self.min_dwell < timedelta(0) or self.max_gap <= timedelta(0):
            raise ValueError(f"rule {self.name!r}: min_dwell must be >= 0 and max_gap > 0")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"rule {self.name!r}: min_confidence must be in [0, 1]; got {self.min_confidence}")

    def select(self, detections: sv.Detections) -> np.ndarray:
        """Boolean mask of the detections this rule looks at (class and confidence)."""
        names = detections.data.get("class_name")
        if names is None or len(detections) == 0:
            return np.zeros(len(detections), dtype=bool)
        wanted = np.isin(np.asarray(names), list(self.classes))
        confidence = detections.confidence
        if confidence is None:
            return wanted
        return wanted & (confidence >= self.min_confidence)


@dataclass
class _Stay:
    first_seen: datetime
    last_seen: datetime
    box: tuple[float, float, float, float]
    class_name: str
    confidence: float
    reported_at: datetime | None = None


@dataclass
class DwellState:
    """One dwell rule watching one zone: remembers each tracked object's stay.

    A stay starts at the first sample where the tracker confirms the object (ByteTrack confirms on the second
    sighting), so the dwell is measured conservatively: a case is never filed early.
    """

    rule: DwellRule
    zone: str
    zone_polygon: np.ndarray
    model_version: str = ""
    _stays: dict[int, _Stay] = field(default_factory=dict)

    def update(self, frame: Frame, detections: sv.Detections) -> list[Violation]:
        """Feed the tracked detections inside the zone (any class); returns the violations that fire now."""
        now = frame.captured_at
        if self.rule.active is not None and not self.rule.active.contains(now):
            self._stays.clear()  # outside its hours a rule sees nothing; a stay starts again at opening
            return []
        if detections.tracker_id is None:
            raise ValueError(f"rule {self.rule.name!r}: detections must be tracked (tracker_id is None)")
        chosen = cast(sv.Detections, detections[self.rule.select(detections)])
        self._forget_departed(now)  # first: an object back after a long gap starts a new stay
        self._remember(now, chosen)
        return self._fire(frame)

    @property
    def watching(self) -> int:
        return len(self._stays)

    def _remember(self, now: datetime, detections: sv.Detections) -> None:
        names = detections.data["class_name"] if len(detections) else []
        assert detections.tracker_id is not None
        for box, confidence, track_id, name in zip(
            detections.xyxy, _confidence_or_ones(detections), detections.tracker_id, names, strict=True
        ):
            xyxy = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
            stay = self._stays.get(int(track_id))
            if stay is None:
                self._stays[int(track_id)] = _Stay(now, now, xyxy, str(name), float(confidence))
            else:
                stay.last_seen, stay.box, stay.class_name = now, xyxy, str(name)
                stay.confidence = float(confidence)

    def _forget_departed(self, now: datetime) -> None:
        for track_id in [t for t, stay in self._stays.items() if now - stay.last_seen > self.rule.max_gap]:
            del self._stays[track_id]

    def _fire(self, frame: Frame) -> list[Violation]:
        now = frame.captured_at
        fired = []
        entry = taxonomy_kind(self.rule.kind)
        for track_id, stay in self._stays.items():
            # Only report objects seen in this very frame: the evidence must show them.
            if stay.last_seen != now or now - stay.first_seen < self.rule.min_dwell:
                continue
            if stay.reported_at is not None and now - stay.reported_at < self.rule.repeat_every:
                continue
            stay.reported_at = now
            fired.append(
                Violation(
                    kind=entry.key,
                    code=entry.code,
                    rule=self.rule.name,
                    zone=self.zone,
                    class_name=stay.class_name,
                    confidence=stay.confidence,
                    box=stay.box,
                    first_seen=stay.first_seen,
                    last_seen=stay.last_seen,
                    frame=frame,
                    zone_polygon=self.zone_polygon,
                    track_id=track_id,
                    model_version=self.model_version,
                )
            )
        return fired


def _confidence_or_ones(detections: sv.Detections) -> np.ndarray:
    if detections.confidence is None:
        return np.ones(len(detections), dtype=float)
    return detections.confidence
