"""Ray Serve deployments: thin shells that wire configuration and handles to the plain-Python pieces.

Api (FastAPI ingress) ──► CameraFleet × N (patrol loops of a shard, files cases) ──► Detector (batched onnxruntime)
                              └──► FleetHealthBoard (every shard's camera health, for the Api)
ConfigBoard (the running config, with a revision) ◄── polled by every CameraFleet and Detector replica

Changes while running: `citywatch serve` follows its config file (and the model registry) and publishes each
valid change to the ConfigBoard. Every replica polls the board: a CameraFleet replica hands the new config to
`Fleet.apply` (only added or changed cameras start or restart), a Detector replica calls its own `reconfigure`
(the Serve user_config hook), which loads and smoke-tests the new model beside the old one and swaps it in
between two batches, or refuses it and keeps serving the old one. Re-running `serve.run` would instead
replace every replica (Ray 2.60 gives each imperative deploy a new random code version).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

import numpy as np
import supervision as sv
from fastapi import FastAPI
from ray import serve
from ray.serve.exceptions import RayServeException
from ray.serve.handle import DeploymentHandle

from citywatch.cases.evidence import EvidenceStoreDown
from citywatch.models.registry import ModelRefused
from citywatch.pipelines.build import case_sink, open_detector
from citywatch.pipelines.config import CityConfig, DetectorConfig
from citywatch.pipelines.fleet import Fleet
from citywatch.pipelines.fleet_health import HealthBoard
from citywatch.pipelines.patrol import Detect
from citywatch.pipelines.patrol_counters import patrol_counters_from_config
from citywatch.pipelines.sink import CaseBackends
from citywatch.pipelines.snapshots import snapshots_from_config
from citywatch.pipelines.warnings import WarningGate
from citywatch.serving.api import ApiContext, build_api
from citywatch.serving.background import ApiBackground
from citywatch.vision.detector import ModelLoadError, OnnxDetector

log = logging.getLogger(__name__)


class DetectorUnavailable(RuntimeError):
    """The detector's model did not load; the message names the model path and why."""


@serve.deployment(ray_actor_options={"num_cpus": 1})
class Detector:
    """One onnxruntime session; concurrent calls from all cameras are batched into one run.

    The model is swapped while running by `reconfigure` (user_config {"detector": DetectorConfig as JSON}, or
    the detector's entry of a config published on the ConfigBoard): the new model is loaded and smoke-tested
    in a thread beside the old one, which answers every call until the swap. A model that fails is refused,
    logged and shown in `info()["refused"]`; the old one keeps serving.
    """

    # Async: the board poll needs the replica's running event loop.
    async def __init__(  # type: ignore[misc]
        self,
        name: str,
        config: DetectorConfig,
        max_batch_size: int,
        batch_wait_s: float,
        config_board: DeploymentHandle[Any] | None = None,
        poll_every_s: float = 2.0,
    ) -> None:
        self.name = name
        self.error: str | None = None
        self.refused: dict[str, Any] | None = None
        self.detector: OnnxDetector | None = None
        self.config: DetectorConfig | None = None
        self.swaps = 0
        self._tried: DetectorConfig | None = None
        self._lock = asyncio.Lock()
        # The batch size comes from the config; @serve.batch's wrapper can be retuned per replica.
        batched = cast(Any, self.detect)
        batched.set_max_batch_size(max_batch_size)
        batched.set_batch_wait_timeout_s(batch_wait_s)
        await self._load(config)
        self.board = config_board
        self.revision = 0  # the board starts at revision 0 with the config this replica was built from
        self.poll_every_s = poll_every_s
        self._watcher = asyncio.get_running_loop().create_task(self._watch_forever()) if config_board else None

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve's user_config hook (and the board poll's): serve the model `user_config["detector"]` names."""
        await self._load(DetectorConfig.model_validate(user_config["detector"]))

    async def _load(self, config: DetectorConfig) -> None:
        async with self._lock:
            if config == self._tried:
                return  # already serving it, or already refused it
            self._tried = config
            try:
                detector = await asyncio.to_thread(open_detector, config)
            except (ModelLoadError, ModelRefused, ValueError) as error:
                message = f"detector {self.name!r}: {error}"
                if self.detector is None:
                    # Stay up and say why: cameras on this detector report the error, the rest of the city runs.
                    self.error = message
                    log.error(message)
                else:
                    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    self.refused = {"model": config.model, "error": message, "at": now}
                    log.error("%s — refused; still serving %s", message, self.detector.info.version)
                return
            before = self.detector
            # One assignment: a batch already running keeps the detector it started with, the next gets this one.
            self.detector, self.config, self.error, self.refused = detector, config, None, None
            if before is not None:
                self.swaps += 1
                new, old = detector.info, before.info
                log.warning(
                    "detector %r: now serving %s %s (was %s)", self.name, new.path.name, new.version, old.version
                )

    async def _watch_forever(self) -> None:
        assert self.board is not None
        while True:
            await asyncio.sleep(self.poll_every_s)
            try:
                revision, document = await self.board.since.remote(self.revision)
                if document is None:
                    continue
                self.revision = revision
                entry = document["detectors"].get(self.name)
                if entry is not None:
                    await self.reconfigure({"detector": entry})
            except Exception:  # the board may be restarting: look again next time
                log.exception("detector %r: config poll failed", self.name)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def detect(self, images: list[np.ndarray]) -> list[sv.Detections]:
        detector = self.detector
        if detector is None:
            raise DetectorUnavailable(self.error)
        # Off the replica's event loop, so health checks and batching keep running during inference.
        return await asyncio.to_thread(detector.detect, images)

    def info(self) -> dict[str, Any]:
        if self.detector is None:
            return {"name": self.name, "error": self.error}
        info = self.detector.info
        return {
            "name": self.name,
            "error": None,
            "path": str(info.path),
            "version": info.version,
            "sha256": info.sha256,
            "classes": len(info.class_names),
            "input_size": list(info.input_size),
            "swaps": self.swaps,
            "refused": self.refused,
        }

    async def __del__(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()


@serve.deployment(ray_actor_options={"num_cpus": 0})
class ConfigBoard:
    """The config the city runs now (anchored, as JSON), with a revision; replicas poll it for changes.

    Starts at revision 0 with the config the app was built from. If this replica is restarted it starts
    over from that config, and the replicas go back to it: publish again after such a restart.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.revision = 0
        self.config = config

    def publish(self, config: dict[str, Any]) -> int:
        CityConfig.model_validate(config)  # a broken config never reaches the replicas
        self.revision += 1
        self.config = config
        return self.revision

    def since(self, revision: int) -> tuple[int, dict[str, Any] | None]:
        """(current revision, the config if it is not `revision`, else None): a cheap poll."""
        return self.revision, (self.config if revision != self.revision else None)


@serve.deployment(ray_actor_options={"num_cpus": 0})
class FleetHealthBoard:
    """Where every CameraFleet replica posts its shard's health, so one call sees all cameras (`HealthBoard`)."""

    def __init__(self, stale_after_s: float = 30.0) -> None:
        self.board = HealthBoard(stale_after_s)

    def report(
        self, rank: int, replicas: int, cameras: list[dict[str, Any]], replica: dict[str, Any] | None = None
    ) -> None:
        self.board.report(rank, replicas, cameras, replica)

    def replicas(self) -> list[dict[str, Any]]:
        return self.board.replicas()

    def cameras(self) -> list[dict[str, Any]]:
        return self.board.cameras()


@serve.deployment(ray_actor_options={"num_cpus": 0.5})
class CameraFleet:
    """Runs the patrol loops of its shard of the cameras in the background and files the cases they find.

    The city config arrives as `user_config` ({"config": CityConfig as JSON}) and, while running, from the
    ConfigBoard (polled every `report_every_s`); either way `reconfigure` hands it to `Fleet.apply`, which
    restarts only the cameras that changed. The shard comes from the replica's rank and the number of
    replicas (rendezvous hashing, `pipelines.fleet`).
    """

    # Serve awaits an async constructor; the patrol tasks need the replica's running event loop.
    async def __init__(  # type: ignore[misc]
        self,
        detectors: dict[str, DeploymentHandle[Any]],
        board: DeploymentHandle[Any],
        report_every_s: float = 2.0,
        config_board: DeploymentHandle[Any] | None = None,
    ) -> None:
        self.detectors = detectors
        self.board = board
        self.config_board = config_board
        self.revision = 0  # of the ConfigBoard, which starts with the config this replica was built from
        self.report_every_s = report_every_s
        self.fleet: Fleet | None = None
        self.config: CityConfig | None = None
        self.versions: dict[str, str] = {}
        await self._refresh_versions()
        self._reporter = asyncio.get_running_loop().create_task(self._report_forever())

    async def _refresh_versions(self) -> None:
        """The model version each detector serves now (it changes when a detector swaps its model)."""
        versions = {}
        for name, handle in self.detectors.items():
            info = await handle.info.remote()
            versions[name] = info.get("version") or ""
        if versions != self.versions:
            self.versions = versions
            if self.fleet is not None:
                self.fleet.set_model_versions(versions)

    def _detect_for(self, name: str) -> Detect:
        handle = self.detectors[name]

        async def detect(image: np.ndarray) -> sv.Detections:
            result: sv.Detections = await handle.detect.remote(image)
            return result

        return detect

    def _build_fleet(self, config: CityConfig) -> Fleet:
        storage = config.storage
        filer = CaseBackends.from_config(config).filer
        fleet = Fleet(
            detect_for=self._detect_for,
            sink=WarningGate.from_config(config, case_sink(config, filer)),
            filer=filer,
            model_versions=self.versions,
            snapshots=snapshots_from_config(storage),
            counters=patrol_counters_from_config(storage),
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
            await self.board.report.remote(
                self.fleet.rank, self.fleet.replicas, self.fleet.health(), self.fleet.replica_health()
            )

    async def _follow_board(self) -> None:
        """Apply a config published on the ConfigBoard since the last look."""
        if self.config_board is None or self.fleet is None:
            return
        revision, document = await self.config_board.since.remote(self.revision)
        if document is not None:
            await self.reconfigure({"config": document})
            self.revision = revision
        await self._refresh_versions()

    async def _report_forever(self) -> None:
        while True:
            await asyncio.sleep(self.report_every_s)
            try:
                await self._follow_board()
                if self.fleet is not None and self.config is not None:
                    rank, replicas = _shard_position(None)
                    if (rank, replicas) != (self.fleet.rank, self.fleet.replicas):  # scaled: rebalance
                        await self.fleet.apply(self.config, rank=rank, replicas=replicas)
                await self._report()
            except Exception:  # the board may be restarting: report again next time
                log.exception("fleet health report failed")

    async def health(self) -> dict[str, Any]:
        """Every camera of every replica, and each replica's own report (from the board)."""
        await self._report()  # this shard's newest numbers
        cameras: list[dict[str, Any]] = await self.board.cameras.remote()
        replicas: list[dict[str, Any]] = await self.board.replicas.remote()
        return {"cameras": cameras, "fleet": replicas}

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


HEALTH_TIMEOUT_S = 2.0
"""How long the Api waits for one replica's health answer."""


async def _answer(call: Any, what: str) -> dict[str, Any]:
    """A replica's health answer, or {"unreachable": why} when it fails or takes over HEALTH_TIMEOUT_S."""

    async def reply() -> dict[str, Any]:
        answer: dict[str, Any] = await call
        return answer

    try:
        return await asyncio.wait_for(reply(), HEALTH_TIMEOUT_S)
    except TimeoutError:
        cancel = getattr(call, "cancel", None)
        if callable(cancel):
            cancel()  # a Serve DeploymentResponse: do not leave the request queued at the replica
        return {"unreachable": f"{what}: no answer within {HEALTH_TIMEOUT_S} s"}
    except Exception as error:  # a dead or restarting replica: say so, the rest of the report stands
        return {"unreachable": f"{what}: {type(error).__name__}: {error}"}


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
        self.background = ApiBackground(self.context, config.webhooks.poll_every.total_seconds())
        self.background.start()

    async def health(self) -> dict[str, Any]:
        """The fleet's and every detector's report, asked at once, each within HEALTH_TIMEOUT_S: a replica that
        is restarting or dead is listed in `unreachable` (and its detector shows the error) instead of holding
        /healthz until it is back."""
        names = list(self.detectors)
        fleet, *infos = await asyncio.gather(
            _answer(self.fleet.health.remote(), "camera fleet"),
            *(_answer(self.detectors[name].info.remote(), f"detector {name!r}") for name in names),
        )
        unreachable = [str(reply["unreachable"]) for reply in (fleet, *infos) if "unreachable" in reply]
        detectors = {
            name: {"name": name, "error": info["unreachable"]} if "unreachable" in info else info
            for name, info in zip(names, infos, strict=True)
        }
        return {
            "cameras": fleet.get("cameras", []),
            "fleet": fleet.get("fleet", []),
            "detectors": detectors,
            "unreachable": unreachable,
        }

    def __del__(self) -> None:
        self.background.stop()

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_api(self.context)
