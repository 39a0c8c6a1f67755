"""Parameter types shared by the rules here and the config tree above: strict frozen models, durations, timezones.

A rule's parameters are pydantic models (see `rules`), so the YAML config uses them as they are; the config's
own sections build on the same base, and parse durations and timezones the same way.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

__all__ = ["DEFAULT_TIMEZONE", "Duration", "PositiveDuration", "Strict", "TimezoneName", "known_timezone"]

DEFAULT_TIMEZONE = "Asia/Shanghai"
"""Timezone of rule windows and schedules when the config names none (`serving.timezone`)."""


class Strict(BaseModel):
    """A frozen model that refuses unknown fields: a typo in the config is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
"""A duration written as seconds (30), with a unit (500ms, 30s, 5m, 1h, 1d) or in ISO 8601."""


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError(f"must be longer than zero, got {value}")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
"""A `Duration` longer than zero."""


def known_timezone(name: str) -> str:
    """`name` if it is an IANA timezone; a ValueError that says what to write otherwise."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r} (an IANA name such as Asia/Shanghai)") from None
    return name


TimezoneName = Annotated[str, AfterValidator(known_timezone)]
"""An IANA timezone name, checked when the config is read."""
