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
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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

from citywatch.cases.lifecycle import Action, LifecyclePolicy, State
from citywatch.models.builtin import BUILTIN_PREFIX, resolve_model
from citywatch.vision.rules import ActiveWindow, DwellRule, GroupRule, PersistenceRule, PresenceRule, Rule
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
    if isinstance(value, str) and value.startswith(("P", "-P")):
        return value  # ISO 8601, as model_dump(mode="json") writes durations: pydantic parses it
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


class LiveFramesConfig(Strict):
    """Each preset's latest frame, for the cameras page (same endpoint and keys as `evidence`)."""

    enabled: bool = Field(True, description="Keep each preset's latest frame for the cameras page")
    bucket: str = Field(
        "citywatch-live", description="Bucket of latest frames (overwritten; keep it apart from the evidence bucket)"
    )
    every: Duration = Field(timedelta(seconds=30), description="At most one stored frame per preset this often")
    width: int = Field(640, ge=160, le=3840, description="Width of a stored frame in pixels (height keeps the aspect)")
    jpeg_quality: int = Field(70, ge=30, le=100, description="JPEG quality of stored frames")

    @model_validator(mode="after")
    def _positive(self) -> LiveFramesConfig:
        if self.every <= timedelta(0):
            raise ValueError(f"every: must be longer than zero, got {self.every}")
        return self


class StorageConfig(Strict):
    evidence: EvidenceStorageConfig
    live: LiveFramesConfig = Field(default_factory=LiveFramesConfig, description="Latest frames for the cameras page")
    database: str = Field("sqlite:///var/citywatch.db", description="SQLAlchemy URL of the case database")
    spool_dir: Path = Field(Path("var/spool"), description="Evidence waits here while the object store is down")

    @model_validator(mode="after")
    def _separate_buckets(self) -> StorageConfig:
        if self.live.enabled and self.live.bucket == self.evidence.bucket:
            raise ValueError(
                f"live.bucket: {self.live.bucket!r} is the evidence bucket; latest frames are overwritten all day "
                "and must not pile up under evidence retention: name another bucket"
            )
        return self


class DetectorConfig(Strict):
    model: str = Field(DEFAULT_MODEL, description="Path to an ONNX model, or builtin:coco-yolo11n")
    conf: float = Field(0.25, ge=0.0, le=1.0, description="Confidence below which detections are dropped")
    iou: float = Field(0.7, gt=0.0, le=1.0, description="IoU threshold of class-aware NMS")
    threads: int | None = Field(None, ge=1, description="onnxruntime intra-op threads (default: per machine)")


# -- warnings before filing (issue 6): actions, and a rule's `warn` --------------------------------------------


class HttpActionConfig(Strict):
    type: Literal["http"] = Field(description="http: POST a JSON warning (camera, preset, zone, kind, texts) to `url`")
    url: str = Field(description="http(s) URL of the speaker gateway or the camera's audio endpoint")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra request headers (e.g. Authorization); write secrets as ${ENV_VAR}"
    )
    timeout: Duration = Field(timedelta(seconds=3), description="HTTP timeout of one attempt")
    retries: int = Field(1, ge=0, le=10, description="Further attempts after a failed one")
    retry_after: Duration = Field(timedelta(seconds=1), description="Wait before a retry; doubles after each")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"not an http(s) URL: {url!r}")
        return url


ActionConfig = HttpActionConfig
"""One warning action; `type` picks which. A new type (ONVIF audio back-channel, a shell command) becomes a
discriminated union here plus a factory registered in `pipelines.warnings`."""


class WarnConfig(Strict):
    action: str = Field(description="Name of the action (under `actions:`) that warns, e.g. a speaker")
    grace: Duration = Field(
        description="After the warning, the case is filed only if the same problem is reported again this much "
        "later; must be longer than the rule's repeat_every"
    )
    tolerance: Duration | None = Field(
        None,
        description="How long after the grace a report may still come before the hold is dropped (warned, "
        "cleared); at least the preset's re-report interval. None: twice that interval",
    )

    @field_validator("grace")
    @classmethod
    def _positive(cls, grace: timedelta) -> timedelta:
        if grace <= timedelta(0):
            raise ValueError(f"must be longer than zero, got {grace}")
        return grace


class _RuleConfigBase(Strict):
    kind: str = Field(description="Violation kind filed (a key of the taxonomy, see docs/taxonomy.md)")
    classes: list[str] = Field(
        min_length=1, description="Detector class names that count (a fine-tuned model's own names plug in here)"
    )
    min_confidence: float = Field(0.3, ge=0.0, le=1.0, description="Detections below this are ignored")
    active: tuple[time, time] | None = Field(None, description="Local daily window [start, end) the rule runs")
    warn: WarnConfig | None = Field(
        None, description="Warn first (e.g. a voice warning) and file only if the problem is still there after grace"
    )

    @model_validator(mode="after")
    def _known_kind(self) -> _RuleConfigBase:
        if self.kind not in KINDS:
            raise ValueError(f"kind: unknown kind {self.kind!r}; known kinds: {', '.join(sorted(KINDS))}")
        return self

    @model_validator(mode="after")
    def _grace_outlasts_repeats(self) -> _RuleConfigBase:
        # A staying object is re-reported every repeat_every: a shorter grace would file at the first re-report.
        repeat_every: timedelta = getattr(self, "repeat_every", timedelta(0))
        if self.warn is not None and self.warn.grace <= repeat_every:
            raise ValueError(f"warn → grace: {self.warn.grace} must be longer than repeat_every ({repeat_every})")
        return self


class DwellRuleConfig(_RuleConfigBase):
    type: Literal["dwell"] = Field(description="dwell: an object stays in the zone for min_dwell")
    min_dwell: Duration = Field(description="How long the object must stay, e.g. 5m")
    max_gap: Duration = Field(timedelta(seconds=30), description="Unseen longer than this means it left")
    repeat_every: Duration = Field(timedelta(minutes=1), description="Re-report a staying object this often")
    identity: Literal["track", "overlap"] = Field(
        "track",
        description="How the same object is recognised: track (ByteTrack ids, within a visit) or overlap (its box "
        "stays where it was first seen; for patrol rates and across visits, with max_gap > the patrol interval)",
    )
    min_overlap: float = Field(0.5, gt=0.0, le=1.0, description="IoU with the first box that is the same object")


class PresenceRuleConfig(_RuleConfigBase):
    type: Literal["presence"] = Field(description="presence: a confident detection in the zone is a violation")
    repeat_every: Duration = Field(timedelta(minutes=10), description="Re-report the same object this often")
    max_gap: Duration = Field(timedelta(hours=1), description="Unseen longer than this means it is gone")
    min_overlap: float = Field(0.3, gt=0.0, le=1.0, description="IoU with the first box that is the same object")


class PersistenceRuleConfig(_RuleConfigBase):
    type: Literal["persistence"] = Field(
        description="persistence: the object is at the same place in `visits` of the last `of` visits"
    )
    visits: int = Field(ge=1, description="Visits (k) of the last `of` that must show the object")
    of: int = Field(ge=1, description="Number of recent visits (n) of the preset that are counted")
    min_overlap: float = Field(0.3, gt=0.0, le=1.0, description="IoU between visits that is the same place")
    repeat_every: Duration = Field(timedelta(0), description="Re-report a persisting object at most this often")

    @model_validator(mode="after")
    def _visits_within_of(self) -> PersistenceRuleConfig:
        if self.visits > self.of:
            raise ValueError(f"visits: {self.visits} must not exceed of ({self.of})")
        return self


class GroupRuleConfig(PersistenceRuleConfig):
    type: Literal["group"] = Field(  # type: ignore[assignment]
        description="group: objects of different classes stand together, persisting like `persistence`"
    )
    group_distance: float = Field(
        1.0, ge=0.0, description="Largest gap between neighbouring boxes, in heights of the taller box"
    )
    min_members: int = Field(2, ge=2, description="Fewest boxes in a group")
    min_classes: int = Field(2, ge=1, description="Fewest different classes in a group")

    @model_validator(mode="after")
    def _group_fits_classes(self) -> GroupRuleConfig:
        if self.min_classes > len(set(self.classes)):
            raise ValueError(f"min_classes: {self.min_classes} is more than the {len(set(self.classes))} classes")
        if self.min_members < self.min_classes:
            raise ValueError(f"min_members: {self.min_members} must be at least min_classes ({self.min_classes})")
        return self


RuleConfig = Annotated[
    DwellRuleConfig | PresenceRuleConfig | PersistenceRuleConfig | GroupRuleConfig, Field(discriminator="type")
]
"""One rule; `type` picks which (dwell, presence, persistence, group)."""
_RULE_TYPES = ("dwell", "presence", "persistence", "group")


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


class ScheduleConfig(Strict):
    every: Duration = Field(description="A visit of this preset this often, e.g. 15m")
    between: tuple[time, time] | None = Field(
        None, description='Local daily window [start, end) for visits, e.g. ["07:00", "21:00"]; may wrap midnight'
    )
    timezone: str | None = Field(None, description="Timezone of `between` (default: serving.timezone)")

    @field_validator("every")
    @classmethod
    def _positive(cls, every: timedelta) -> timedelta:
        if every <= timedelta(0):
            raise ValueError(f"must be longer than zero, got {every}")
        return every

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str | None) -> str | None:
        if name is not None:
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown timezone {name!r} (an IANA name such as Asia/Shanghai)") from None
        return name


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
    fleet_replicas: int = Field(1, ge=1, description="Replicas of the camera fleet; cameras are sharded over them")
    fleet_cpus: float = Field(0.5, gt=0.0, description="CPUs reserved per camera-fleet replica")


# -- cases: workflow times, accounts, webhooks, device events (issue 6) --------------------------------------


def _default_stage_limits() -> dict[State, timedelta]:
    return {
        State.AUTO_FILED: timedelta(hours=2),
        State.UNDER_REVIEW: timedelta(hours=24),
        State.CONFIRMED: timedelta(hours=24),
        State.DISPATCHED: timedelta(hours=72),
        State.HANDLED: timedelta(hours=48),
        State.REOPENED: timedelta(hours=24),
    }


class LifecycleConfig(Strict):
    stage_limits: dict[State, Duration] = Field(
        default_factory=_default_stage_limits,
        description="How long a case may stay in each state before it is overdue; states left out have no limit",
    )
    cooldown: Duration = Field(
        timedelta(hours=24),
        description="After a case is closed or rejected, the same problem is filed anew only this much later",
    )
    evidence_retention_days: int | None = Field(
        None,
        ge=1,
        description="COMPLIANCE retention of evidence objects in days (needs a bucket made with object lock); "
        "none: versioning only",
    )

    def policy(self) -> LifecyclePolicy:
        return LifecyclePolicy(stage_limits=dict(self.stage_limits), cooldown=self.cooldown)


class AuthConfig(Strict):
    token_ttl: Duration = Field(timedelta(hours=12), description="How long a login token stays valid")


class WebhookTargetConfig(Strict):
    url: str = Field(description="http(s) URL the events are POSTed to")
    secret: str = Field(min_length=16, description="HMAC-SHA256 key shared with the receiver; write ${ENV_VAR}")
    events: list[str] = Field(
        default_factory=list,
        description="Audit actions to send (file, review, confirm, reject, dispatch, handle, verify, close, "
        "reopen, correct_kind, comment); empty: all",
    )
    timeout: Duration = Field(timedelta(seconds=5), description="HTTP timeout of one attempt")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"not an http(s) URL: {url!r}")
        return url

    @field_validator("events")
    @classmethod
    def _known_events(cls, events: list[str]) -> list[str]:
        known = {"file", "correct_kind", "comment", *(action.value for action in Action)}
        unknown = sorted(set(events) - known)
        if unknown:
            raise ValueError(f"unknown events {unknown}; known: {', '.join(sorted(known))}")
        return events


class WebhookConfig(Strict):
    targets: dict[str, WebhookTargetConfig] = Field(default_factory=dict, description="Receivers by name")
    first_retry: Duration = Field(timedelta(seconds=5), description="Delay before the first retry; doubles after")
    max_backoff: Duration = Field(timedelta(hours=1), description="Longest delay between two attempts")
    max_attempts: int = Field(12, ge=1, description="Attempts before a delivery is marked failed")
    poll_every: Duration = Field(timedelta(seconds=1), description="How often new events are looked for")


class DeviceKindConfig(Strict):
    code: str = Field(pattern=r"^\d{5}$", description="Five-digit problem code filed for this kind")
    name_zh: str = Field(description="Chinese name shown to inspectors")
    name_en: str = Field(description="English name shown to inspectors")


class DeviceConfig(Strict):
    kinds: list[str] = Field(min_length=1, description="Kinds this device may report (under devices → kinds)")
    location: tuple[float, float] | None = Field(None, description="[latitude, longitude] of the device")


class DevicesConfig(Strict):
    kinds: dict[str, DeviceKindConfig] = Field(
        default_factory=dict, description="Problem kinds of non-camera devices (e.g. manhole_cover_tilt), by key"
    )
    devices: dict[str, DeviceConfig] = Field(
        default_factory=dict, description="Registered devices by id; events from others are refused"
    )

    @model_validator(mode="after")
    def _kinds_resolve(self) -> DevicesConfig:
        problems = [
            f"devices → {device_id} → kinds: no device kind {kind!r} (known: {', '.join(self.kinds) or 'none'})"
            for device_id, device in self.devices.items()
            for kind in device.kinds
            if kind not in self.kinds
        ]
        clashes = sorted(set(self.kinds) & set(KINDS))
        if clashes:
            problems.append(f"kinds {clashes} are camera kinds of the taxonomy; give device kinds their own keys")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class CityConfig(Strict):
    storage: StorageConfig
    detectors: dict[str, DetectorConfig] = Field(default_factory=lambda: {"default": DetectorConfig()})
    rules: dict[str, RuleConfig] = Field(description="Rules by name; zones refer to them")
    cameras: dict[str, CameraConfig] = Field(description="Cameras by id")
    serving: ServingConfig = Field(default_factory=ServingConfig)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig, description="Case workflow times")
    auth: AuthConfig = Field(default_factory=AuthConfig, description="API login settings")
    webhooks: WebhookConfig = Field(default_factory=WebhookConfig, description="Events to outside case systems")
    devices: DevicesConfig = Field(default_factory=DevicesConfig, description="Non-camera devices and their kinds")
    actions: dict[str, ActionConfig] = Field(
        default_factory=dict, description="Warning actions by name (speakers); a rule's `warn` refers to one"
    )

    @model_validator(mode="after")
    def _warnings_resolve(self) -> CityConfig:
        problems = []
        for name, rule in self.rules.items():
            if rule.warn is not None and rule.warn.action not in self.actions:
                known = ", ".join(self.actions) or "none"
                problems.append(
                    f"rules → {name} → warn → action: no action named {rule.warn.action!r} (known: {known})"
                )
        for camera_id, camera in self.cameras.items():
            for preset_id, preset in camera.presets.items():
                for zone_name, zone in preset.zones.items():
                    for name in zone.rules:
                        warn = self.rules[name].warn if name in self.rules else None
                        if warn is None or warn.tolerance is None:
                            continue
                        interval = self.rereport_interval(camera_id, preset_id, name)
                        if warn.tolerance < interval:
                            where = f"cameras → {camera_id} → presets → {preset_id} → zones → {zone_name}"
                            problems.append(
                                f"{where}: rules → {name} → warn → tolerance {warn.tolerance} is shorter than the "
                                f"re-report interval here ({interval}): a problem still there would be dropped"
                            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def rereport_interval(self, camera_id: str, preset_id: str, rule: str) -> timedelta:
        """Longest wait between two reports of a staying object by `rule` at this preset: the rule's
        repeat_every, or the time between visits when longer (the object is only seen when the camera looks)."""
        preset = self.cameras[camera_id].presets[preset_id]
        visit = preset.schedule.every if preset.schedule is not None else preset.sample_every * preset.samples
        return max(self.rules[rule].repeat_every, visit)

    def warn_tolerance(self, camera_id: str, preset_id: str, rule: str) -> timedelta:
        """The `warn → tolerance` of `rule` at this preset (default: twice its re-report interval)."""
        warn = self.rules[rule].warn
        if warn is not None and warn.tolerance is not None:
            return warn.tolerance
        return 2 * self.rereport_interval(camera_id, preset_id, rule)

    @model_validator(mode="after")
    def _references_resolve(self) -> CityConfig:
        problems = []
        for camera_id, camera in self.cameras.items():
            if camera.detector not in self.detectors:
                problems.append(f"cameras → {camera_id} → detector: no detector named {camera.detector!r}")
            for preset_id, preset in camera.presets.items():
                if preset.detector is not None and preset.detector not in self.detectors:
                    where = f"cameras → {camera_id} → presets → {preset_id} → detector"
                    known = ", ".join(self.detectors)
                    problems.append(f"{where}: no detector named {preset.detector!r} (known: {known})")
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

    def preset_detector(self, camera_id: str, preset_id: str) -> str:
        """The detector a preset uses: its own `detector`, else its camera's."""
        camera = self.cameras[camera_id]
        return camera.presets[preset_id].detector or camera.detector

    def watched_zones(self, camera_id: str, preset_id: str) -> list[WatchedZone]:
        """The zones of one preset compiled into vision objects with their rules."""
        preset = self.cameras[camera_id].presets[preset_id]
        return [
            WatchedZone(
                Zone(name, tuple(zone.polygon)),
                tuple(self.rule(rule) for rule in zone.rules),
            )
            for name, zone in preset.zones.items()
        ]

    def rule(self, name: str) -> Rule:
        """The rule `name` compiled into its vision object."""
        rule = self.rules[name]
        window = None
        if rule.active is not None:
            window = ActiveWindow(rule.active[0], rule.active[1], self.serving.timezone)
        common: dict[str, Any] = {
            "name": name,
            "kind": rule.kind,
            "classes": frozenset(rule.classes),
            "min_confidence": rule.min_confidence,
            "active": window,
        }
        if isinstance(rule, DwellRuleConfig):
            return DwellRule(
                **common,
                min_dwell=rule.min_dwell,
                max_gap=rule.max_gap,
                repeat_every=rule.repeat_every,
                identity=rule.identity,
                min_overlap=rule.min_overlap,
            )
        if isinstance(rule, PresenceRuleConfig):
            return PresenceRule(
                **common, repeat_every=rule.repeat_every, max_gap=rule.max_gap, min_overlap=rule.min_overlap
            )
        visits: dict[str, Any] = {"visits": rule.visits, "of": rule.of, "min_overlap": rule.min_overlap}
        if isinstance(rule, GroupRuleConfig):
            return GroupRule(
                **common,
                **visits,
                repeat_every=rule.repeat_every,
                group_distance=rule.group_distance,
                min_members=rule.min_members,
                min_classes=rule.min_classes,
            )
        return PersistenceRule(**common, **visits, repeat_every=rule.repeat_every)


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
            loc = list(problem["loc"])
            if len(loc) > 2 and loc[0] == "rules" and loc[2] in _RULE_TYPES:
                del loc[2]  # the union's tag (rules → r → dwell → min_dwell): the field is rules → r → min_dwell
            where = " → ".join(str(part) for part in loc) or "(top level)"
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
