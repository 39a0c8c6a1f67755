"""A camera's patrol: take a fresh frame, detect, apply the preset's rules, hand violations to the sink.

A fixed camera is a patrol with a single preset. Errors are caught per sample, counted and reported; one bad
frame, camera or sink never stops the loop (nor any other camera's loop).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
import supervision as sv

from citywatch.pipelines.camera import CameraUnavailable, RtspReader
from citywatch.vision.frame import Frame
from citywatch.vision.scene import PresetScene
from citywatch.vision.violation import Violation

log = logging.getLogger(__name__)

Detect = Callable[[np.ndarray], Awaitable[sv.Detections]]
"""Detects objects in one BGR image (the detector deployment batches concurrent calls)."""
Sink = Callable[[Violation], Awaitable[None]]
"""Takes a violation on to the cases (files or attaches it)."""


@dataclass
class PatrolStats:
    samples: int = 0
    detections: int = 0
    violations: int = 0
    camera_errors: int = 0
    detector_errors: int = 0
    sink_errors: int = 0
    last_error: str | None = None
    last_sample_age_s: list[float] = field(default_factory=list)
    """Age of the frame when detection finished, last few samples (latest-frame semantics at work)."""


class FixedCameraPatrol:
    """Samples one fixed camera (one preset) every `sample_every` seconds."""

    def __init__(
        self,
        reader: RtspReader,
        scene: PresetScene,
        *,
        sample_every: float,
        detect: Detect,
        sink: Sink,
    ) -> None:
        self.reader = reader
        self.scene = scene
        self.sample_every = sample_every
        self.detect = detect
        self.sink = sink
        self.stats = PatrolStats()

    @property
    def camera_id(self) -> str:
        return self.reader.camera_id

    async def run(self) -> None:
        """Sample until cancelled."""
        next_at = time.monotonic()
        while True:
            await self.sample_once()
            next_at += self.sample_every
            delay = next_at - time.monotonic()
            if delay < 0:  # running late: skip the missed samples rather than bursting to catch up
                next_at = time.monotonic()
                delay = 0
            await asyncio.sleep(delay)

    async def sample_once(self) -> list[Violation]:
        """One sample: frame → detections → violations → sink. Never raises (except cancellation)."""
        try:
            frame = await asyncio.to_thread(self.reader.read, self.scene.preset_id)
        except CameraUnavailable as error:
            self._error("camera_errors", str(error))
            return []
        return await self.analyse(frame)

    async def analyse(self, frame: Frame) -> list[Violation]:
        try:
            detections = await self.detect(frame.image)
        except Exception as error:  # the detector deployment may be redeploying: try again next sample
            self._error("detector_errors", f"camera {self.camera_id!r}: detector failed: {error!r}")
            return []
        self.stats.samples += 1
        self.stats.detections += len(detections)
        age = time.time() - frame.captured_at.timestamp()
        self.stats.last_sample_age_s = [*self.stats.last_sample_age_s[-9:], round(age, 3)]
        violations = self.scene.observe(frame, detections)
        for violation in violations:
            try:
                await self.sink(violation)
                self.stats.violations += 1
            except Exception as error:  # a sink failure loses this report, not the loop
                self._error("sink_errors", f"camera {self.camera_id!r}: filing failed: {error!r}")
        return violations

    def _error(self, counter: str, message: str) -> None:
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        if message != self.stats.last_error:  # once per distinct error, not once per sample
            log.warning(message)
        self.stats.last_error = message
