"""The configuration tree: one YAML file, validated once at start-up.

Errors name the path of the field (for example ``cameras → gate-3 → presets → main → zones → lane → polygon``).
Secrets come from environment variables written as ``${NAME}``; a missing variable is an error that names it.
"""

from __future__ import annotations

import os
import re
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from citywatch.models.builtin import BUILTIN_PREFIX, resolve_model
from citywatch.vision.rules import ActiveWindow, DwellRule
from citywatch.vision.scene import WatchedZone
from citywatch.vision.taxonomy import KINDS
from citywatch.vision.zones import Zone

DEFAULT_MODEL = f"{BUILTIN_PREFIX}coco-yolo11n"
"""The model shipped in the package (models/default)."""


class ConfigError(ValueError):
    """The configuration is invalid; the message lists every problem with its place in the file."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def _parse_duration(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"not a duration: {value!r} (write for example 30s, 5m, 1h)")
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    return value


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EvidenceStorageConfig(Strict):
    endpoint: str = Field(description="S3 endpoint host:port (MinIO in production, SeaweedFS in tests)")
    bucket: str = Field("citywatch-evidence", description="Bucket that holds evidence objects")
    access_key: str = Field(description="S3 access key; write ${ENV_VAR}, never the key itself")
    secret_key: str = Field(description="S3 secret key; write ${ENV_VAR}, never the key itself")
    secure: bool = Field(False, description="Use HTTPS to reach the object store")
    jpeg_quality: int = Field(85, ge=30, le=100, description="JPEG quality of evidence images")


class StorageConfig(Strict):
    evidence: EvidenceStorageConfig
    database: str = Field("sqlite:///var/citywatch.db", description="SQLAlchemy URL of the case database")
    spool_dir: Path = Field(Path("var/spool"), description="Evidence waits here while the object store is down")


class DetectorConfig(Strict):
    model: str = Field(DEFAULT_MODEL, description="Path to an ONNX model, or builtin:coco-yolo11n")
    conf: float = Field(0.25, ge=0.0, le=1.0, description="Confidence below which detections are dropped")
    iou: float = Field(0.7, gt=0.0, le=1.0, description="IoU threshold of class-aware NMS")
    threads: int | None = Field(None, ge=1, description="onnxruntime intra-op threads (default: per machine)")


class DwellRuleConfig(Strict):
    type: Literal["dwell"] = Field(description="dwell: an object stays in the zone for min_dwell")
    kind: str = Field(description="Violation kind filed (a key of the taxonomy)")
    classes: list[str] = Field(min_length=1, description="Detector classes that count")
    min_dwell: Duration = Field(description="How long the object must stay, e.g. 5m")
    min_confidence: float = Field(0.3, ge=0.0, le=1.0, description="Detections below this are ignored")
    max_gap: Duration = Field(timedelta(seconds=30), description="Unseen longer than this means it left")
    repeat_every: Duration = Field(timedelta(minutes=1), description="Re-report a staying object this often")
    active: tuple[time, time] | None = Field(None, description="Local daily window [start, end) the rule runs")

    @model_validator(mode="after")
    def _known_kind(self) -> DwellRuleConfig:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; known kinds: {', '.join(sorted(KINDS))}")
        return self


RuleConfig = DwellRuleConfig  # a discriminated union once presence/persistence rules arrive


class ZoneConfig(Strict):
    polygon: list[tuple[float, float]] = Field(
        min_length=3, description="Vertices [x, y] as fractions (0..1) of frame width and height"
    )
    rules: list[str] = Field(min_length=1, description="Names of rules (under `rules:`) that watch this zone")

    @field_validator("polygon")
    @classmethod
    def _inside_frame(cls, polygon: list[tuple[float, float]]) -> list[tuple[float, float]]:
        outside = [point for point in polygon if not (0.0 <= point[0] <= 1.0 and 0.0 <= point[1] <= 1.0)]
        if outside:
            raise ValueError(f"points are fractions of the frame and must lie in [0, 1]; outside: {outside}")
        return polygon


class PresetConfig(Strict):
    token: str | None = Field(None, description="ONVIF preset token; none for a fixed camera")
    sample_every: Duration = Field(timedelta(seconds=2), description="Time between analysed frames")
    zones: dict[str, ZoneConfig] = Field(description="Zones of this preset, by name")


class CameraConfig(Strict):
    rtsp: str = Field(description="RTSP URL; put credentials in ${ENV_VARS}")
    detector: str = Field("default", description="Name of the detector (under `detectors:`) to use")
    location: tuple[float, float] | None = Field(None, description="[latitude, longitude] of the camera")
    presets: dict[str, PresetConfig] = Field(min_length=1, description="Preset views; a fixed camera has one")


class ServingConfig(Strict):
    host: str = Field("127.0.0.1", description="Address the HTTP API binds to")
    port: int = Field(8000, ge=1, le=65535, description="Port of the HTTP API")
    detector_replicas: int = Field(1, ge=1, description="Replicas of the detector deployment")
    max_batch_size: int = Field(8, ge=1, description="Most frames one detector call batches")
    batch_wait_s: float = Field(0.02, ge=0.0, description="How long a batch waits to fill")
    detector_cpus: float = Field(
        1.0, gt=0.0, description="CPUs reserved per detector replica; all replicas must fit the Ray cluster"
    )
    timezone: str = Field("Asia/Shanghai", description="Timezone of rule windows and schedules")


class CityConfig(Strict):
    storage: StorageConfig
    detectors: dict[str, DetectorConfig] = Field(default_factory=lambda: {"default": DetectorConfig()})
    rules: dict[str, RuleConfig] = Field(description="Rules by name; zones refer to them")
    cameras: dict[str, CameraConfig] = Field(description="Cameras by id")
    serving: ServingConfig = Field(default_factory=ServingConfig)

    @model_validator(mode="after")
    def _references_resolve(self) -> CityConfig:
        problems = []
        for camera_id, camera in self.cameras.items():
            if camera.detector not in self.detectors:
                problems.append(f"cameras → {camera_id} → detector: no detector named {camera.detector!r}")
            for preset_id, preset in camera.presets.items():
                for zone_name, zone in preset.zones.items():
                    for rule in zone.rules:
                        if rule not in self.rules:
                            where = f"cameras → {camera_id} → presets → {preset_id} → zones → {zone_name} → rules"
                            problems.append(f"{where}: no rule named {rule!r} (known: {', '.join(self.rules)})")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def anchored(self, base_dir: Path) -> CityConfig:
        """A copy whose relative paths (database file, spool, model files) are made absolute under `base_dir`.

        Serve replicas run in other processes with other working directories: they must get absolute paths.
        """
        storage = self.storage
        database = storage.database
        prefix = "sqlite:///"
        if database.startswith(prefix) and not database.startswith(prefix + "/") and ":memory:" not in database:
            database = prefix + str((base_dir / database.removeprefix(prefix)).resolve())
        spool = storage.spool_dir if storage.spool_dir.is_absolute() else (base_dir / storage.spool_dir).resolve()
        detectors = {
            name: detector.model_copy(update={"model": str(resolve_model(detector.model, base_dir=base_dir))})
            for name, detector in self.detectors.items()
        }
        new_storage = storage.model_copy(update={"database": database, "spool_dir": spool})
        return self.model_copy(update={"storage": new_storage, "detectors": detectors})

    def watched_zones(self, camera_id: str, preset_id: str) -> list[WatchedZone]:
        """The zones of one preset compiled into vision objects with their rules."""
        preset = self.cameras[camera_id].presets[preset_id]
        return [
            WatchedZone(
                Zone(name, tuple(zone.polygon)),
                tuple(self.dwell_rule(rule) for rule in zone.rules),
            )
            for name, zone in preset.zones.items()
        ]

    def dwell_rule(self, name: str) -> DwellRule:
        rule = self.rules[name]
        window = None
        if rule.active is not None:
            window = ActiveWindow(rule.active[0], rule.active[1], self.serving.timezone)
        return DwellRule(
            name=name,
            kind=rule.kind,
            classes=frozenset(rule.classes),
            min_dwell=rule.min_dwell,
            min_confidence=rule.min_confidence,
            max_gap=rule.max_gap,
            repeat_every=rule.repeat_every,
            active=window,
        )


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _substitute_env(node: Any, where: str, missing: list[str]) -> Any:
    if isinstance(node, dict):
        return {
            key: _substitute_env(value, f"{where} → {key}" if where else str(key), missing)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_substitute_env(value, f"{where} → {index}", missing) for index, value in enumerate(node)]
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            value = os.environ.get(match.group(1))
            if value is None:
                missing.append(f"{where}: environment variable {match.group(1)} is not set")
                return ""
            return value

        return _ENV.sub(replace, node)
    return node


def parse_config(data: Any, *, source: str = "<config>") -> CityConfig:
    """Validate a parsed YAML document; every problem is reported with its place."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    missing: list[str] = []
    data = _substitute_env(data, "", missing)
    if missing:
        raise ConfigError(f"{source}: " + "; ".join(missing))
    try:
        return CityConfig.model_validate(data)
    except ValidationError as error:
        lines = []
        for problem in error.errors():
            where = " → ".join(str(part) for part in problem["loc"]) or "(top level)"
            lines.append(f"  {where}: {problem['msg']}")
        raise ConfigError(f"{source}: {error.error_count()} problem(s)\n" + "\n".join(lines)) from None


def load_config(path: str | Path) -> CityConfig:
    """Read and validate a YAML config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_config(data, source=str(path))
