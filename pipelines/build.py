"""What serving builds for a preset, from the config: one function each, shared by the fleet, the detector
deployment and `citywatch replay`, so replay runs exactly what serving runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
import supervision as sv

from citywatch.cases.filing import CaseFiler
from citywatch.models.builtin import resolve_model
from citywatch.models.registry import smoke_test
from citywatch.pipelines.config import CityConfig, DetectorConfig
from citywatch.pipelines.patrol import Detect, PresetVisit
from citywatch.pipelines.schedule import Schedule
from citywatch.pipelines.sink import CaseSink
from citywatch.vision.detector import OnnxDetector
from citywatch.vision.regions import cut, merge_windows
from citywatch.vision.scene import PresetScene

DetectMany = Callable[[list[np.ndarray]], Awaitable[list[sv.Detections]]]
"""Detects objects in several BGR images at once (a preset's windows: one batch)."""


def open_detector(config: DetectorConfig) -> OnnxDetector:
    """Load a detector's model (a path or `builtin:<name>`) and pass the registry's smoke test.

    Raises ModelLoadError, ModelRefused or ValueError, each naming the model.
    """
    detector = OnnxDetector.from_path(
        resolve_model(config.model), conf=config.conf, iou=config.iou, threads=config.threads
    )
    smoke_test(detector)
    detector.warmup()
    return detector


def preset_scene(config: CityConfig, camera_id: str, preset_id: str, *, model_version: str = "") -> PresetScene:
    """The preset's zones and rules, with its tracker."""
    return PresetScene(camera_id, preset_id, config.watched_zones(camera_id, preset_id), model_version=model_version)


def preset_schedule(config: CityConfig, camera_id: str, preset_id: str) -> Schedule:
    """When the preset is visited (no `schedule`: back to back)."""
    schedule = config.cameras[camera_id].presets[preset_id].schedule
    if schedule is None:
        return Schedule()
    return Schedule(schedule.every, schedule.between, schedule.timezone or config.serving.timezone)


def each(detect: Detect) -> DetectMany:
    """Concurrent one-image calls: the detector deployment's `@serve.batch` runs them as one batch."""

    async def many(images: list[np.ndarray]) -> list[sv.Detections]:
        return list(await asyncio.gather(*(detect(image) for image in images)))

    return many


def in_process(detector: OnnxDetector) -> DetectMany:
    """A detector of this process, one `detect` call per list, off the event loop (replay, bench)."""

    async def many(images: list[np.ndarray]) -> list[sv.Detections]:
        return await asyncio.to_thread(detector.detect, images)

    return many


def preset_detect(config: CityConfig, camera_id: str, preset_id: str, detect: DetectMany) -> Detect:
    """The preset's detector where its `detect:` says: the frame, or the windows around its zones (one batch),
    boxes mapped back to the frame and merged once (`vision.regions`)."""
    preset = config.cameras[camera_id].presets[preset_id]
    settings = preset.detect
    polygons = [zone.polygon for zone in preset.zones.values()]

    async def run(image: np.ndarray) -> sv.Detections:
        height, width = image.shape[:2]
        windows = settings.windows(width, height, polygons)
        found = await detect(cut(image, windows))
        return merge_windows(found, windows, width, height)

    return run


def preset_visit(
    config: CityConfig, camera_id: str, preset_id: str, *, detect: Detect | None, model_version: str = ""
) -> PresetVisit:
    """How the patrol visits one preset: scene, schedule, samples, and the preset's detector."""
    preset = config.cameras[camera_id].presets[preset_id]
    return PresetVisit(
        preset_id,
        preset_scene(config, camera_id, preset_id, model_version=model_version),
        token=preset.token,
        schedule=preset_schedule(config, camera_id, preset_id),
        samples=preset.samples,
        sample_every=preset.sample_every.total_seconds(),
        settle=preset.settle.total_seconds(),
        detect=None if detect is None else preset_detect(config, camera_id, preset_id, each(detect)),
        detector=config.preset_detector(camera_id, preset_id),
    )


def case_sink(config: CityConfig, filer: CaseFiler) -> CaseSink:
    """Renders evidence and files it (the sink behind the warning gate)."""
    return CaseSink(filer, jpeg_quality=config.storage.evidence.jpeg_quality)
