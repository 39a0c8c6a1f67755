"""A camera's patrol: visit its presets on schedule and hand what the rules find to the sink.

One visit: go to the preset (PTZ) → wait until the head reports still → wait the preset's settle time → take
`samples` fresh frames `sample_every` apart → detect → that preset's `PresetScene` (between `begin_visit` and
`end_visit`) → sink. Frames are only read after the camera is still and settled, and the reader hands out only
pictures decoded after the request, so a frame taken while moving is never analysed.

A fixed camera is a patrol with one preset and no PTZ. Without a schedule it is visited back to back, and its
scene is never closed: tracks and stays carry on from sample to sample.

Errors are caught per visit and per sample, counted and reported; one bad frame, camera, detector call or sink
never stops the loop (nor any other camera's loop). A visit that could not run is recorded as missed with its
reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

import numpy as np
import supervision as sv

from citywatch.pipelines.camera import CameraHealth, CameraUnavailable
from citywatch.pipelines.ptz import PtzControl, PtzError, goto_and_wait
from citywatch.pipelines.schedule import CameraLeases, Clock, Missed, PatrolPlan, Schedule, Slot, SystemClock
from citywatch.vision.frame import Frame
from citywatch.vision.scene import PresetScene
from citywatch.vision.violation import Violation

log = logging.getLogger(__name__)

Detect = Callable[[np.ndarray], Awaitable[sv.Detections]]
"""Detects objects in one BGR image (the detector deployment batches concurrent calls)."""
Sink = Callable[[Violation], Awaitable[None]]
"""Takes a violation on to the cases (files or attaches it)."""
FrameTap = Callable[[Frame], object]
"""Sees every frame a visit reads, before detection (the cameras page's latest frames); must not block."""


class FrameSource(Protocol):
    """What a patrol needs from a camera stream (RtspReader, or a test double)."""

    camera_id: str
    url: str

    @property
    def health(self) -> CameraHealth: ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 10.0) -> None: ...

    def set_active(self, active: bool) -> None: ...

    def read(self, preset_id: str | None = None, timeout: float | None = None) -> Frame: ...


@dataclass(frozen=True)
class PresetVisit:
    """How one preset is visited."""

    preset_id: str
    scene: PresetScene
    token: str | None = None
    schedule: Schedule = field(default_factory=Schedule)
    samples: int = 5
    sample_every: float = 2.0
    settle: float = 2.0
    detect: Detect | None = None
    """This preset's detector (a preset may use another model than its camera); None: the patrol's."""
    detector: str | None = None
    """The name of that detector, for health reports and model-version updates."""


@dataclass(frozen=True)
class VisitRecord:
    camera_id: str
    preset_id: str
    due: datetime
    finished: datetime
    outcome: Literal["done", "missed"]
    reason: str | None = None
    frames: int = 0
    violations: int = 0
    move_s: float | None = None
    """Seconds from GotoPreset until the head reported still (PTZ cameras)."""

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["due"], data["finished"] = self.due.isoformat(), self.finished.isoformat()
        return data


@dataclass
class PatrolStats:
    samples: int = 0
    detections: int = 0
    violations: int = 0
    visits: int = 0
    missed: int = 0
    missed_reasons: Counter[str] = field(default_factory=Counter)
    late_samples: int = 0
    """Samples taken more than half a `sample_every` after their time (the box cannot keep up)."""
    camera_errors: int = 0
    detector_errors: int = 0
    sink_errors: int = 0
    tap_errors: int = 0
    resolution_resets: int = 0
    last_error: str | None = None
    last_sample_age_s: list[float] = field(default_factory=list)
    """Seconds from capture to the end of detection, last few samples (latest-frame semantics at work)."""

    def counts(self) -> dict[str, Any]:
        """The counters that add up over the camera's life (what survives a restart), JSON-ready."""
        return {name: getattr(self, name) for name in COUNTERS} | {"missed_reasons": dict(self.missed_reasons)}

    def add(self, counts: Mapping[str, Any]) -> None:
        """Add counts taken before (`counts()` of an earlier patrol of this camera) to these."""
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + int(counts.get(name, 0)))
        self.missed_reasons.update({str(k): int(v) for k, v in dict(counts.get("missed_reasons", {})).items()})


COUNTERS = tuple(f.name for f in fields(PatrolStats) if f.type == "int")
"""PatrolStats' int fields: counters that add up (samples, visits, missed, errors…)."""


class CameraPatrol:
    """Visits one camera's presets on their schedules, until cancelled."""

    def __init__(
        self,
        reader: FrameSource,
        presets: Sequence[PresetVisit],
        *,
        detect: Detect,
        sink: Sink,
        ptz: PtzControl | None = None,
        clock: Clock | None = None,
        move_timeout: float = 20.0,
        keep_open_for: float = 60.0,
        leases: CameraLeases | None = None,
        history: int = 50,
        tap: FrameTap | None = None,
    ) -> None:
        if not presets:
            raise ValueError(f"camera {reader.camera_id!r}: a patrol needs at least one preset")
        if ptz is None and len(presets) > 1:
            raise ValueError(f"camera {reader.camera_id!r}: several presets need PTZ control")
        self.reader = reader
        self.presets = {preset.preset_id: preset for preset in presets}
        self.detect = detect
        self.sink = sink
        self.ptz = ptz
        self.clock: Clock = clock or SystemClock()
        self.move_timeout = move_timeout
        self.keep_open_for = keep_open_for
        self.leases = leases or CameraLeases()
        self.tap = tap
        self.stats = PatrolStats()
        self.history: deque[VisitRecord] = deque(maxlen=history)
        self.current_preset: str | None = None
        self.plan = PatrolPlan(self.camera_id, [(p.preset_id, p.schedule) for p in presets], start=self.clock.now())
        self._sizes: dict[str, tuple[int, int]] = {}
        self._last_error_from: str | None = None
        """What `stats.last_error` is about (a counter's name, or a missed visit's kind): cleared when it works."""
        self.started_at = self.clock.now()
        self.counting_since = self.started_at
        """When the counters began: an earlier patrol's start once its counts were added (`PatrolCounters`)."""

    @property
    def camera_id(self) -> str:
        return self.reader.camera_id

    async def run(self) -> None:
        """Visit presets as they fall due, until cancelled. Refuses (CameraBusy) if another patrol drives it."""
        with self.leases.hold(self.camera_id, f"patrol {id(self):x}"):
            self.reader.start()
            try:
                while True:
                    await self.step()
            finally:
                await asyncio.to_thread(self.reader.stop)

    async def step(self) -> VisitRecord | None:
        """Run the visit due now, or wait for the next one. Never raises (except cancellation)."""
        try:
            slot, missed = self.plan.take(self.clock.now())
            for miss in missed:
                self._record_missed(miss)
            if slot is None:
                await self._idle_until(self.plan.next_due())
                return None
            record, next_free = await self.visit(slot)
            self.plan.finish(slot, next_free)
            return record
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug must not end the camera's patrol: report, pause, go on
            log.exception("camera %s: patrol step failed", self.camera_id)
            self._error("camera_errors", f"camera {self.camera_id!r}: patrol step failed: {error!r}")
            await self.clock.sleep(1.0)
            return None

    async def visit(self, slot: Slot) -> tuple[VisitRecord, datetime]:
        """One visit; returns its record and when the camera is free for the next one."""
        preset = self.presets[slot.preset_id]
        self.reader.start()
        self.reader.set_active(True)
        move_s = None
        if self.ptz is not None and preset.token is not None:
            try:
                move_s = await goto_and_wait(self.ptz, preset.token, still_timeout=self.move_timeout)
            except PtzError as error:
                self.current_preset = None  # where the head is now is unknown
                return self._missed(slot, f"PTZ: {error}"), self.clock.now()
            self._recovered("PTZ")
            if self.current_preset != preset.preset_id:
                log.debug("camera %s: at preset %s after %.1f s", self.camera_id, preset.preset_id, move_s)
            self.current_preset = preset.preset_id
            await self.clock.sleep(preset.settle)  # focus, exposure and the stream's own delay catch up
        else:
            self.current_preset = preset.preset_id  # a fixed camera never moves: nothing to settle
        visits = preset.schedule.every is not None  # scheduled: a visit the scene opens and closes
        if visits:
            preset.scene.begin_visit(self.clock.now())
        frames, violations, reason = 0, 0, None
        first_at = self.clock.now()
        try:
            for index in range(preset.samples):
                wait = (first_at + timedelta(seconds=index * preset.sample_every) - self.clock.now()).total_seconds()
                if wait < -preset.sample_every / 2:
                    self.stats.late_samples += 1
                await self.clock.sleep(wait)
                try:
                    frame = await asyncio.to_thread(self.reader.read, preset.preset_id)
                except CameraUnavailable as error:
                    reason = f"camera offline: {error}"
                    # The reader warns once per outage; the patrol only counts and says it at info.
                    self._error("camera_errors", reason, level=logging.INFO)
                    break
                self._recovered("camera_errors")
                self._check_size(preset, frame, visits)
                frames += 1
                self._tap(frame)
                violations += await self._deliver(await self.analyse(frame, preset.scene, preset.detect))
        finally:
            if visits and preset.scene.in_visit:
                violations += await self._deliver(preset.scene.end_visit())
        next_free = first_at + timedelta(seconds=preset.samples * preset.sample_every)
        if frames == 0:
            return self._missed(slot, reason or "no frame"), max(next_free, self.clock.now())
        record = VisitRecord(
            self.camera_id, slot.preset_id, slot.due, self.clock.now(), "done", reason, frames, violations, move_s
        )
        self.stats.visits += 1
        self.history.append(record)
        return record, next_free

    async def analyse(self, frame: Frame, scene: PresetScene, detect: Detect | None = None) -> list[Violation]:
        """Detections (by `detect`, else the patrol's detector) → the scene's violations (not yet delivered)."""
        try:
            detections = await (detect or self.detect)(frame.image)
        except Exception as error:  # the detector deployment may be redeploying: try again next sample
            self._error("detector_errors", f"camera {self.camera_id!r}: detector failed: {error!r}")
            return []
        self._recovered("detector_errors")
        self.stats.samples += 1
        self.stats.detections += len(detections)
        age = (self.clock.now() - frame.captured_at).total_seconds()
        self.stats.last_sample_age_s = [*self.stats.last_sample_age_s[-9:], round(age, 3)]
        return scene.observe(frame, detections)

    def _tap(self, frame: Frame) -> None:
        if self.tap is None:
            return
        try:
            self.tap(frame)
        except Exception as error:  # a picture for the page is never worth a sample
            self._error("tap_errors", f"camera {self.camera_id!r}: frame tap failed: {error!r}")

    async def _deliver(self, violations: list[Violation]) -> int:
        delivered = 0
        for violation in violations:
            try:
                await self.sink(violation)
                delivered += 1
                self.stats.violations += 1
            except Exception as error:  # a sink failure loses this report, not the loop
                self._error("sink_errors", f"camera {self.camera_id!r}: filing failed: {error!r}")
        return delivered

    def _check_size(self, preset: PresetVisit, frame: Frame, visits: bool) -> None:
        """A new resolution moves every pixel: the scene starts over (zones are fractions, so they still fit)."""
        size = (frame.width, frame.height)
        before = self._sizes.get(preset.preset_id)
        self._sizes[preset.preset_id] = size
        if before is None or before == size:
            return
        log.warning(
            "camera %s preset %s: picture went from %dx%d to %dx%d; the scene starts over",
            self.camera_id,
            preset.preset_id,
            *before,
            *size,
        )
        self.stats.resolution_resets += 1
        preset.scene.reset()
        if visits:
            preset.scene.begin_visit(frame.captured_at)

    async def _idle_until(self, due: datetime) -> None:
        wait = (due - self.clock.now()).total_seconds()
        if wait > self.keep_open_for:
            await asyncio.to_thread(self.reader.stop)  # reopened at the next visit (0.2-2 s, during the move)
        else:
            self.reader.set_active(False)  # keyframes only until then
        await self.clock.sleep(wait)

    def _missed(self, slot: Slot, reason: str) -> VisitRecord:
        self._record_missed(Missed(slot, reason, self.clock.now()))
        return self.history[-1]

    def _record_missed(self, miss: Missed) -> None:
        self.stats.missed += 1
        kind = miss.reason.split(":", 1)[0]
        self.stats.missed_reasons[kind] += 1
        record = VisitRecord(self.camera_id, miss.slot.preset_id, miss.slot.due, miss.noticed_at, "missed", miss.reason)
        self.history.append(record)
        if miss.reason != self.stats.last_error:  # once per distinct reason, not once per visit
            # A camera outage was already said (by the reader, and at info by `visit`): one warning per outage.
            level = logging.DEBUG if kind == "camera offline" else logging.WARNING
            log.log(level, "camera %s: visit of preset %s missed: %s", self.camera_id, miss.slot.preset_id, miss.reason)
        self._last_error_from = "camera_errors" if kind == "camera offline" else kind
        self.stats.last_error = miss.reason

    def _error(self, counter: str, message: str, *, level: int = logging.WARNING) -> None:
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        if message != self.stats.last_error:  # once per distinct error, not once per sample
            log.log(level, message)
        self.stats.last_error, self._last_error_from = message, counter

    def _recovered(self, source: str) -> None:
        """`source` (a counter, or a missed-visit reason's kind) works again: its error is no longer the last."""
        if self._last_error_from == source and self.stats.last_error is not None:
            log.info("camera %s: recovered from: %s", self.camera_id, self.stats.last_error)
            self.stats.last_error, self._last_error_from = None, None

    def health(self) -> dict[str, Any]:
        """The patrol's counters and recent visits, JSON-ready."""
        stats = asdict(self.stats)
        stats["missed_reasons"] = dict(self.stats.missed_reasons)
        return {
            **stats,
            "started_at": self.started_at.isoformat(),
            "counting_since": self.counting_since.isoformat(),
            "current_preset": self.current_preset,
            "presets": list(self.presets),
            "detectors": {p.preset_id: p.detector for p in self.presets.values() if p.detector is not None},
            "zones": {
                p.preset_id: {w.zone.name: [list(point) for point in w.zone.polygon] for w in p.scene.zones}
                for p in self.presets.values()
            },
            "next_due": {p: slot.due.isoformat() for p, slot in self.plan.pending.items()},
            "recent_visits": [record.as_json() for record in list(self.history)[-5:]],
        }
