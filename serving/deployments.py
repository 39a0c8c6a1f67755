"""Ray Serve deployments: thin shells that wire configuration and handles to the plain-Python pieces.

Api (FastAPI ingress) ──► CameraFleet (patrol loops, files cases) ──► Detector (batched onnxruntime)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import numpy as np
import supervision as sv
from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from citywatch.cases.evidence import EvidenceStore
from citywatch.cases.filing import CaseFiler
from citywatch.cases.spool import EvidenceSpool
from citywatch.cases.store import CaseStore
from citywatch.models.builtin import resolve_model
from citywatch.pipelines.config import CityConfig, DetectorConfig
from citywatch.pipelines.fleet import Fleet
from citywatch.pipelines.patrol import Detect
from citywatch.pipelines.sink import CaseSink
from citywatch.serving.api import build_api
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


@serve.deployment(ray_actor_options={"num_cpus": 0.5})
class CameraFleet:
    """Runs the patrol loops of its cameras in the background and files the cases they find."""

    # Serve awaits an async constructor; the patrol tasks need the replica's running event loop.
    async def __init__(self, config: CityConfig, detectors: dict[str, DeploymentHandle[Any]]) -> None:  # type: ignore[misc]
        storage = config.storage
        evidence = EvidenceStore.from_endpoint(
            storage.evidence.endpoint, storage.evidence.access_key, storage.evidence.secret_key,
            storage.evidence.bucket, secure=storage.evidence.secure,
        )  # fmt: skip
        filer = CaseFiler(CaseStore.from_url(storage.database), evidence, EvidenceSpool(storage.spool_dir))
        self.detectors = detectors

        def detect_for(name: str) -> Detect:
            handle = detectors[name]

            async def detect(image: np.ndarray) -> sv.Detections:
                result: sv.Detections = await handle.detect.remote(image)
                return result

            return detect

        versions = {}
        for name, handle in detectors.items():
            info = await handle.info.remote()
            versions[name] = info.get("version") or ""
        self.fleet = Fleet.from_config(
            config,
            list(config.cameras),
            detect_for=detect_for,
            sink=CaseSink(filer, jpeg_quality=storage.evidence.jpeg_quality),
            filer=filer,
            model_versions=versions,
        )
        self.fleet.start()

    def health(self) -> list[dict[str, Any]]:
        return self.fleet.health()

    async def __del__(self) -> None:
        await self.fleet.stop()


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
@serve.ingress()
class Api:
    def __init__(
        self, config: CityConfig, fleet: DeploymentHandle[Any], detectors: dict[str, DeploymentHandle[Any]]
    ) -> None:
        storage = config.storage
        self.store = CaseStore.from_url(storage.database)
        self.evidence = EvidenceStore.from_endpoint(
            storage.evidence.endpoint, storage.evidence.access_key, storage.evidence.secret_key,
            storage.evidence.bucket, secure=storage.evidence.secure,
        )  # fmt: skip
        self.fleet = fleet
        self.detectors = detectors

    async def health(self) -> dict[str, Any]:
        cameras = await self.fleet.health.remote()
        detectors = {name: await handle.info.remote() for name, handle in self.detectors.items()}
        return {"cameras": cameras, "detectors": detectors}

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_api(self.store, self.evidence, self.health)
