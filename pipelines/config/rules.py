"""The `rules:` section: the vision rules as they are, plus a warning before filing (`warn:`) and its actions.

A rule's parameters are defined once, by the models in `citywatch.vision.rules`; each config class here is that
model with `warn` added, so the config and the scene read the same fields with the same defaults.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal, get_args

from pydantic import Field, model_validator

from citywatch.pipelines.config.outside import HttpUrl
from citywatch.vision.params import Duration, PositiveDuration, Strict
from citywatch.vision.rules import DwellRule, GroupRule, PersistenceRule, PresenceRule, Rule


class HttpActionConfig(Strict):
    type: Literal["http"] = Field(description="http: POST a JSON warning (camera, preset, zone, kind, texts) to `url`")
    url: HttpUrl = Field(description="http(s) URL of the speaker gateway or the camera's audio endpoint")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra request headers (e.g. Authorization); write secrets as ${ENV_VAR}"
    )
    timeout: Duration = Field(timedelta(seconds=3), description="HTTP timeout of one attempt")
    retries: int = Field(1, ge=0, le=10, description="Further attempts after a failed one")
    retry_after: Duration = Field(timedelta(seconds=1), description="Wait before a retry; doubles after each")


ActionConfig = HttpActionConfig
"""One warning action; `type` picks which. A new type (ONVIF audio back-channel, a shell command) becomes a
discriminated union here plus a factory registered in `pipelines.warnings`."""


class WarnConfig(Strict):
    action: str = Field(description="Name of the action (under `actions:`) that warns, e.g. a speaker")
    grace: PositiveDuration = Field(
        description="After the warning, the case is filed only if the same problem is reported again this much "
        "later; must be longer than the rule's repeat_every"
    )
    tolerance: Duration | None = Field(
        None,
        description="How long after the grace a report may still come before the hold is dropped (warned, "
        "cleared); at least the preset's re-report interval. None: twice that interval",
    )


class Warned(Rule):
    """What the config adds to every rule: an optional warning before filing."""

    warn: WarnConfig | None = Field(
        None, description="Warn first (e.g. a voice warning) and file only if the problem is still there after grace"
    )

    @model_validator(mode="after")
    def _grace_outlasts_repeats(self) -> Warned:
        # A staying object is re-reported every repeat_every: a shorter grace would file at the first re-report.
        if self.warn is not None and self.warn.grace <= self.repeat_every:
            raise ValueError(f"warn → grace: {self.warn.grace} must be longer than repeat_every ({self.repeat_every})")
        return self


class DwellRuleConfig(DwellRule, Warned):
    """A `DwellRule` in the config."""


class PresenceRuleConfig(PresenceRule, Warned):
    """A `PresenceRule` in the config."""


class PersistenceRuleConfig(PersistenceRule, Warned):
    """A `PersistenceRule` in the config."""


class GroupRuleConfig(GroupRule, Warned):
    """A `GroupRule` in the config."""


RuleConfigs = DwellRuleConfig | PresenceRuleConfig | PersistenceRuleConfig | GroupRuleConfig
RuleConfig = Annotated[RuleConfigs, Field(discriminator="type")]
"""One rule; `type` picks which (dwell, presence, persistence, group)."""

RULE_TYPES = frozenset(get_args(cls.model_fields["type"].annotation)[0] for cls in get_args(RuleConfigs))
"""The values of `type`: pydantic puts the one it picked in an error's path."""
