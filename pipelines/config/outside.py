"""Outside systems: webhooks to case systems, non-camera devices and their kinds, and http(s) URLs."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator, model_validator

from citywatch.cases.lifecycle import Action
from citywatch.vision.params import Duration, Strict
from citywatch.vision.taxonomy import KINDS


def _http_url(url: str) -> str:
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError(f"not an http(s) URL: {url!r}")
    return url


HttpUrl = Annotated[str, AfterValidator(_http_url)]
"""An http(s) URL, kept as written."""


class WebhookTargetConfig(Strict):
    url: HttpUrl = Field(description="http(s) URL the events are POSTed to")
    secret: str = Field(min_length=16, description="HMAC-SHA256 key shared with the receiver; write ${ENV_VAR}")
    events: list[str] = Field(
        default_factory=list,
        description="Audit actions to send (file, review, confirm, reject, dispatch, handle, verify, close, "
        "reopen, correct_kind, comment); empty: all",
    )
    timeout: Duration = Field(timedelta(seconds=5), description="HTTP timeout of one attempt")

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
