"""One preset of one camera: its tracker, its zones and the rules watching each zone.

A frame's path: detections → tracker (ids across samples) → each zone's anchor test → each rule's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import supervision as sv
from trackers import ByteTrackTracker

from citywatch.vision.frame import Frame
from citywatch.vision.rules import DwellRule, DwellState
from citywatch.vision.violation import Violation
from citywatch.vision.zones import Zone


@dataclass(frozen=True)
class WatchedZone:
    zone: Zone
    rules: tuple[DwellRule, ...]


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
        # Rule states are created per resolution-independent zone; the polygon for drawing is filled lazily.
        self._states: dict[tuple[str, str], DwellState] = {}

    def observe(self, frame: Frame, detections: sv.Detections) -> list[Violation]:
        if (frame.camera_id, frame.preset_id) != (self.camera_id, self.preset_id):
            raise ValueError(
                f"frame of camera {frame.camera_id!r} preset {frame.preset_id!r} fed to the scene of "
                f"camera {self.camera_id!r} preset {self.preset_id!r}"
            )
        tracked = self.tracker.update(detections, timestamp=frame.captured_at.timestamp())
        if tracked.tracker_id is not None and len(tracked):
            tracked = cast(sv.Detections, tracked[tracked.tracker_id >= 0])  # -1: not yet confirmed
        violations: list[Violation] = []
        for watched in self.zones:
            inside = cast(sv.Detections, tracked[watched.zone.contains(tracked, frame.width, frame.height)])
            for rule in watched.rules:
                state = self._state(watched.zone, rule, frame)
                violations.extend(state.update(frame, inside))
        return violations

    def reset(self) -> None:
        """Forget tracks and stays: the camera left this preset and what it sees next is a new visit."""
        self.tracker.reset()
        self._states.clear()

    def _state(self, zone: Zone, rule: DwellRule, frame: Frame) -> DwellState:
        key = (zone.name, rule.name)
        state = self._states.get(key)
        if state is None:
            state = DwellState(rule, zone.name, zone.pixels(frame.width, frame.height), self.model_version)
            self._states[key] = state
        return state
