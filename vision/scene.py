"""One preset of one camera: its tracker, its zones and the rules watching each zone.

A frame's path: detections → tracker (ids across samples, only when a rule follows tracks) → each zone's
anchor test → each rule's state.

Visits. A PTZ patrol looks at a preset in short bursts ("visits") minutes apart. It brackets each burst:

    scene.begin_visit(arrived_at)          # the camera settled on this preset
    for frame, detections in burst:
        violations += scene.observe(frame, detections)   # dwell and presence fire here, frame by frame
    violations += scene.end_visit()        # persistence and group rules decide here, once per visit

`begin_visit` restarts the tracker (the camera was elsewhere: track ids mean nothing across the gap), so a
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


def patrol_tracker(lost_after_s: float = 20.0) -> ByteTrackTracker:
    """A ByteTrack tuned for patrol sampling (about one frame a second, not 30).

    Tracks are matched on frame timestamps, so a parked car keeps its id while it is briefly occluded for
    up to `lost_after_s`; new tracks start from moderate confidences because far vehicles score ~0.3-0.5
    with a nano model.
    """
    return ByteTrackTracker(
        lost_track_buffer=round(30 * lost_after_s),  # the tracker counts this buffer in 30 fps frames
        track_activation_threshold=0.3,
        high_conf_det_threshold=0.45,
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
        tracker: ByteTrackTracker | None = None,
        model_version: str = "",
    ) -> None:
        self.camera_id = camera_id
        self.preset_id = preset_id
        self.zones = tuple(zones)
        self.tracker = tracker if tracker is not None else patrol_tracker()
        self.model_version = model_version
        self._needs_tracks = any(
            isinstance(rule, FrameRule) and rule.follows_tracks() for watched in self.zones for rule in watched.rules
        )
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

        Restarts the tracker and forgets dwell-by-track stays; keeps what overlap and visit rules remember.
        """
        if at.tzinfo is None or at.utcoffset() != timedelta(0):
            raise ValueError(f"begin_visit: `at` must be timezone-aware UTC; got {at!r}")
        if self._visit_at is not None:
            raise RuntimeError(
                f"camera {self.camera_id!r} preset {self.preset_id!r}: begin_visit at {at.isoformat()} while the "
                f"visit begun at {self._visit_at.isoformat()} is still open (call end_visit first)"
            )
        self.tracker.reset()
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
        tracked = sv.Detections.empty()
        if self._needs_tracks:
            tracked = self.tracker.update(detections, timestamp=frame.captured_at.timestamp())
            if tracked.tracker_id is not None and len(tracked):
                tracked = cast(sv.Detections, tracked[tracked.tracker_id >= 0])  # -1: not yet confirmed
        violations: list[Violation] = []
        for watched in self.zones:
            inside = cast(sv.Detections, detections[watched.zone.contains(detections, frame.width, frame.height)])
            for rule in watched.rules:
                state = self._state(watched.zone, rule, frame)
                if isinstance(state, VisitState):
                    violations.extend(self._visit_update(state, frame, inside))
                elif isinstance(state, DwellState):
                    in_zone = watched.zone.contains(tracked, frame.width, frame.height)
                    violations.extend(state.update(frame, cast(sv.Detections, tracked[in_zone])))
                else:
                    violations.extend(state.update(frame, inside))
        return violations

    def reset(self) -> None:
        """Forget everything: tracks, stays, visit histories, and any open visit."""
        self.tracker.reset()
        self._states.clear()
        self._visit_at = None

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
