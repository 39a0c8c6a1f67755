"""A fleet: the patrols of a set of cameras, built from the config and run as asyncio tasks.

Plain Python, no Ray: a Serve replica wraps one fleet (its shard of the cameras); tests drive it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any

from citywatch.cases.filing import CaseFiler
from citywatch.pipelines.camera import RtspReader, redact
from citywatch.pipelines.config import CityConfig
from citywatch.pipelines.patrol import Detect, FixedCameraPatrol, Sink
from citywatch.vision.scene import PresetScene

log = logging.getLogger(__name__)


class Fleet:
    def __init__(self, patrols: Iterable[FixedCameraPatrol], *, filer: CaseFiler | None = None) -> None:
        self.patrols = {patrol.camera_id: patrol for patrol in patrols}
        self.filer = filer
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def from_config(
        cls,
        config: CityConfig,
        camera_ids: Iterable[str],
        *,
        detect_for: Callable[[str], Detect],
        sink: Sink,
        filer: CaseFiler | None = None,
        model_versions: dict[str, str] | None = None,
    ) -> Fleet:
        """Patrols for `camera_ids`; `detect_for(detector_name)` gives the detect call of each detector."""
        versions = model_versions or {}
        patrols = []
        for camera_id in camera_ids:
            camera = config.cameras[camera_id]
            if len(camera.presets) != 1:
                raise NotImplementedError(
                    f"camera {camera_id!r}: PTZ patrols over several presets are not implemented yet; "
                    "give a fixed camera exactly one preset"
                )
            ((preset_id, preset),) = camera.presets.items()
            scene = PresetScene(
                camera_id,
                preset_id,
                config.watched_zones(camera_id, preset_id),
                model_version=versions.get(camera.detector, ""),
            )
            patrols.append(
                FixedCameraPatrol(
                    RtspReader(camera_id, camera.rtsp),
                    scene,
                    sample_every=preset.sample_every.total_seconds(),
                    detect=detect_for(camera.detector),
                    sink=sink,
                )
            )
        return cls(patrols, filer=filer)

    def start(self) -> None:
        """Open every camera and start its patrol loop (call from the running event loop)."""
        loop = asyncio.get_running_loop()
        for patrol in self.patrols.values():
            patrol.reader.start()
            self._tasks.append(loop.create_task(patrol.run(), name=f"patrol-{patrol.camera_id}"))
        if self.filer is not None:
            self._tasks.append(loop.create_task(self._drain_spool_forever(), name="spool-drain"))
        log.info("fleet started: %d camera(s)", len(self.patrols))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await asyncio.gather(*(asyncio.to_thread(p.reader.stop) for p in self.patrols.values()))

    def health(self) -> list[dict[str, Any]]:
        """Per camera: stream health and patrol counters, JSON-ready."""
        report = []
        for camera_id, patrol in self.patrols.items():
            camera = asdict(patrol.reader.health)
            for key in ("offline_since", "last_frame_at"):
                camera[key] = camera[key].isoformat() if camera[key] else None
            report.append(
                {
                    **camera,
                    "camera_id": camera_id,
                    "url": redact(patrol.reader.url),
                    "preset_id": patrol.scene.preset_id,
                    "patrol": asdict(patrol.stats),
                }
            )
        return report

    async def _drain_spool_forever(self, every: float = 10.0) -> None:
        assert self.filer is not None
        while True:
            await asyncio.sleep(every)
            try:
                uploaded = await asyncio.to_thread(self.filer.drain_spool)
            except Exception:  # keep draining later; the spool keeps its files
                log.exception("draining the evidence spool failed")
                continue
            if uploaded:
                log.info("uploaded %d spooled evidence object(s)", uploaded)
