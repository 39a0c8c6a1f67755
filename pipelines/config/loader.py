"""Reading the config: YAML, `${ENV}` secrets, and every problem reported with its place in the file.

Errors name the path of the field (for example ``cameras → gate-3 → presets → main → zones → lane → polygon``).
Secrets come from environment variables written as ``${NAME}``; a missing variable is an error that names it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from citywatch.pipelines.config.city import CityConfig
from citywatch.pipelines.config.rules import RULE_TYPES


class ConfigError(ValueError):
    """The configuration is invalid; the message lists every problem with its place in the file."""


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
            if len(loc) > 2 and loc[0] == "rules" and loc[2] in RULE_TYPES:
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
