"""Reading the config: YAML, `${ENV}` secrets, and every problem reported with its place in the file.

Errors name the path of the field (for example ``cameras → gate-3 → presets → main → zones → lane → polygon``).
Secrets come from environment variables written as ``${NAME}``; a missing variable is an error that names it.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

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
            hint = _did_you_mean(list(problem["loc"])) if problem["type"] == "extra_forbidden" else ""
            lines.append(f"  {where}: {problem['msg']}{hint}")
        raise ConfigError(f"{source}: {error.error_count()} problem(s)\n" + "\n".join(lines)) from None


def _did_you_mean(loc: list[Any]) -> str:
    """For an unknown field: the fields of its place in the tree that are spelled like it."""
    node: Any = CityConfig
    for part in loc[:-1]:
        node = _step(node, part)
        if node is None:
            return ""
    if not (isinstance(node, type) and issubclass(node, BaseModel)):
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(node.model_fields), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(name) for name in close)}?" if close else ""


def _step(node: Any, part: Any) -> Any:
    """The type one step down a validation error's path from `node` (a model, dict, list, union or Optional)."""
    while get_origin(node) is Annotated:
        node = get_args(node)[0]
    if isinstance(node, type) and issubclass(node, BaseModel):
        field = node.model_fields.get(str(part))
        return None if field is None else field.annotation
    origin, args = get_origin(node), get_args(node)
    if origin is dict:
        return args[1]
    if origin in (list, tuple, set, frozenset):
        return args[0]
    if origin in (Union, UnionType):
        models = [arg for arg in args if isinstance(arg, type) and issubclass(arg, BaseModel)]
        tagged = [m for m in models if "type" in m.model_fields and part in get_args(m.model_fields["type"].annotation)]
        if tagged:  # a discriminated union puts the tag it picked in the path
            return tagged[0]
        options = [arg for arg in args if arg is not type(None)]
        return _step(options[0], part) if len(options) == 1 else None
    return None


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
