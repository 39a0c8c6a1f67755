"""Cameras, their presets and zones, and the detectors they use."""

from __future__ import annotations

from datetime import time, timedelta

from pydantic import Field, field_validator, model_validator

from citywatch.models.builtin import BUILTIN_PREFIX
from citywatch.vision.params import Duration, PositiveDuration, Strict, TimezoneName
from citywatch.vision.regions import DetectRegion
from citywatch.vision.zones import Zone, check_polygon

DEFAULT_MODEL = f"{BUILTIN_PREFIX}coco-yolo11n"
"""The model shipped in the package (models/default)."""


class DetectorConfig(Strict):
    model: str = Field(DEFAULT_MODEL, description="Path to an ONNX model, or builtin:coco-yolo11n")
    conf: float = Field(0.25, ge=0.0, le=1.0, description="Confidence below which detections are dropped")
    iou: float = Field(0.7, gt=0.0, le=1.0, description="IoU threshold of class-aware NMS")
    threads: int | None = Field(None, ge=1, description="onnxruntime intra-op threads (default: per machine)")


class ZoneConfig(Strict):
    polygon: list[tuple[float, float]] = Field(
        min_length=3, description="Vertices [x, y] as fractions (0..1) of frame width and height"
    )
    rules: list[str] = Field(min_length=1, description="Names of rules (under `rules:`) that watch this zone")

    @field_validator("polygon")
    @classmethod
    def _inside_frame(cls, polygon: list[tuple[float, float]]) -> list[tuple[float, float]]:
        check_polygon(polygon)
        return polygon

    def zone(self, name: str) -> Zone:
        """This zone as the scene tests detections against it."""
        return Zone(name, tuple(self.polygon))


class ScheduleConfig(Strict):
    every: PositiveDuration = Field(description="A visit of this preset this often, e.g. 15m")
    between: tuple[time, time] | None = Field(
        None, description='Local daily window [start, end) for visits, e.g. ["07:00", "21:00"]; may wrap midnight'
    )
    timezone: TimezoneName | None = Field(None, description="Timezone of `between` (default: serving.timezone)")


class PtzConfig(Strict):
    onvif: str = Field(description="ONVIF device service host:port of the camera")
    user: str | None = Field(None, description="ONVIF user; write ${ENV_VAR}")
    password: str | None = Field(None, description="ONVIF password; write ${ENV_VAR}, never the password itself")
    profile: str | None = Field(None, description="Media profile token (default: the camera's first profile)")
    move_timeout: Duration = Field(timedelta(seconds=20), description="Longest a move may take before it fails")


class PresetConfig(Strict):
    token: str | None = Field(None, description="ONVIF preset token; none for a fixed camera")
    sample_every: Duration = Field(timedelta(seconds=2), description="Time between analysed frames")
    samples: int = Field(5, ge=1, description="Frames analysed per visit, `sample_every` apart")
    settle: Duration = Field(
        timedelta(seconds=2), description="Wait after the camera reports still, before the first frame is taken"
    )
    schedule: ScheduleConfig | None = Field(
        None, description="When to visit; none: visit again as soon as the camera is free (fixed cameras)"
    )
    detector: str | None = Field(
        None, description="Detector (under `detectors:`) for this preset; none: the camera's `detector`"
    )
    detect: DetectRegion = Field(
        default_factory=DetectRegion,
        description="Where the detector looks: the whole frame (default), or the crop around the zones, in tiles",
    )
    zones: dict[str, ZoneConfig] = Field(description="Zones of this preset, by name")


class CameraConfig(Strict):
    rtsp: str = Field(description="RTSP URL; put credentials in ${ENV_VARS}")
    detector: str = Field("default", description="Name of the detector (under `detectors:`) to use")
    location: tuple[float, float] | None = Field(None, description="[latitude, longitude] of the camera")
    ptz: PtzConfig | None = Field(None, description="ONVIF PTZ control; none for a fixed camera")
    presets: dict[str, PresetConfig] = Field(min_length=1, description="Preset views; a fixed camera has one")

    @model_validator(mode="after")
    def _presets_fit_the_camera(self) -> CameraConfig:
        if self.ptz is None and len(self.presets) != 1:
            raise ValueError(f"presets: a camera without `ptz` has exactly one preset, got {len(self.presets)}")
        if self.ptz is not None:
            untokened = [name for name, preset in self.presets.items() if preset.token is None]
            if untokened:
                raise ValueError(f"presets: a PTZ camera's presets need a `token`; missing in {untokened}")
        return self
