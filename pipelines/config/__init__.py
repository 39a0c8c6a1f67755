"""The configuration tree: one YAML file, validated once at start-up, one module per section.

`load_config` reads a file; `CityConfig` is the whole tree. Rules are the models of `citywatch.vision.rules`
(plus `warn`), so a rule's parameters are defined, described and defaulted once.
"""

from citywatch.pipelines.config.cameras import (
    DEFAULT_MODEL,
    CameraConfig,
    DetectorConfig,
    PresetConfig,
    PtzConfig,
    ScheduleConfig,
    ZoneConfig,
)
from citywatch.pipelines.config.city import CityConfig
from citywatch.pipelines.config.filing import FilingConfig
from citywatch.pipelines.config.loader import ConfigError, load_config, parse_config
from citywatch.pipelines.config.outside import (
    DeviceConfig,
    DeviceKindConfig,
    DevicesConfig,
    HttpUrl,
    WebhookConfig,
    WebhookTargetConfig,
)
from citywatch.pipelines.config.rules import (
    ActionConfig,
    DwellRuleConfig,
    GroupRuleConfig,
    HttpActionConfig,
    PersistenceRuleConfig,
    PresenceRuleConfig,
    RuleConfig,
    WarnConfig,
)
from citywatch.pipelines.config.serving import AuthConfig, LifecycleConfig, ServingConfig
from citywatch.pipelines.config.storage import EvidenceStorageConfig, LiveFramesConfig, StorageConfig
from citywatch.vision.params import Duration, Strict

__all__ = [
    "DEFAULT_MODEL",
    "ActionConfig",
    "AuthConfig",
    "CameraConfig",
    "CityConfig",
    "ConfigError",
    "DetectorConfig",
    "DeviceConfig",
    "DeviceKindConfig",
    "DevicesConfig",
    "Duration",
    "DwellRuleConfig",
    "EvidenceStorageConfig",
    "FilingConfig",
    "GroupRuleConfig",
    "HttpActionConfig",
    "HttpUrl",
    "LifecycleConfig",
    "LiveFramesConfig",
    "PersistenceRuleConfig",
    "PresenceRuleConfig",
    "PresetConfig",
    "PtzConfig",
    "RuleConfig",
    "ScheduleConfig",
    "ServingConfig",
    "StorageConfig",
    "Strict",
    "WarnConfig",
    "WebhookConfig",
    "WebhookTargetConfig",
    "ZoneConfig",
    "load_config",
    "parse_config",
]
