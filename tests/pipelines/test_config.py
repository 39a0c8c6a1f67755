"""The config tree: valid files load, every malformed one names the place that is wrong."""

from __future__ import annotations

import re
from datetime import time, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from citywatch.pipelines.config import ConfigError, load_config, parse_config
from citywatch.vision.rules import ActiveWindow, DwellRule, GroupRule, PersistenceRule, PresenceRule

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


# -- every rule parameter is set from YAML, and reaches the rule the scene runs ----------------------------------

EVERY_PARAMETER = {
    "dwell": (
        """
        type: dwell
        kind: motor_vehicle_illegal_parking
        classes: [car, truck]
        min_confidence: 0.45
        active: {start: "07:00", end: "21:00", timezone: Europe/Berlin}
        min_dwell: 4m
        max_gap: 20m
        repeat_every: 7m
        identity: overlap
        min_overlap: 0.6
        max_missed: 5
        min_area: 0.001
        max_area: 0.5
        min_aspect: 0.5
        max_aspect: 4
        merge_iou: 0.8
        warn: {action: speaker, grace: 10m, tolerance: 1h}
        """,
        {
            "classes": frozenset({"car", "truck"}),
            "min_confidence": 0.45,
            "active": ActiveWindow(time(7), time(21), "Europe/Berlin"),
            "min_dwell": timedelta(minutes=4),
            "max_gap": timedelta(minutes=20),
            "repeat_every": timedelta(minutes=7),
            "identity": "overlap",
            "min_overlap": 0.6,
            "max_missed": 5,
            "min_area": 0.001,
            "max_area": 0.5,
            "min_aspect": 0.5,
            "max_aspect": 4.0,
            "merge_iou": 0.8,
        },
    ),
    "presence": (
        """
        type: presence
        kind: exposed_garbage
        classes: [garbage]
        min_confidence: 0.55
        active: ["22:00", "06:00"]
        repeat_every: 3m
        max_gap: 2h
        min_overlap: 0.4
        min_area: 0.0005
        max_area: 0.25
        min_aspect: 0.3
        max_aspect: 5
        merge_iou: null
        warn: {action: speaker, grace: 10m, tolerance: 1h}
        """,
        {
            "min_confidence": 0.55,
            "active": ActiveWindow(time(22), time(6), "UTC"),  # serving.timezone
            "repeat_every": timedelta(minutes=3),
            "max_gap": timedelta(hours=2),
            "min_overlap": 0.4,
            "min_area": 0.0005,
            "max_area": 0.25,
            "min_aspect": 0.3,
            "max_aspect": 5.0,
            "merge_iou": None,
        },
    ),
    "persistence": (
        """
        type: persistence
        kind: accumulated_garbage
        classes: [garbage, bag]
        min_confidence: 0.35
        active: ["07:00", "21:00"]
        visits: 3
        of: 5
        min_overlap: 0.25
        repeat_every: 30m
        min_area: 0.001
        max_area: 0.6
        min_aspect: 0.2
        max_aspect: 8
        merge_iou: 0.5
        warn: {action: speaker, grace: 45m, tolerance: 2h}
        """,
        {
            "classes": frozenset({"garbage", "bag"}),
            "visits": 3,
            "of": 5,
            "repeat_every": timedelta(minutes=30),
            "max_area": 0.6,
            "merge_iou": 0.5,
        },
    ),
    "group": (
        """
        type: group
        kind: road_occupying_business
        classes: [umbrella, dining table, chair]
        min_confidence: 0.26
        active: ["07:00", "21:00"]
        visits: 1
        of: 2
        min_overlap: 0.45
        repeat_every: 20m
        group_distance: 0.7
        min_members: 4
        min_classes: 3
        min_area: 0.002
        max_area: 0.3
        min_aspect: 0.25
        max_aspect: 3
        merge_iou: 0.9
        warn: {action: speaker, grace: 30m, tolerance: 2h}
        """,
        {
            "min_confidence": 0.26,
            "min_overlap": 0.45,
            "group_distance": 0.7,
            "min_members": 4,
            "min_classes": 3,
            "min_area": 0.002,
            "merge_iou": 0.9,
        },
    ),
}


@pytest.mark.parametrize(("text", "expected"), EVERY_PARAMETER.values(), ids=EVERY_PARAMETER.keys())
def test_every_rule_parameter_is_set_from_yaml(text: str, expected: dict[str, Any]) -> None:
    written = yaml.safe_load(text)
    data = document(("rules",), {"r": written})
    data["serving"] = {"timezone": "UTC"}
    data["actions"] = {"speaker": {"type": "http", "url": "http://127.0.0.1:9/speak"}}
    data["cameras"]["gate-3"]["presets"]["main"]["zones"]["fire-lane"]["rules"] = ["r"]
    config = parse_config(data)
    (watched,) = config.watched_zones("gate-3", "main")
    (rule,) = watched.rules
    # The test writes every parameter the rule has: a new one fails here until it is set from YAML too.
    assert set(written) | {"name"} == set(type(config.rules["r"]).model_fields)
    assert rule.name == "r" and rule.kind == written["kind"]
    for field, value in expected.items():
        assert getattr(rule, field) == value, field
    assert config.rules["r"].warn is not None and config.rules["r"].warn.action == "speaker"


BAD_RULE_VALUES = {
    "max-missed-negative": ({"max_missed": -1}, "rules → r → max_missed", "greater than or equal to 0"),
    "max-gap-zero": ({"max_gap": "0s"}, "rules → r → max_gap", "longer than zero"),
    "min-overlap-zero": ({"min_overlap": 0}, "rules → r → min_overlap", "greater than 0"),
    "min-confidence-over-one": ({"min_confidence": 1.5}, "rules → r → min_confidence", "less than or equal to 1"),
    "negative-repeat": ({"repeat_every": "-PT1M"}, "rules → r → repeat_every", "must be >= 0"),
    "no-classes": ({"classes": []}, "rules → r → classes", "must not be empty"),
    "window-of-one-time": ({"active": ["07:00"]}, "rules → r → active", r"a window is \[start, end\]"),
    "window-in-no-timezone": (
        {"active": {"start": "07:00", "end": "09:00", "timezone": "Mars/Base"}},
        "rules → r → active → timezone",
        "unknown timezone 'Mars/Base'",
    ),
    "name-not-the-key": ({"name": "other"}, "rules", "r → name: 'other' is not the rule's key"),
}


@pytest.mark.parametrize(("change", "where", "what"), BAD_RULE_VALUES.values(), ids=BAD_RULE_VALUES.keys())
def test_bad_rule_values_are_refused_with_their_path(change: dict[str, Any], where: str, what: str) -> None:
    rule = {"type": "dwell", "kind": "motor_vehicle_illegal_parking", "classes": ["car"], "min_dwell": "1m"}
    with pytest.raises(ConfigError) as caught:
        parse_config(document(("rules", "r"), rule | change), source="city.yaml")
    message = str(caught.value)
    assert f"{where}: " in message, message
    assert re.search(what, message), message


def test_an_unknown_city_timezone_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"serving → timezone: .*unknown timezone 'Moon/Base'"):
        parse_config(document(("serving",), {"timezone": "Moon/Base"}))


# -- a rule must be able to work on every preset that runs it ------------------------------------------------------

FIRE_LANE = "cameras → gate-3 → presets → main → zones → fire-lane: rules → illegal_parking"
UNWORKABLE = {
    "below-the-detector": (
        {("rules", "illegal_parking", "min_confidence"): 0.2},
        r"min_confidence 0.2 is below the conf 0.25 of detector 'default': no box under 0.25 reaches the rule, so "
        r"it would act as 0.25. Set min_confidence >= 0.25, or lower detectors → default → conf",
    ),
    "one-sample-visits": (
        {(*PRESET, "schedule"): {"every": "15m"}, (*PRESET, "samples"): 1},
        r"identity track can never confirm a track here: a track is confirmed at its second sample and the "
        r"tracker restarts with every visit, which takes 1 sample. Set samples >= 2 on the preset, or identity: "
        r"overlap",
    ),
    "gap-shorter-than-sampling": (
        {("rules", "illegal_parking", "max_gap"): "1s"},
        r"max_gap 0:00:01 is shorter than the preset's sample_every \(0:00:02\): every stay ends before the next",
    ),
}


@pytest.mark.parametrize(("changes", "why"), UNWORKABLE.values(), ids=UNWORKABLE.keys())
def test_a_rule_that_could_never_work_is_refused_with_the_reason(changes: dict[tuple[str, ...], Any], why: str) -> None:
    data = document()
    for path, value in changes.items():
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="city.yaml")
    message = str(caught.value)
    assert FIRE_LANE in message, message
    assert re.search(why, message), message


def test_the_same_rule_works_where_its_settings_fit() -> None:
    data = document(("rules", "illegal_parking", "min_confidence"), 0.2)
    data["detectors"] = {"default": {"conf": 0.2}}  # the detector keeps what the rule asks for
    assert parse_config(data).rules["illegal_parking"].min_confidence == 0.2
    overlap = document(("rules", "illegal_parking", "identity"), "overlap")
    overlap["cameras"]["gate-3"]["presets"]["main"] |= {"schedule": {"every": "15m"}, "samples": 1}
    assert parse_config(overlap).rules["illegal_parking"].follows_tracks() is False  # overlap needs no second sample


def test_filing_related_kinds_default_covers_garbage_and_names_what_is_wrong() -> None:
    related = parse_config(document()).filing.related()
    assert related.group("exposed_garbage") == ("overflowing_bin", "accumulated_garbage", "exposed_garbage")
    assert related.outranks("overflowing_bin", "exposed_garbage") and related.near == 0.25
    vehicles = [["motor_vehicle_illegal_parking", "non_motor_vehicle_disorderly_parking"]]
    assert parse_config(document(("filing",), {"related_kinds": vehicles, "near": 0})).filing.related().groups == (
        tuple(vehicles[0]),
    )
    assert parse_config(document(("filing",), {"related_kinds": []})).filing.related().groups == ()
    cases = [
        (
            [["overflowing_bin", "exposd_garbage"]],
            r"filing → related_kinds: .*group 0: unknown camera kind "
            r"'exposd_garbage' \(known: accumulated_garbage, ",
        ),
        (
            [["overflowing_bin", "exposed_garbage"], ["exposed_garbage", "accumulated_garbage"]],
            r"filing → related_kinds: .*group 1: 'exposed_garbage' is already in group 0; one group per kind",
        ),
        ([["overflowing_bin"]], r"filing → related_kinds: .*group 0 \['overflowing_bin'\]: name at least two kinds"),
    ]
    for groups, message in cases:
        with pytest.raises(ConfigError, match=message):
            parse_config(document(("filing",), {"related_kinds": groups}))
    with pytest.raises(ConfigError, match=r"filing → near: "):
        parse_config(document(("filing",), {"near": -1}))
