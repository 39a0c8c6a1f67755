"""One preset of one camera: its zones, the rules watching each zone, and a tracker per rule that follows tracks.

A frame's path, per rule: the rule's candidates (its classes, plausible boxes, one per object: `Rule.candidates`)
→ the rule's own tracker (only a dwell by track) → each zone's anchor test → the rule's state.

Visits. A PTZ patrol looks at a preset in short bursts ("visits") minutes apart. It brackets each burst:

    scene.begin_visit(arrived_at)          # the camera settled on this preset
    for frame, detections in burst:
        violations += scene.observe(frame, detections)   # dwell and presence fire here, frame by frame
    violations += scene.end_visit()        # persistence and group rules decide here, once per visit

`begin_visit` restarts the trackers (the camera was elsewhere: track ids mean nothing across the gap), so a
dwell by track never spans visits; a dwell by overlap and presence remember their objects across visits for
their `max_gap`. A fixed camera never calls them: outside a visit every `observe()` is a one-frame visit, so
persistence rules then count samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

import supervision as sv
from trackers import ByteTrackTracker

from citywatch.vision.dwell import DwellState, OverlapState
from citywatch.vision.frame import Frame
from citywatch.vision.persistence import VisitState
from citywatch.vision.rules import FrameRule, Rule, VisitRule
from citywatch.vision.violation import Violation
from citywatch.vision.zones import Zone

State = DwellState | OverlapState | VisitState


@dataclass(frozen=True)
class WatchedZone:
    zone: Zone
    rules: tuple[Rule, ...]


TRACK_MEMORY_S = 20.0
"""How long a tracker keeps the id of a track it lost (a parked car briefly occluded). The stay itself ends after
the rule's `max_gap`; a track back within this time keeps its id, so its new stay starts at once."""


def rule_tracker(rule: FrameRule) -> ByteTrackTracker:
    """The ByteTrack of one dwell rule by track; its confidence thresholds are the rule's (see `DwellRule`).

    A track starts from a detection scoring at least `min_confidence` (ByteTrack's activation and high-score
    thresholds both) and is confirmed at its next sighting; lower-scoring detections, down to the detector's
    `conf`, only continue tracks. Tracks are matched on frame timestamps, so patrol rates of a frame every few
    seconds work, at any overlap (IoU ≥ 0.1): a parked vehicle barely moves between samples.
    """
    return ByteTrackTracker(
        lost_track_buffer=round(30 * TRACK_MEMORY_S),  # the tracker counts this buffer in 30 fps frames
        track_activation_threshold=rule.min_confidence,
        high_conf_det_threshold=rule.min_confidence,
        minimum_consecutive_frames=1,
        minimum_iou_threshold=0.1,
    )


class PresetScene:
    """Turns a preset's frames and detections into violations."""

    def __init__(
        self,
        camera_id: str,
        preset_id: str | None,
        zones: Sequence[WatchedZone],
        *,
        model_version: str = "",
    ) -> None:
        self.camera_id = camera_id
        self.preset_id = preset_id
        self.zones = tuple(zones)
        self.model_version = model_version
        self.trackers: dict[str, ByteTrackTracker] = {
            rule.name: rule_tracker(rule)
            for watched in self.zones
            for rule in watched.rules
            if isinstance(rule, FrameRule) and rule.follows_tracks()
        }
        """Rule name → its tracker, for every dwell rule by track."""
        self._confirmed: dict[str, sv.Detections] = {}
        # Rule states are created per resolution-independent zone; the polygon for drawing is filled lazily.
        self._states: dict[tuple[str, str], State] = {}
        self._visit_at: datetime | None = None

    @property
    def in_visit(self) -> bool:
        return self._visit_at is not None

    def begin_visit(self, at: datetime) -> None:
        """The camera has settled on this preset at `at` (tz-aware UTC); frames of this visit follow.

        `at` is not a bound on the frames' times: a latest-frame reader may hand out a frame captured a few
        milliseconds before the call.

        Restarts the trackers and forgets dwell-by-track stays; keeps what overlap and visit rules remember.
        """
        if at.tzinfo is None or at.utcoffset() != timedelta(0):
            raise ValueError(f"begin_visit: `at` must be timezone-aware UTC; got {at!r}")
        if self._visit_at is not None:
            raise RuntimeError(
                f"camera {self.camera_id!r} preset {self.preset_id!r}: begin_visit at {at.isoformat()} while the "
                f"visit begun at {self._visit_at.isoformat()} is still open (call end_visit first)"
            )
        self._reset_trackers()
        for key in [k for k, state in self._states.items() if isinstance(state, DwellState)]:
            del self._states[key]
        self._visit_at = at
        for state in self._visit_states():
            state.begin()

    def end_visit(self) -> list[Violation]:
        """Close the visit: the persistence and group violations it decides (dwell and presence fired already)."""
        if self._visit_at is None:
            raise RuntimeError(f"camera {self.camera_id!r} preset {self.preset_id!r}: end_visit without begin_visit")
        self._visit_at = None
        violations: list[Violation] = []
        for state in self._visit_states():
            if state.in_visit:
                violations.extend(state.end())
        return violations

    def observe(self, frame: Frame, detections: sv.Detections) -> list[Violation]:
        """One frame: the violations that fire on it (outside a visit, visit rules decide on it too)."""
        if (frame.camera_id, frame.preset_id) != (self.camera_id, self.preset_id):
            raise ValueError(
                f"frame of camera {frame.camera_id!r} preset {frame.preset_id!r} fed to the scene of "
                f"camera {self.camera_id!r} preset {self.preset_id!r}"
            )
        violations: list[Violation] = []
        seen: dict[str, sv.Detections] = {}
        self._confirmed.clear()
        for watched in self.zones:
            for rule in watched.rules:
                mine = seen.get(rule.name)
                if mine is None:
                    mine = seen[rule.name] = self._follow(
                        rule, frame, rule.candidates(detections, frame.width, frame.height)
                    )
                inside = cast(sv.Detections, mine[watched.zone.contains(mine, frame.width, frame.height)])
                state = self._state(watched.zone, rule, frame)
                if isinstance(state, VisitState):
                    violations.extend(self._visit_update(state, frame, inside))
                else:
                    violations.extend(state.update(frame, inside))
        return violations

    def confirmed(self, rule: str) -> sv.Detections:
        """The last observed frame's detections of rule `rule` that continue a confirmed track (none if the rule
        does not follow tracks): what `citywatch replay` tells "track never confirmed" by."""
        return self._confirmed.get(rule, sv.Detections.empty())

    def _follow(self, rule: Rule, frame: Frame, candidates: sv.Detections) -> sv.Detections:
        """A dwell rule by track: its candidates that continue a confirmed track, with their ids; else as given."""
        tracker = self.trackers.get(rule.name)
        if tracker is None:
            return candidates
        tracked = tracker.update(candidates, timestamp=frame.captured_at.timestamp())
        if tracked.tracker_id is not None and len(tracked):
            tracked = cast(sv.Detections, tracked[tracked.tracker_id >= 0])  # -1: not yet confirmed
        self._confirmed[rule.name] = tracked
        return tracked

    def reset(self) -> None:
        """Forget everything: tracks, stays, visit histories, and any open visit."""
        self._reset_trackers()
        self._states.clear()
        self._visit_at = None

    def _reset_trackers(self) -> None:
        for tracker in self.trackers.values():
            tracker.reset()
        self._confirmed.clear()

    def _visit_update(self, state: VisitState, frame: Frame, inside: sv.Detections) -> list[Violation]:
        if self._visit_at is not None:
            if not state.in_visit:  # first frame of a rule state created during this visit
                state.begin()
            state.collect(frame, inside)
            return []
        state.begin()  # no visit open: this frame is a visit of its own
        state.collect(frame, inside)
        return state.end()

    def _visit_states(self) -> list[VisitState]:
        return [state for state in self._states.values() if isinstance(state, VisitState)]

    def _state(self, zone: Zone, rule: Rule, frame: Frame) -> State:
        key = (zone.name, rule.name)
        state = self._states.get(key)
        if state is None:
            polygon = zone.pixels(frame.width, frame.height)
            if isinstance(rule, VisitRule):
                state = VisitState(rule, zone.name, polygon, self.model_version)
            elif isinstance(rule, FrameRule) and rule.follows_tracks():
                state = DwellState(rule, zone.name, polygon, self.model_version)
            elif isinstance(rule, FrameRule):
                state = OverlapState(rule, zone.name, polygon, self.model_version)
            else:
                raise TypeError(f"rule {rule.name!r}: a {type(rule).__name__} is neither a FrameRule nor a VisitRule")
            self._states[key] = state
        return state
