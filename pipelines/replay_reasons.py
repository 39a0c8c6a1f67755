"""Seen but not filed, and why: what `citywatch replay` shows an operator tuning a zone.

Computed beside the scene from the public zone and rule objects (the scene itself is not changed): every
detection of an analysed frame gets the first reason below that applies, judged against every (zone, rule)
of the preset that looks at its class. A detection none of them stops is a *candidate*: candidates are
grouped into sightings of one object (same zone and rule, boxes overlapping); a sighting no violation ever
covered ends as "track never confirmed" (a dwell rule by track whose tracker never confirmed the object, read
from the scene), "dwell too short" or "too few visits". Violations that reached the filer but filed nothing
new are explained by the filing's outcome (attached, suppressed by the cooldown, held by a warning).

One function per reason; each returns the reason's detail text, or None when the reason does not apply.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

import numpy as np
import supervision as sv

from citywatch.vision.boxes import Box, box_iou
from citywatch.vision.frame import Frame
from citywatch.vision.rules import DwellRule, PersistenceRule, Rule
from citywatch.vision.scene import WatchedZone
from citywatch.vision.violation import Violation

Pair = tuple[WatchedZone, Rule]

TITLES = {
    "unused_class": "class not used by any rule of this preset",
    "below_min_confidence": "below the rule's min_confidence",
    "box_implausible": "box implausible (size or shape outside the rule's limits)",
    "outside_zones": "outside every zone, by its anchor point",
    "rule_inactive": "rule not active at that time of day",
    "track_unconfirmed": "track never confirmed (never seen at the tracker's threshold in two samples in a row)",
    "dwell_too_short": "dwell too short when last seen",
    "too_few_visits": "seen in too few visits",
    "attached": "attached to a case already filed",
    "suppressed": "same problem's case closed recently (cooldown)",
    "held_by_warning": "warned and held (grace not over)",
}
"""Reason key → what the report says; the order is the order reasons are checked and shown."""


@dataclass(frozen=True)
class Sighting:
    reason: str
    detail: str
    class_name: str
    confidence: float
    box: Box
    frame: Frame
    source: str


@dataclass
class _Object:
    """Candidates of one (zone, rule) that are one object: boxes overlapping, gaps within the rule's max_gap."""

    pair: Pair
    box: Box
    first: datetime
    last: datetime
    best: Sighting
    fired: bool = False
    confirmed: bool = False
    """A dwell rule by track: some sighting continued a track the rule's tracker had confirmed."""


def unused_class(class_name: str, pairs: Sequence[Pair]) -> str | None:
    if any(class_name in rule.classes for _, rule in pairs):
        return None
    return f"{class_name}: no rule of this preset looks at it"


def below_min_confidence(confidence: float, pairs: Sequence[Pair]) -> str | None:
    if any(confidence >= rule.min_confidence for _, rule in pairs):
        return None
    needed = min(rule.min_confidence for _, rule in pairs)
    names = ", ".join(sorted({rule.name for _, rule in pairs}))
    return f"{confidence:.3f} < {needed:.2f} ({names})"


def box_implausible(detection: sv.Detections, frame: Frame, pairs: Sequence[Pair]) -> str | None:
    if any(bool(rule.plausible(detection.xyxy, frame.width, frame.height)[0]) for _, rule in pairs):
        return None
    x1, y1, x2, y2 = (float(v) for v in detection.xyxy[0])
    area, aspect = (x2 - x1) * (y2 - y1) / (frame.width * frame.height), (x2 - x1) / max(y2 - y1, 1e-9)
    limits = "; ".join(
        f"{rule.name}: area {rule.min_area:g}–{rule.max_area:g}, aspect {rule.min_aspect:g}–{rule.max_aspect:g}"
        for rule in sorted({rule for _, rule in pairs}, key=lambda r: r.name)
    )
    return f"area {area:.4f} of the frame, aspect {aspect:.2f} ({limits})"


def outside_zones(detection: sv.Detections, frame: Frame, pairs: Sequence[Pair]) -> str | None:
    if any(bool(zone.zone.contains(detection, frame.width, frame.height)[0]) for zone, _ in pairs):
        return None
    return "anchor outside " + ", ".join(sorted({zone.zone.name for zone, _ in pairs}))


def rule_inactive(at: datetime, pairs: Sequence[Pair]) -> str | None:
    if any(rule.is_active(at) for _, rule in pairs):
        return None
    return ", ".join(sorted({rule.name for _, rule in pairs})) + f" not active at {at:%H:%M} UTC"


def track_unconfirmed(sighting: _Object, start_track_at: float | None) -> str | None:
    """`start_track_at`: the threshold of the rule's tracker (None: the rule does not follow tracks)."""
    if start_track_at is None or sighting.confirmed:
        return None
    return (
        f"{sighting.pair[1].name}'s tracker starts a track at {start_track_at:.2f} and confirms it at the next "
        "sample that shows it; this object never continued a confirmed track"
    )


def dwell_too_short(sighting: _Object) -> str | None:
    rule = sighting.pair[1]
    if not isinstance(rule, DwellRule):
        return None
    seen = (sighting.last - sighting.first).total_seconds()
    return f"seen {seen:.1f} s of the {rule.min_dwell.total_seconds():.0f} s {rule.name} needs"


def too_few_visits(sighting: _Object) -> str | None:
    rule = sighting.pair[1]
    if not isinstance(rule, PersistenceRule):
        return None
    return f"{rule.name} needs {rule.visits} of {rule.of} visits"


def filing_outcome(created: bool | None, suppressed: bool, case_id: int | None) -> tuple[str, str] | None:
    """None: a new case. Else (reason, detail) for a violation the filer did not file as new."""
    if created is None:
        return "held_by_warning", "the rule's warning holds it until its grace is over"
    if suppressed:
        return "suppressed", f"case {case_id} of the same problem was closed within the cooldown"
    if not created:
        return "attached", f"attached to case {case_id}"
    return None


@dataclass
class NearMisses:
    """Collects the reasons for one preset's frames; `groups()` gives them grouped, most confident first."""

    zones: Sequence[WatchedZone]
    start_track_at: Mapping[str, float]
    """Rule name → the threshold at which its tracker starts a track, for every dwell rule by track."""
    examples: int = 6
    counts: Counter[str] = field(default_factory=Counter)
    _top: dict[str, list[tuple[float, int, Sighting]]] = field(default_factory=dict)
    _objects: list[_Object] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)

    def observe(
        self, frame: Frame, detections: sv.Detections, source: str, confirmed: Callable[[str], sv.Detections]
    ) -> None:
        """One frame's detections, after the scene observed it: `confirmed(rule)` gives the detections that
        continued one of the rule's confirmed tracks in this frame."""
        names = detections.data.get("class_name", np.array([""] * len(detections)))
        pairs = [(zone, rule) for zone in self.zones for rule in zone.rules]
        for index in range(len(detections)):
            one = cast(sv.Detections, detections[index : index + 1])
            name, confidence = str(names[index]), float(one.confidence[0]) if one.confidence is not None else 1.0
            x1, y1, x2, y2 = (float(v) for v in one.xyxy[0])
            box: Box = (x1, y1, x2, y2)
            mine = [(z, r) for z, r in pairs if name in r.classes]
            reason = self._first_reason(name, confidence, one, frame, pairs, mine)
            if reason is not None:
                self.add(Sighting(reason[0], reason[1], name, confidence, box, frame, source))
                continue
            for zone, rule in mine:
                if confidence >= rule.min_confidence and bool(zone.zone.contains(one, frame.width, frame.height)[0]):
                    tracked = rule.name in self.start_track_at and _among(one.xyxy[0], confirmed(rule.name).xyxy)
                    sighting = Sighting("", "", name, confidence, box, frame, source)
                    self._candidate((zone, rule), sighting, tracked)

    def _first_reason(
        self, name: str, confidence: float, one: sv.Detections, frame: Frame, pairs: list[Pair], mine: list[Pair]
    ) -> tuple[str, str] | None:
        if (detail := unused_class(name, pairs)) is not None:
            return "unused_class", detail
        if (detail := below_min_confidence(confidence, mine)) is not None:
            return "below_min_confidence", detail
        confident = [(z, r) for z, r in mine if confidence >= r.min_confidence]
        if (detail := box_implausible(one, frame, confident)) is not None:
            return "box_implausible", detail
        confident = [(z, r) for z, r in confident if bool(r.plausible(one.xyxy, frame.width, frame.height)[0])]
        if (detail := outside_zones(one, frame, confident)) is not None:
            return "outside_zones", detail
        inside = [(z, r) for z, r in confident if bool(z.zone.contains(one, frame.width, frame.height)[0])]
        if (detail := rule_inactive(frame.captured_at, inside)) is not None:
            return "rule_inactive", detail
        return None

    def _candidate(self, pair: Pair, sighting: Sighting, tracked: bool) -> None:
        rule = pair[1]
        gap = rule.max_gap if isinstance(rule, DwellRule) else timedelta(hours=1)
        at = sighting.frame.captured_at
        for seen in reversed(self._objects):
            if seen.pair == pair and at - seen.last <= gap and box_iou(seen.box, sighting.box) >= 0.3:
                seen.box, seen.last, seen.confirmed = sighting.box, at, seen.confirmed or tracked
                if sighting.confidence > seen.best.confidence:
                    seen.best = sighting
                return
        self._objects.append(_Object(pair, sighting.box, at, at, sighting, confirmed=tracked))

    def violation(self, violation: Violation) -> None:
        """A violation fired: the sightings it covers are explained by its filing, not by the rules."""
        for seen in self._objects:
            zone, rule = seen.pair
            if (zone.zone.name, rule.name) == (violation.zone, violation.rule):
                seen.fired = seen.fired or box_iou(seen.box, violation.box) >= 0.3

    def add(self, sighting: Sighting) -> None:
        self.counts[sighting.reason] += 1
        top = self._top.setdefault(sighting.reason, [])
        item = (sighting.confidence, -next(self._order), sighting)
        if len(top) < self.examples:
            heapq.heappush(top, item)
        else:
            heapq.heappushpop(top, item)

    def finish(self) -> None:
        """Sightings no violation covered: track never confirmed, dwell too short, or too few visits."""
        for seen in self._objects:
            if seen.fired:
                continue
            reasons = (
                ("track_unconfirmed", track_unconfirmed(seen, self.start_track_at.get(seen.pair[1].name))),
                ("dwell_too_short", dwell_too_short(seen)),
                ("too_few_visits", too_few_visits(seen)),
            )
            for reason, detail in reasons:
                if detail is not None:
                    best = seen.best
                    self.add(
                        Sighting(reason, detail, best.class_name, best.confidence, best.box, best.frame, best.source)
                    )
                    break
        self._objects.clear()

    def groups(self) -> list[tuple[str, int, list[Sighting]]]:
        """(reason, count, most confident examples first), in the order of TITLES."""
        return [
            (reason, self.counts[reason], [s for _, _, s in sorted(self._top[reason], reverse=True)])
            for reason in TITLES
            if self.counts[reason]
        ]


def _among(box: np.ndarray, boxes: np.ndarray) -> bool:
    """Whether `box` is one of `boxes` (the tracker hands back the detections' own boxes)."""
    return bool(len(boxes)) and bool(np.any(np.all(np.isclose(np.asarray(boxes, dtype=float), box), axis=1)))
