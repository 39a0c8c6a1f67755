"""Per-frame rule states: dwell by track, dwell by box overlap, and presence.

Each state watches one rule on one zone of one preset and is fed the detections whose anchor lies in the zone.
Time comes from the frame, never the wall clock.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

import numpy as np
import supervision as sv

from citywatch.vision.boxes import Box, as_box
from citywatch.vision.detections import class_names, confidence_or_ones
from citywatch.vision.frame import Frame
from citywatch.vision.rule_state import RuleState
from citywatch.vision.rules import FrameRule
from citywatch.vision.violation import Violation


@dataclass
class _Stay:
    first_seen: datetime
    last_seen: datetime
    box: Box
    confidence: float
    first_box: Box
    """Where the object was first seen: overlap identity matches against it, so a creeping object drifts off."""
    labels: Counter[str] = field(default_factory=Counter)
    """How often each label was seen on the object: a vehicle flickering car/truck is named by the commoner."""
    reported_at: datetime | None = None
    missed: int = 0
    """Consecutive samples without the object (overlap identity)."""

    @classmethod
    def start(cls, now: datetime, box: Box, name: str, confidence: float) -> _Stay:
        return cls(now, now, box, confidence, box, Counter({name: 1}))

    def seen(self, now: datetime, box: Box, name: str, confidence: float) -> None:
        self.last_seen, self.box, self.confidence = now, box, confidence
        self.labels[name] += 1

    @property
    def class_name(self) -> str:
        """The label seen most often (the first seen of equally common ones)."""
        return self.labels.most_common(1)[0][0]


@dataclass
class _StayStateBase(RuleState[FrameRule]):
    """Stays of objects keyed by an id; subclasses say how a detection finds its stay."""

    _stays: dict[int, _Stay] = field(default_factory=dict)

    @property
    def watching(self) -> int:
        return len(self._stays)

    def clear(self) -> None:
        self._stays.clear()

    def _forget_departed(self, now: datetime) -> None:
        for key in [k for k, stay in self._stays.items() if now - stay.last_seen > self.rule.max_gap]:
            del self._stays[key]

    def _fire(self, frame: Frame) -> list[Violation]:
        now = frame.captured_at
        fired = []
        for key, stay in self._stays.items():
            # Only report objects seen in this very frame: the evidence must show them.
            if stay.last_seen != now or now - stay.first_seen < self.rule.fires_after():
                continue
            if not self._due(stay.reported_at, now):
                continue
            stay.reported_at = now
            fired.append(
                self._violation(
                    frame,
                    track_id=key,
                    class_name=stay.class_name,
                    confidence=stay.confidence,
                    box=stay.box,
                    first_seen=stay.first_seen,
                )
            )
        return fired


@dataclass
class DwellState(_StayStateBase):
    """A dwell rule by track on one zone: remembers each tracked object's stay.

    A stay starts at the first sample where the tracker confirms the object (ByteTrack confirms on the second
    sighting), so the dwell is measured conservatively: a case is never filed early.
    """

    def update(self, frame: Frame, detections: sv.Detections) -> list[Violation]:
        """Feed the tracked detections inside the zone (the rule's candidates); returns the violations firing now."""
        now = frame.captured_at
        if not self.rule.is_active(now):
            self._stays.clear()  # outside its hours a rule sees nothing; a stay starts again at opening
            return []
        if detections.tracker_id is None:
            raise ValueError(f"rule {self.rule.name!r}: detections must be tracked (tracker_id is None)")
        chosen = cast(sv.Detections, detections[self.rule.select(detections)])
        self._forget_departed(now)  # first: an object back after a long gap starts a new stay
        assert chosen.tracker_id is not None
        for box, confidence, track_id, name in zip(
            chosen.xyxy, confidence_or_ones(chosen), chosen.tracker_id, class_names(chosen), strict=True
        ):
            xyxy = as_box(box)
            stay = self._stays.get(int(track_id))
            if stay is None:
                self._stays[int(track_id)] = _Stay.start(now, xyxy, name, float(confidence))
            else:
                stay.seen(now, xyxy, name, float(confidence))
        return self._fire(frame)


def match_by_overlap(previous: np.ndarray, current: np.ndarray, min_overlap: float) -> list[tuple[int, int]]:
    """One-to-one (previous, current) index pairs, best IoU first, each pair with IoU >= `min_overlap`.

    Greedy on the sorted IoU matrix: zones hold a handful of objects, and greedy equals the optimal assignment
    whenever objects do not overlap each other much, which is the case for things standing side by side.
    """
    if len(previous) == 0 or len(current) == 0:
        return []
    iou = sv.box_iou_batch(np.asarray(previous, dtype=float), np.asarray(current, dtype=float))
    rows, cols = np.nonzero(iou >= min_overlap)
    order = np.argsort(-iou[rows, cols], kind="stable")
    pairs: list[tuple[int, int]] = []
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    for r, c in zip(rows[order].tolist(), cols[order].tolist(), strict=True):
        if r not in used_rows and c not in used_cols:
            used_rows.add(r)
            used_cols.add(c)
            pairs.append((r, c))
    return pairs


@dataclass
class OverlapState(_StayStateBase):
    """A frame rule that recognises objects by box overlap (dwell by overlap, presence) on one zone.

    A detection continues the stay whose *first* box it overlaps best (IoU ≥ the rule's `min_overlap`); any
    other detection starts a new stay with a new id. Needs no tracker ids, so it works on samples seconds or
    minutes apart, and a stay outlives a visit when `max_gap` is longer than the patrol interval.
    """

    _next_id: int = 1

    def update(self, frame: Frame, detections: sv.Detections) -> list[Violation]:
        """Feed the detections inside the zone (the rule's candidates, or any); returns the violations firing now."""
        now = frame.captured_at
        if not self.rule.is_active(now):
            self._stays.clear()
            return []
        chosen = cast(sv.Detections, detections[self.rule.select(detections)])
        self._forget_departed(now)
        keys = list(self._stays)
        first_boxes = np.array([self._stays[k].first_box for k in keys], dtype=float).reshape(-1, 4)
        pairs = match_by_overlap(first_boxes, chosen.xyxy, self.rule.min_overlap)
        matched = {c: keys[r] for r, c in pairs}
        self._count_misses(keys, {keys[r] for r, _ in pairs})
        for index, (box, confidence, name) in enumerate(
            zip(chosen.xyxy, confidence_or_ones(chosen), class_names(chosen), strict=True)
        ):
            xyxy = as_box(box)
            key = matched.get(index)
            if key is None:
                self._stays[self._next_id] = _Stay.start(now, xyxy, name, float(confidence))
                self._next_id += 1
            else:
                self._stays[key].seen(now, xyxy, name, float(confidence))
        return self._fire(frame)

    def _count_misses(self, keys: list[int], seen: set[int]) -> None:
        """A stay missed in more than `misses_allowed()` samples in a row has left (its spot was seen free)."""
        limit = self.rule.misses_allowed()
        for key in keys:
            stay = self._stays[key]
            stay.missed = 0 if key in seen else stay.missed + 1
            if limit is not None and stay.missed > limit:
                del self._stays[key]
