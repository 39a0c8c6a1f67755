"""The whole city: every section, the references between them, and what the scene and patrol are built from."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from citywatch.models.builtin import resolve_model
from citywatch.pipelines.config.cameras import CameraConfig, DetectorConfig, PresetConfig
from citywatch.pipelines.config.filing import FilingConfig
from citywatch.pipelines.config.outside import DevicesConfig, WebhookConfig
from citywatch.pipelines.config.rules import ActionConfig, RuleConfig
from citywatch.pipelines.config.serving import AuthConfig, LifecycleConfig, ServingConfig
from citywatch.pipelines.config.storage import StorageConfig
from citywatch.vision.params import Strict
from citywatch.vision.rules import FrameRule, Rule
from citywatch.vision.scene import WatchedZone


class CityConfig(Strict):
    storage: StorageConfig
    detectors: dict[str, DetectorConfig] = Field(default_factory=lambda: {"default": DetectorConfig()})
    rules: dict[str, RuleConfig] = Field(
        description="Rules by name; zones refer to them. A rule's `name` is its key here (written or not)"
    )
    cameras: dict[str, CameraConfig] = Field(description="Cameras by id")
    serving: ServingConfig = Field(default_factory=ServingConfig)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig, description="Case workflow times")
    filing: FilingConfig = Field(default_factory=FilingConfig, description="One case per problem across kinds")
    auth: AuthConfig = Field(default_factory=AuthConfig, description="API login settings")
    webhooks: WebhookConfig = Field(default_factory=WebhookConfig, description="Events to outside case systems")
    devices: DevicesConfig = Field(default_factory=DevicesConfig, description="Non-camera devices and their kinds")
    actions: dict[str, ActionConfig] = Field(
        default_factory=dict, description="Warning actions by name (speakers); a rule's `warn` refers to one"
    )

    @field_validator("rules", mode="before")
    @classmethod
    def _named_by_their_keys(cls, rules: Any) -> Any:
        if not isinstance(rules, dict):
            return rules
        named = {}
        for key, rule in rules.items():
            if isinstance(rule, dict):
                if rule.get("name", key) != key:
                    raise ValueError(f"{key} → name: {rule['name']!r} is not the rule's key {key!r}; leave it out")
                rule = {**rule, "name": key}
            named[key] = rule
        return named

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

    @model_validator(mode="after")
    def _rules_fit_their_presets(self) -> CityConfig:
        """Each rule against the detector and sampling of every preset that runs it: refuse what could never
        work as written, saying why and what to change."""
        problems = []
        for camera_id, camera in self.cameras.items():
            for preset_id, preset in camera.presets.items():
                detector_name = preset.detector or camera.detector
                detector = self.detectors.get(detector_name)
                for zone_name, zone in preset.zones.items():
                    where = f"cameras → {camera_id} → presets → {preset_id} → zones → {zone_name}"
                    for name in zone.rules:
                        rule = self.rules.get(name)
                        if rule is None or detector is None:
                            continue  # named in `_references_resolve`
                        problems += [
                            f"{where}: rules → {name} → {p}"
                            for p in rule_problems(rule, detector_name, detector, preset)
                        ]
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
        """The zones of one preset with the rules that watch them, as the scene runs them."""
        preset = self.cameras[camera_id].presets[preset_id]
        return [
            WatchedZone(zone.zone(name), tuple(self.rule(rule) for rule in zone.rules))
            for name, zone in preset.zones.items()
        ]

    def rule(self, name: str) -> Rule:
        """The rule `name` as the scene runs it: its `active` window in serving.timezone unless it names one."""
        rule = self.rules[name]
        if rule.active is None or rule.active.timezone is not None:
            return rule
        return rule.model_copy(update={"active": replace(rule.active, timezone=self.serving.timezone)})


def rule_problems(rule: Rule, detector_name: str, detector: DetectorConfig, preset: PresetConfig) -> list[str]:
    """Why `rule` cannot work as written on a preset with this detector and sampling (empty: it can)."""
    problems = []
    if rule.min_confidence < detector.conf:
        problems.append(
            f"min_confidence {rule.min_confidence} is below the conf {detector.conf} of detector {detector_name!r}: "
            f"no box under {detector.conf} reaches the rule, so it would act as {detector.conf}. Set min_confidence "
            f">= {detector.conf}, or lower detectors → {detector_name} → conf"
        )
    if isinstance(rule, FrameRule) and rule.follows_tracks():
        if preset.schedule is not None and preset.samples < 2:
            problems.append(
                f"identity track can never confirm a track here: a track is confirmed at its second sample and the "
                f"tracker restarts with every visit, which takes {preset.samples} sample. Set samples >= 2 on the "
                "preset, or identity: overlap"
            )
        if rule.max_gap < preset.sample_every:
            problems.append(
                f"max_gap {rule.max_gap} is shorter than the preset's sample_every ({preset.sample_every}): every "
                "stay ends before the next sample, so no track's dwell ever grows. Set max_gap longer than sample_every"
            )
    return problems
