"""The config tree: valid files load, every malformed one names the place that is wrong."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from citywatch.pipelines.config import ConfigError, load_config, parse_config
from citywatch.vision.rules import DwellRule, GroupRule, PersistenceRule, PresenceRule

VALID = """
storage:
  evidence: {endpoint: "127.0.0.1:8333", access_key: "${CW_KEY}", secret_key: "${CW_SECRET}"}
rules:
  illegal_parking: {type: dwell, kind: motor_vehicle_illegal_parking, classes: [car, truck], min_dwell: 5m}
cameras:
  gate-3:
    rtsp: rtsp://127.0.0.1:8554/gate-3
    presets:
      main:
        sample_every: 2s
        zones:
          fire-lane: {polygon: [[0.1, 0.5], [0.9, 0.5], [0.9, 1.0], [0.1, 1.0]], rules: [illegal_parking]}
"""


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CW_KEY", "key-from-env")
    monkeypatch.setenv("CW_SECRET", "secret-from-env")


def document(*path_and_value: Any) -> dict[str, Any]:
    """The valid document with the value at `path` (a tuple of keys) replaced."""
    data: dict[str, Any] = yaml.safe_load(VALID)
    if path_and_value:
        (*parents, leaf), value = path_and_value
        node = data
        for key in parents:
            node = node[key]
        node[leaf] = value
    return data


PRESET = ("cameras", "gate-3", "presets", "main")


def test_valid_config_loads_with_secrets_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "city.yaml"
    path.write_text(VALID)
    config = load_config(path)
    assert config.storage.evidence.access_key == "key-from-env"
    assert config.rules["illegal_parking"].min_dwell == timedelta(minutes=5)
    (watched,) = config.watched_zones("gate-3", "main")
    assert watched.zone.name == "fire-lane"
    assert watched.rules[0].classes == frozenset({"car", "truck"})
    assert config.detectors["default"].model == "builtin:coco-yolo11n"


def test_anchored_config_has_absolute_paths(tmp_path: Path) -> None:
    config = parse_config(document()).anchored(tmp_path)
    assert config.storage.database == f"sqlite:///{tmp_path}/var/citywatch.db"
    assert config.storage.spool_dir == tmp_path / "var" / "spool"
    assert Path(config.detectors["default"].model).is_file()  # the shipped model


def test_missing_secret_names_the_variable_and_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CW_SECRET")
    with pytest.raises(ConfigError, match=r"storage → evidence → secret_key: environment variable CW_SECRET"):
        parse_config(document())


@pytest.mark.parametrize(
    ("data", "where", "what"),
    [
        (
            document(
                (*PRESET, "zones"),
                {"fire-lane": {"polygon": [[0, 0], [1.5, 0], [0, 1]], "rules": ["illegal_parking"]}},
            ),
            "cameras → gate-3 → presets → main → zones → fire-lane → polygon",
            r"\[0, 1\]",
        ),
        (
            document(
                (*PRESET, "zones"),
                {"fire-lane": {"polygon": [[0, 0], [1, 0], [0, 1]], "rules": ["no_such_rule"]}},
            ),
            "cameras → gate-3 → presets → main → zones → fire-lane → rules",
            "no rule named 'no_such_rule'",
        ),
        (
            document(("rules",), {"r": {"type": "dwell", "kind": "x", "classes": ["car"], "min_dwell": "1m"}}),
            "rules → r",
            "unknown kind 'x'",
        ),
        (
            document(
                ("rules",),
                {"r": {"type": "dwell", "kind": "exposed_garbage", "classes": ["car"], "min_dwell": "soon"}},
            ),
            "rules → r → min_dwell",
            "not a duration",
        ),
        (
            document(("cameras", "gate-3", "rtps"), "typo"),
            "cameras → gate-3 → rtps",
            "Extra inputs are not permitted",
        ),
        (
            document(("cameras", "gate-3", "detector"), "night"),
            "cameras → gate-3 → detector",
            "no detector named 'night'",
        ),
    ],
    ids=[
        "polygon-outside-frame",
        "unknown-rule",
        "unknown-kind",
        "bad-duration",
        "typo-field",
        "unknown-detector",
    ],
)
def test_malformed_config_names_the_place(data: dict[str, Any], where: str, what: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="city.yaml")
    message = str(caught.value)
    assert message.startswith("city.yaml")
    assert where in message
    assert re.search(what, message), message


def test_unreadable_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("cameras: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(scalar)


RULES_OF_EVERY_TYPE = """
parking: {type: dwell, kind: motor_vehicle_illegal_parking, classes: [car], min_dwell: 5m, identity: overlap,
          max_gap: 20m}
garbage: {type: presence, kind: exposed_garbage, classes: [litter_heap_v7], min_confidence: 0.5}
pile: {type: persistence, kind: accumulated_garbage, classes: [garbage], visits: 2, of: 3}
stall: {type: group, kind: road_occupying_business, classes: [umbrella, dining table, chair], visits: 2, of: 3,
        group_distance: 0.5, active: ["07:00", "21:00"]}
"""


def test_every_rule_type_compiles_into_its_vision_rule() -> None:
    rules = yaml.safe_load(RULES_OF_EVERY_TYPE)
    data = document(("rules",), rules)
    data["cameras"]["gate-3"]["presets"]["main"]["zones"]["fire-lane"]["rules"] = list(rules)
    (watched,) = parse_config(data).watched_zones("gate-3", "main")
    parking, garbage, pile, stall = watched.rules
    assert isinstance(parking, DwellRule) and parking.identity == "overlap"
    assert isinstance(garbage, PresenceRule) and garbage.classes == frozenset({"litter_heap_v7"})
    assert isinstance(pile, PersistenceRule) and (pile.visits, pile.of) == (2, 3)
    assert isinstance(stall, GroupRule) and stall.group_distance == 0.5
    assert stall.active is not None and stall.active.timezone == "Asia/Shanghai"


GARBAGE = {"kind": "accumulated_garbage", "classes": ["garbage"]}
MALFORMED_RULES = {
    "unknown-type": ({"type": "sometimes", **GARBAGE}, "rules → r", "does not match"),
    "visits-over-of": ({"type": "persistence", **GARBAGE, "visits": 4, "of": 3}, "rules → r", r"visits: 4 .* of \(3\)"),
    "missing-visits": ({"type": "persistence", **GARBAGE, "of": 3}, "rules → r → visits", "required"),
    "group-min-classes": (
        {"type": "group", "kind": "road_occupying_business", "classes": ["chair"], "visits": 1, "of": 1},
        "rules → r",
        "min_classes: 2 is more than the 1 classes",
    ),
    "bad-identity": (
        {"type": "dwell", **GARBAGE, "min_dwell": "1m", "identity": "kalman"},
        "rules → r → identity",
        "'track' or 'overlap'",
    ),
    "field-of-another-type": ({"type": "presence", **GARBAGE, "visits": 2}, "rules → r → visits", "Extra"),
}


@pytest.mark.parametrize(("rule", "where", "what"), MALFORMED_RULES.values(), ids=MALFORMED_RULES.keys())
def test_malformed_rule_names_the_field(rule: dict[str, Any], where: str, what: str) -> None:
    data = document(("rules", "r"), rule)
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="city.yaml")
    message = str(caught.value)
    assert where in message, message
    assert re.search(what, message), message
