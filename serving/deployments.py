"""Ray Serve deployments: thin shells that wire configuration and handles to the plain-Python pieces.

Api (FastAPI ingress) ──► CameraFleet × N (patrol loops of a shard, files cases) ──► Detector (batched onnxruntime)
                              └──► FleetHealthBoard (every shard's camera health, for the Api)
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, cast

import numpy as np
import supervision as sv
from fastapi import FastAPI
from ray import serve
from ray.serve.exceptions import RayServeException
from ray.serve.handle import DeploymentHandle

from citywatch.cases.evidence import EvidenceStore, EvidenceStoreDown
from citywatch.cases.filing import CaseFiler
from citywatch.cases.spool import EvidenceSpool
from citywatch.cases.store import CaseStore
from citywatch.models.builtin import resolve_model
from citywatch.pipelines.config import CityConfig, DetectorConfig
from citywatch.pipelines.fleet import Fleet
from citywatch.pipelines.patrol import Detect
from citywatch.pipelines.sink import CaseSink
from citywatch.serving.api import ApiContext, build_api
from citywatch.vision.detector import ModelLoadError, OnnxDetector

log = logging.getLogger(__name__)


class DetectorUnavailable(RuntimeError):
    """The detector's model did not load; the message names the model path and why."""


@serve.deployment(ray_actor_options={"num_cpus": 1})
class Detector:
    """One onnxruntime session; concurrent calls from all cameras are batched into one run."""

    def __init__(self, name: str, config: DetectorConfig, max_batch_size: int, batch_wait_s: float) -> None:
        self.name = name
        self.error: str | None = None
        self.detector: OnnxDetector | None = None
        try:
            path = resolve_model(config.model)
            self.detector = OnnxDetector.from_path(path, conf=config.conf, iou=config.iou, threads=config.threads)
            self.detector.warmup()
        except ModelLoadError as error:
            # Stay up and say why: cameras on this detector report the error, the rest of the city runs.
            self.error = f"detector {name!r}: {error}"
            log.error(self.error)
        # The batch size comes from the config; @serve.batch's wrapper can be retuned per replica.
        batched = cast(Any, self.detect)
        batched.set_max_batch_size(max_batch_size)
        batched.set_batch_wait_timeout_s(batch_wait_s)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def detect(self, images: list[np.ndarray]) -> list[sv.Detections]:
        if self.detector is None:
            raise DetectorUnavailable(self.error)
        # Off the replica's event loop, so health checks and batching keep running during inference.
        return await asyncio.to_thread(self.detector.detect, images)

    def info(self) -> dict[str, Any]:
        if self.detector is None:
            return {"name": self.name, "error": self.error}
        info = self.detector.info
        return {
            "name": self.name, "error": None, "path": str(info.path), "version": info.version,
            "sha256": info.sha256, "classes": len(info.class_names), "input_size": list(info.input_size),
        }  # fmt: skip


@serve.deployment(ray_actor_options={"num_cpus": 0})
class FleetHealthBoard:
    """Where every CameraFleet replica posts its shard's health, so one call sees all cameras.

    A Serve handle reaches one replica of a deployment, not all of them; the board has one replica and keeps
    the last report of each rank. Reports older than `stale_after_s` are flagged, ranks beyond the current
    number of replicas (after a scale-down) are dropped.
    """

    def __init__(self, stale_after_s: float = 30.0) -> None:
        self.stale_after_s = stale_after_s
        self.shards: dict[int, tuple[float, int, list[dict[str, Any]]]] = {}

    def report(self, rank: int, replicas: int, cameras: list[dict[str, Any]]) -> None:
        self.shards[rank] = (time.time(), replicas, cameras)

    def cameras(self) -> list[dict[str, Any]]:
        if not self.shards:
            return []
        replicas = max(self.shards.values(), key=lambda shard: shard[0])[1]  # the newest report's view
        report = []
        for rank, (at, _replicas, cameras) in sorted(self.shards.items()):
            if rank >= replicas:
                continue
            age = time.time() - at
            for camera in cameras:
                report.append({**camera, "report_age_s": round(age, 1), "stale": age > self.stale_after_s})
        return report


@serve.deployment(ray_actor_options={"num_cpus": 0.5})
class CameraFleet:
    """Runs the patrol loops of its shard of the cameras in the background and files the cases they find.

    The city config arrives as `user_config` ({"config": CityConfig as JSON}): a changed config reaches the
    running replicas through `reconfigure`, and `Fleet.apply` restarts only the cameras that changed. The
    shard comes from the replica's rank and the number of replicas (rendezvous hashing, `pipelines.fleet`).
    """

    # Serve awaits an async constructor; the patrol tasks need the replica's running event loop.
    async def __init__(  # type: ignore[misc]
        self, detectors: dict[str, DeploymentHandle[Any]], board: DeploymentHandle[Any], report_every_s: float = 2.0
    ) -> None:
        self.detectors = detectors
        self.board = board
        self.report_every_s = report_every_s
        self.fleet: Fleet | None = None
        self.config: CityConfig | None = None
        self.versions: dict[str, str] = {}
        for name, handle in detectors.items():
            info = await handle.info.remote()
            self.versions[name] = info.get("version") or ""
        self._reporter = asyncio.get_running_loop().create_task(self._report_forever())

    def _detect_for(self, name: str) -> Detect:
        handle = self.detectors[name]

        async def detect(image: np.ndarray) -> sv.Detections:
            result: sv.Detections = await handle.detect.remote(image)
            return result

        return detect

    def _build_fleet(self, config: CityConfig) -> Fleet:
        storage = config.storage
        evidence = EvidenceStore.from_endpoint(
            storage.evidence.endpoint, storage.evidence.access_key, storage.evidence.secret_key,
            storage.evidence.bucket, secure=storage.evidence.secure,
        )  # fmt: skip
        store = CaseStore.from_url(storage.database, policy=config.lifecycle.policy())  # cooldowns, stage deadlines
        filer = CaseFiler(store, evidence, EvidenceSpool(storage.spool_dir))
        fleet = Fleet(
            detect_for=self._detect_for,
            sink=CaseSink(filer, jpeg_quality=storage.evidence.jpeg_quality),
            filer=filer,
            model_versions=self.versions,
        )
        fleet.start_spool()
        return fleet

    async def reconfigure(self, user_config: dict[str, Any], rank: Any = None) -> None:
        config = CityConfig.model_validate(user_config["config"])
        if self.fleet is not None and self.config is not None and self.config.storage != config.storage:
            await self.fleet.stop()  # a new database or bucket: every camera files somewhere else
            self.fleet = None
        if self.fleet is None:
            self.fleet = self._build_fleet(config)
        self.config = config
        rank_number, replicas = _shard_position(rank)
        change = await self.fleet.apply(config, rank=rank_number, replicas=replicas)
        log.info("fleet replica %d/%d: %s", rank_number, replicas, change)
        await self._report()

    async def _report(self) -> None:
        if self.fleet is not None:
            await self.board.report.remote(self.fleet.rank, self.fleet.replicas, self.fleet.health())

    async def _report_forever(self) -> None:
        while True:
            await asyncio.sleep(self.report_every_s)
            try:
                if self.fleet is not None and self.config is not None:
                    rank, replicas = _shard_position(None)
                    if (rank, replicas) != (self.fleet.rank, self.fleet.replicas):  # scaled: rebalance
                        await self.fleet.apply(self.config, rank=rank, replicas=replicas)
                await self._report()
            except Exception:  # the board may be restarting: report again next time
                log.exception("fleet health report failed")

    async def health(self) -> list[dict[str, Any]]:
        """Every camera of every replica (from the board)."""
        await self._report()  # this shard's newest numbers
        cameras: list[dict[str, Any]] = await self.board.cameras.remote()
        return cameras

    async def __del__(self) -> None:
        self._reporter.cancel()
        if self.fleet is not None:
            await self.fleet.stop()


def _shard_position(rank: Any) -> tuple[int, int]:
    """(rank, number of replicas) of this replica; (0, 1) outside Serve."""
    try:
        context = serve.get_replica_context()
    except RayServeException:
        return 0, 1
    given = rank if rank is not None else context.rank
    number: Any = getattr(given, "rank", given)
    return int(number or 0), max(1, int(context.world_size or 1))


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
@serve.ingress()
class Api:
    def __init__(
        self, config: CityConfig, fleet: DeploymentHandle[Any], detectors: dict[str, DeploymentHandle[Any]]
    ) -> None:
        self.fleet = fleet
        self.detectors = detectors
        self.context = ApiContext.from_config(config, self.health)
        self.store = self.context.store
        self.evidence = self.context.evidence
        try:
            self.evidence.protect(config.lifecycle.evidence_retention_days)
        except EvidenceStoreDown as error:  # the API serves cases without the object store; protect next start
            log.warning("could not turn on evidence versioning/retention: %s", error)
        # Webhook deliveries and the API's own spool (device events) run in one background thread.
        self._stop = threading.Event()
        self._background = threading.Thread(
            target=self._background_loop, args=(config.webhooks.poll_every.total_seconds(),), daemon=True
        )
        self._background.start()

    def _background_loop(self, every: float) -> None:
        last_drain = 0.0
        while not self._stop.is_set():
            try:
                if self.context.outbox is not None:
                    self.context.outbox.run_once()
                if self.context.filer is not None and time.monotonic() - last_drain >= 10.0:
                    last_drain = time.monotonic()
                    self.context.filer.drain_spool()
            except Exception:  # report and go on: the next round retries
                log.exception("API background round failed")
            self._stop.wait(every)

    async def health(self) -> dict[str, Any]:
        cameras = await self.fleet.health.remote()
        detectors = {name: await handle.info.remote() for name, handle in self.detectors.items()}
        return {"cameras": cameras, "detectors": detectors}

    def __del__(self) -> None:
        self._stop.set()

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_api(self.context)
