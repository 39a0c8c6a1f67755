"""Rules judged across visits: persistence (seen in k of the last n visits) and groups (combination evidence).

A visit is a short burst of frames of one preset (see `PresetScene.begin_visit`). During a visit each frame's
detections are collected into *sightings*, one per place; at the end of the visit the sightings are matched by
box overlap to the *sites* remembered from earlier visits of the preset, every site's history gets one more
entry (seen or not), and a site seen in at least k of the last n visits fires with the best frame of this visit
as evidence. Garbage piles and stalls are judged this way: minutes apart, not frame to frame.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

import numpy as np
import supervision as sv

from citywatch.vision.boxes import Box, as_box
from citywatch.vision.detections import class_names, confidence_or_ones
from citywatch.vision.dwell import match_by_overlap
from citywatch.vision.frame import Frame
from citywatch.vision.rule_state import RuleState
from citywatch.vision.rules import GroupRule, VisitRule
from citywatch.vision.violation import Member, Violation


def group_boxes(
    xyxy: np.ndarray, names: list[str], *, distance: float, min_members: int, min_classes: int
) -> list[np.ndarray]:
    """Indices of the groups of boxes standing together, each with enough members and distinct classes.

    Two boxes are neighbours when they are of different classes and the gap between them (0 if they overlap;
    the larger of the horizontal and vertical gaps otherwise) is at most `distance` × the taller one's height,
    so the reach scales with the objects' size in the picture, near or far. Boxes of one class join only
    through a member of another class: a crowd of people crossing the street, or a row of chairs, is not a
    group by itself (a crowd chained person to person made one frame-wide "stall" on the crosswalk clip).
    Groups are the connected components of that graph, found by min-label propagation: one vectorised pass
    per round, as many rounds as the longest chain.
    """
    boxes = np.asarray(xyxy, dtype=float).reshape(-1, 4)
    n = len(boxes)
    if n < min_members:
        return []
    x1, y1, x2, y2 = boxes.T
    gap_x = np.maximum(x1[:, None] - x2[None, :], x1[None, :] - x2[:, None])
    gap_y = np.maximum(y1[:, None] - y2[None, :], y1[None, :] - y2[:, None])
    gap = np.clip(np.maximum(gap_x, gap_y), 0, None)
    height = y2 - y1
    names_array = np.asarray(names)
    adjacent = gap <= distance * np.maximum(height[:, None], height[None, :])
    adjacent &= names_array[:, None] != names_array[None, :]
    np.fill_diagonal(adjacent, True)
    labels = np.arange(n)
    while True:
        new = np.where(adjacent, labels[None, :], n).min(axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
    groups = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) >= min_members and len(set(names_array[members].tolist())) >= min_classes:
            groups.append(members)
    return groups


@dataclass
class _Sighting:
    """The best view of one place during one visit."""

    box: Box
    class_name: str
    confidence: float
    members: tuple[Member, ...]
    frame: Frame
    first_at: datetime
    labels: Counter[str] = field(default_factory=Counter)
    """Labels of the place in this visit's frames, one per frame that showed it."""

    def score(self) -> tuple[int, float]:
        return (len(self.members), self.confidence)


@dataclass
class _Site:
    """A place where an object (or group) has been seen, with one entry per visit since: seen or not."""

    key: int
    box: Box
    first_seen: datetime
    history: deque[bool]
    reported_at: datetime | None = None
    labels: Counter[str] = field(default_factory=Counter)
    """Labels seen at the place over its visits: the violation names the commonest."""


@dataclass
class VisitState(RuleState[VisitRule]):
    """A persistence or group rule on one zone of one preset: collects during a visit, decides at its end."""

    _sites: dict[int, _Site] = field(default_factory=dict)
    _sightings: list[_Sighting] | None = None
    _frames: int = 0
    _visits: int = 0
    _next_key: int = 1

    @property
    def watching(self) -> int:
        """Places remembered from recent visits."""
        return len(self._sites)

    @property
    def in_visit(self) -> bool:
        return self._sightings is not None

    def clear(self) -> None:
        """Forget every site and any visit in progress."""
        self._sites.clear()
        self._sightings = None
        self._frames = 0
        self._visits = 0

    def begin(self) -> None:
        if self._sightings is not None:
            raise RuntimeError(f"rule {self.rule.name!r} zone {self.zone!r}: a visit is already open")
        self._sightings = []
        self._frames = 0

    def collect(self, frame: Frame, detections: sv.Detections) -> None:
        """Feed one frame's detections inside the zone (any class) during a visit."""
        if self._sightings is None:
            raise RuntimeError(f"rule {self.rule.name!r} zone {self.zone!r}: collect() outside a visit")
        if not self.rule.is_active(frame.captured_at):
            self._sites.clear()  # outside its hours a rule sees nothing; persistence starts again at opening
            return
        self._frames += 1
        chosen = cast(sv.Detections, detections[self.rule.select(detections)])
        for candidate in self._candidates(frame, chosen):
            self._merge(candidate)

    def end(self) -> list[Violation]:
        """Close the visit: update every site's history and return the violations it decides.

        A visit without any frame (the camera failed, or the rule was outside its hours) is not a visit for this
        rule: it neither counts as seen nor as not seen.
        """
        if self._sightings is None:
            raise RuntimeError(f"rule {self.rule.name!r} zone {self.zone!r}: end() without begin()")
        sightings, self._sightings = self._sightings, None
        if self._frames == 0:
            return []
        self._visits += 1
        span = min(self.rule.of, self._visits)
        keys = list(self._sites)
        site_boxes = np.array([self._sites[k].box for k in keys], dtype=float).reshape(-1, 4)
        sighting_boxes = np.array([s.box for s in sightings], dtype=float).reshape(-1, 4)
        pairs = match_by_overlap(site_boxes, sighting_boxes, self.rule.min_overlap)
        seen = {keys[r]: sightings[c] for r, c in pairs}
        for key in keys:
            site = self._sites[key]
            site.history.append(key in seen)
            if key in seen:
                site.box = seen[key].box
                site.labels.update(seen[key].labels)
            elif not any(site.history):
                del self._sites[key]  # unseen for `of` visits: it is gone
        matched = {c for _, c in pairs}
        for index, sighting in enumerate(sightings):
            if index not in matched:
                history = deque([False] * (span - 1) + [True], maxlen=self.rule.of)
                site = _Site(self._next_key, sighting.box, sighting.first_at, history, labels=Counter(sighting.labels))
                self._sites[site.key] = site
                seen[site.key] = sighting
                self._next_key += 1
        return [v for key, sighting in seen.items() if (v := self._fire(self._sites[key], sighting, span))]

    def _candidates(self, frame: Frame, detections: sv.Detections) -> list[_Sighting]:
        now = frame.captured_at
        names = class_names(detections)
        confidence = confidence_or_ones(detections)
        if not isinstance(self.rule, GroupRule):
            return [
                _Sighting(as_box(row), name, float(conf), (), frame, now)
                for row, name, conf in zip(detections.xyxy, names, confidence, strict=True)
            ]
        candidates = []
        for group in group_boxes(
            detections.xyxy,
            names,
            distance=self.rule.group_distance,
            min_members=self.rule.min_members,
            min_classes=self.rule.min_classes,
        ):
            members = tuple(Member(names[i], float(confidence[i]), as_box(detections.xyxy[i])) for i in group)
            union = detections.xyxy[group]
            box = (
                float(union[:, 0].min()),
                float(union[:, 1].min()),
                float(union[:, 2].max()),
                float(union[:, 3].max()),
            )
            label = "+".join(sorted({m.class_name for m in members}))
            mean_confidence = float(np.mean([m.confidence for m in members]))
            candidates.append(_Sighting(box, label, mean_confidence, members, frame, now))
        return candidates

    def _merge(self, candidate: _Sighting) -> None:
        """Fold a frame's candidate into this visit's sighting of the same place, keeping the best view."""
        assert self._sightings is not None
        boxes = np.array([s.box for s in self._sightings], dtype=float).reshape(-1, 4)
        pairs = match_by_overlap(boxes, np.array([candidate.box], dtype=float), self.rule.min_overlap)
        if not pairs:
            candidate.labels[candidate.class_name] += 1
            self._sightings.append(candidate)
            return
        current = self._sightings[pairs[0][0]]
        current.labels[candidate.class_name] += 1
        if candidate.score() > current.score():
            candidate.first_at, candidate.labels = current.first_at, current.labels
            self._sightings[pairs[0][0]] = candidate

    def _fire(self, site: _Site, sighting: _Sighting, span: int) -> Violation | None:
        count = sum(site.history)
        if count < self.rule.visits:
            return None
        now = sighting.frame.captured_at
        if not self._due(site.reported_at, now):
            return None
        site.reported_at = now
        return self._violation(
            sighting.frame,
            track_id=site.key,
            class_name=site.labels.most_common(1)[0][0] if site.labels else sighting.class_name,
            confidence=sighting.confidence,
            box=sighting.box,
            first_seen=min(site.first_seen, now),
            members=sighting.members,
            seen_in=(count, span),
        )
