"""A fleet: the patrols of one shard of the city's cameras, run as asyncio tasks and changed by config diffs.

Plain Python, no Ray: a Serve replica wraps one fleet (its shard of the cameras); tests drive it directly.

Sharding is rendezvous (highest-random-weight) hashing: a camera belongs to the replica with the highest
`hash(camera, replica)`. The same number of replicas always gives the same assignment (no hopping on
redeploys), and going from n to n+1 replicas moves only the ~1/(n+1) of cameras the new replica wins.
`Fleet.apply(config)` starts the cameras that are new (or newly owned), stops those that are gone, restarts
those whose config changed, and leaves every other camera's patrol running.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from citywatch.cases.filing import CaseFiler
from citywatch.pipelines.build import preset_visit
from citywatch.pipelines.camera import RtspReader, redact
from citywatch.pipelines.config import CityConfig
from citywatch.pipelines.patrol import CameraPatrol, Detect, FrameSource, Sink
from citywatch.pipelines.patrol_counters import PatrolCounters
from citywatch.pipelines.ptz import OnvifPtz, PtzControl
from citywatch.pipelines.schedule import CameraLeases, Clock, SystemClock
from citywatch.pipelines.snapshots import Snapshots
from citywatch.pipelines.warnings import WarningGate

log = logging.getLogger(__name__)


def _weight(camera_id: str, replica: int) -> int:
    digest = hashlib.blake2b(f"{camera_id}\x1f{replica}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_owner(camera_id: str, replicas: int) -> int:
    """The replica (0..replicas-1) that patrols `camera_id`: rendezvous hashing."""
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    return max(range(replicas), key=lambda replica: _weight(camera_id, replica))


def shard(camera_ids: Iterable[str], rank: int, replicas: int) -> list[str]:
    """The cameras replica `rank` of `replicas` patrols."""
    return [camera_id for camera_id in camera_ids if shard_owner(camera_id, replicas) == rank]


@dataclass(frozen=True)
class FleetChange:
    started: list[str]
    stopped: list[str]
    restarted: list[str]
    unchanged: list[str]


ReaderFactory = Callable[[str, str], FrameSource]
PtzFactory = Callable[[str, CityConfig], PtzControl | None]


def default_ptz(camera_id: str, config: CityConfig) -> PtzControl | None:
    ptz = config.cameras[camera_id].ptz
    if ptz is None:
        return None
    return OnvifPtz(camera_id, ptz.onvif, user=ptz.user, password=ptz.password, profile=ptz.profile)


class Fleet:
    def __init__(
        self,
        *,
        detect_for: Callable[[str], Detect],
        sink: Sink,
        filer: CaseFiler | None = None,
        model_versions: dict[str, str] | None = None,
        rank: int = 0,
        replicas: int = 1,
        clock: Clock | None = None,
        reader_factory: ReaderFactory = RtspReader,
        ptz_factory: PtzFactory = default_ptz,
        snapshots: Snapshots | None = None,
        counters: PatrolCounters | None = None,
    ) -> None:
        self.detect_for = detect_for
        self.sink = sink
        self.filer = filer
        self.model_versions = model_versions or {}
        self.rank = rank
        self.replicas = replicas
        self.clock: Clock = clock or SystemClock()
        self.reader_factory = reader_factory
        self.ptz_factory = ptz_factory
        self.snapshots = snapshots
        """Keeps each preset's latest frame for the cameras page (closed by `stop`); None: no pictures."""
        self.counters = counters
        """Keeps each camera's patrol counters across replica restarts; None: counters live with the fleet."""
        self._carried: dict[str, CameraPatrol] = {}  # a restarted camera's old patrol: its counters carry over
        self._counters_task: asyncio.Task[None] | None = None
        self.leases = CameraLeases()
        self.patrols: dict[str, CameraPatrol] = {}
        self._signatures: dict[str, str] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._spool_task: asyncio.Task[None] | None = None
        self._config: CityConfig | None = None

    def owns(self, camera_id: str) -> bool:
        return shard_owner(camera_id, self.replicas) == self.rank

    def build_patrol(self, config: CityConfig, camera_id: str) -> CameraPatrol:
        camera = config.cameras[camera_id]
        presets = []
        for preset_id in camera.presets:
            detector = config.preset_detector(camera_id, preset_id)
            model_version = self.model_versions.get(detector, "")
            presets.append(
                preset_visit(
                    config, camera_id, preset_id, detect=self.detect_for(detector), model_version=model_version
                )
            )
        return CameraPatrol(
            self.reader_factory(camera_id, camera.rtsp),
            presets,
            detect=self.detect_for(camera.detector),
            sink=self.sink,
            ptz=self.ptz_factory(camera_id, config),
            clock=self.clock,
            move_timeout=camera.ptz.move_timeout.total_seconds() if camera.ptz else 20.0,
            leases=self.leases,
            tap=self.snapshots.offer if self.snapshots is not None else None,
        )

    async def apply(self, config: CityConfig, *, rank: int | None = None, replicas: int | None = None) -> FleetChange:
        """Make the running patrols match `config` (and this replica's shard); untouched cameras keep running."""
        self.rank = self.rank if rank is None else rank
        self.replicas = self.replicas if replicas is None else replicas
        self._config = config
        if isinstance(self.sink, WarningGate):  # rules' `warn:` and the actions follow the config too
            self.sink.apply(config)
        wanted = {camera_id: _signature(config, camera_id) for camera_id in config.cameras if self.owns(camera_id)}
        stopped = [c for c in self.patrols if c not in wanted]
        restarted = [c for c in self.patrols if c in wanted and self._signatures[c] != wanted[c]]
        started = [c for c in wanted if c not in self.patrols]
        unchanged = [c for c in self.patrols if c in wanted and self._signatures[c] == wanted[c]]
        await self._stop_patrols(stopped + restarted)
        for camera_id in restarted + started:
            try:
                self.patrols[camera_id] = self.build_patrol(config, camera_id)
            except Exception:  # one camera's bad setup must not keep the others from starting
                log.exception("camera %s: cannot build its patrol", camera_id)
                continue
            self._carry_counters(camera_id)
            self._signatures[camera_id] = wanted[camera_id]
            self._start(camera_id)
        self._carried.clear()
        if self.counters is not None and self._counters_task is None:
            self._counters_task = asyncio.get_running_loop().create_task(self._save_counters_forever())
        if stopped or restarted or started:
            log.info(
                "fleet %d/%d: %d camera(s); started %s, restarted %s, stopped %s",
                self.rank,
                self.replicas,
                len(self.patrols),
                started,
                restarted,
                stopped,
            )
        return FleetChange(started, stopped, restarted, unchanged)

    def set_model_versions(self, versions: dict[str, str]) -> None:
        """A detector now runs another model version (hot swap): scenes record it from now on, nothing restarts."""
        self.model_versions = dict(versions)
        for patrol in self.patrols.values():
            for preset in patrol.presets.values():
                if preset.detector is not None:
                    preset.scene.model_version = self.model_versions.get(preset.detector, "")

    def _start(self, camera_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self.patrols[camera_id].run(), name=f"patrol-{camera_id}")
        task.add_done_callback(lambda t, c=camera_id: self._ended(c, t))  # type: ignore[misc]
        self._tasks[camera_id] = task

    def _ended(self, camera_id: str, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("camera %s: patrol ended: %r", camera_id, task.exception())

    def start_spool(self) -> None:
        """Drain the evidence spool in the background (call from the running event loop)."""
        if self.filer is not None and self._spool_task is None:
            self._spool_task = asyncio.get_running_loop().create_task(self._drain_spool_forever())

    async def _stop_patrols(self, camera_ids: list[str]) -> None:
        tasks = [self._tasks.pop(c) for c in camera_ids if c in self._tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for camera_id in camera_ids:
            patrol = self.patrols.pop(camera_id, None)
            self._signatures.pop(camera_id, None)
            if patrol is not None:
                self._carried[camera_id] = patrol
                if self.counters is not None and self.counters.last_error is None:  # another replica may take it
                    await asyncio.to_thread(self.counters.save, patrol)
                await asyncio.to_thread(patrol.reader.stop)
                close = getattr(patrol.ptz, "close", None)
                if close is not None:
                    with contextlib.suppress(Exception):
                        await close()

    async def stop(self) -> None:
        if self._counters_task is not None:
            self._counters_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._counters_task
            self._counters_task = None
        await self._stop_patrols(list(self.patrols))
        self._carried.clear()
        if self._spool_task is not None:
            self._spool_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._spool_task
            self._spool_task = None
        if self.snapshots is not None:
            self.snapshots.close()  # no patrol offers frames any more

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
                    "ptz": patrol.ptz is not None,
                    "replica": self.rank,
                    "patrol": patrol.health(),
                    "snapshots": self._snapshots(camera_id),
                }
            )
        return report

    def replica_health(self) -> dict[str, Any]:
        """What this fleet runs beside its cameras: warnings before filing, latest-frame uploads."""
        gate = self.sink if isinstance(self.sink, WarningGate) else None
        return {
            "cameras": len(self.patrols),
            "warnings": gate.health() if gate is not None else None,
            "snapshots": self.snapshots.health() if self.snapshots is not None else None,
            "counters": {"last_error": self.counters.last_error} if self.counters is not None else None,
        }

    def _snapshots(self, camera_id: str) -> dict[str, dict[str, Any]]:
        if self.snapshots is None:
            return {}
        return {
            preset: {
                "key": shot.key,
                "captured_at": shot.captured_at.isoformat(),
                "width": shot.width,
                "height": shot.height,
            }
            for preset, shot in self.snapshots.latest(camera_id).items()
        }

    def _carry_counters(self, camera_id: str) -> None:
        """A restarted camera's new patrol takes over its old one's counters (in memory, nothing lost)."""
        old, new = self._carried.pop(camera_id, None), self.patrols[camera_id]
        if old is None:
            return
        new.stats.add(old.stats.counts())
        new.counting_since = old.counting_since
        if self.counters is not None and self.counters.merged(old):
            self.counters.adopt(new)  # the old one had the stored history added: the new one has it too

    async def _save_counters_forever(self) -> None:
        assert self.counters is not None
        while True:
            await asyncio.sleep(self.counters.every)
            for patrol in list(self.patrols.values()):
                try:
                    await asyncio.to_thread(self.counters.save, patrol)
                except Exception:  # counters are never worth a patrol; try again next round
                    log.exception("camera %s: saving its patrol counters failed", patrol.camera_id)

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


def _signature(config: CityConfig, camera_id: str) -> str:
    """Everything a camera's patrol is built from; a change restarts that camera only.

    The detectors' settings (model file, thresholds) are not part of it: a detector deployment swaps its model
    in place (`serving.deployments.Detector.reconfigure`), and the cameras keep patrolling through the swap.
    """
    camera = config.cameras[camera_id]
    rules = sorted(
        {rule for preset in camera.presets.values() for zone in preset.zones.values() for rule in zone.rules}
    )
    return json.dumps(
        {
            "camera": camera.model_dump(mode="json"),
            "rules": {name: config.rules[name].model_dump(mode="json") for name in rules},
            "timezone": config.serving.timezone,
        },
        sort_keys=True,
    )
