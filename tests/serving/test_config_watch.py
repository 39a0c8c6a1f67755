"""Per-preset detectors in the config tree and the fleet, and `ConfigWatcher` without Ray: what a running city
takes in place, what it refuses, and a model promotion in the registry reaching the detectors."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import supervision as sv
import yaml

from citywatch.models.builtin import BUILTIN_MODELS
from citywatch.models.registry import ModelRegistry
from citywatch.pipelines.config import CityConfig, ConfigError, parse_config
from citywatch.pipelines.fleet import Fleet
from citywatch.pipelines.schedule import ManualClock
from citywatch.serving.runner import ConfigWatcher, load_city, needs_restart, preflight
from citywatch.vision.violation import Violation
from tests.configs import no_store
from tests.fakes import StillReader

ZONE = {"polygon": [[0, 0], [1, 0], [1, 1]], "rules": ["car"]}


def document(bins_detector: str | None = "garbage", default_model: str = "builtin:coco-yolo11n") -> dict[str, Any]:
    bins: dict[str, Any] = {"token": "2", "zones": {"z": ZONE}}
    if bins_detector is not None:
        bins["detector"] = bins_detector
    return {
        "storage": no_store(),
        "detectors": {"default": {"model": default_model}, "garbage": {"model": "builtin:garbage-yolo11n"}},
        "rules": {"car": {"type": "presence", "kind": "motor_vehicle_illegal_parking", "classes": ["car"]}},
        "cameras": {
            "dome": {
                "rtsp": "rtsp://127.0.0.1:1/dome",
                "ptz": {"onvif": "127.0.0.1:2"},
                "presets": {"street": {"token": "1", "zones": {"z": ZONE}}, "bins": bins},
            }
        },
    }


def test_a_preset_names_its_own_detector_and_a_wrong_name_is_reported_with_its_place() -> None:
    config = parse_config(document())
    assert config.preset_detector("dome", "bins") == "garbage"
    assert config.preset_detector("dome", "street") == "default"
    with pytest.raises(ConfigError, match=r"cameras → dome → presets → bins → detector: no detector named 'trash'"):
        parse_config(document("trash"))


def test_preflight_names_the_presets_a_broken_detector_would_stop() -> None:
    doc = document()
    doc["detectors"]["garbage"]["model"] = "/nonexistent/garbage.onnx"
    problems = preflight(parse_config(doc))
    assert len(problems) == 1 and "dome/bins" in problems[0]


def test_each_preset_is_detected_by_its_detector_and_a_model_change_restarts_no_camera() -> None:
    used: list[str] = []

    def detect_for(name: str) -> Any:
        async def detect(image: np.ndarray) -> sv.Detections:
            used.append(name)
            return sv.Detections.empty()

        return detect

    async def sink(violation: Violation) -> None:
        pass

    async def scenario() -> None:
        fleet = Fleet(
            detect_for=detect_for,
            sink=sink,
            reader_factory=StillReader,
            clock=ManualClock(datetime.now(UTC)),
            ptz_factory=lambda camera_id, config: FakePtz(),  # type: ignore[arg-type,return-value]
            model_versions={"default": "c1", "garbage": "g1"},
        )
        config = parse_config(document())
        visits = {p.preset_id: p for p in _visits(fleet, config)}
        assert visits["bins"].detector == "garbage" and visits["street"].detector == "default"
        assert visits["bins"].scene.model_version == "g1"
        assert visits["bins"].detect is not None and visits["street"].detect is not None
        await visits["bins"].detect(np.zeros((4, 4, 3), np.uint8))
        await visits["street"].detect(np.zeros((4, 4, 3), np.uint8))
        assert used == ["garbage", "default"]
        fleet.set_model_versions({"default": "c1", "garbage": "g2"})  # hot swap: scenes record the new version
        assert visits["bins"].scene.model_version == "g2"

    asyncio.run(scenario())


class FakePtz:
    """Only present: a patrol of two presets needs PTZ control, and these tests never move it."""


def _visits(fleet: Fleet, config: CityConfig) -> list[Any]:
    fleet.patrols["dome"] = fleet.build_patrol(config, "dome")
    return list(fleet.patrols["dome"].presets.values())


def test_a_new_model_or_threshold_is_no_camera_change_but_a_new_preset_detector_is() -> None:
    from citywatch.pipelines.fleet import _signature

    base = parse_config(document())
    other_model = parse_config(document(default_model="/models/next.onnx"))
    assert _signature(base, "dome") == _signature(other_model, "dome")
    assert _signature(base, "dome") != _signature(parse_config(document(bins_detector=None)), "dome")


def test_the_watcher_publishes_valid_changes_and_refuses_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "city.yaml"
    doc = document()
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    running = load_city(path, base_dir=tmp_path, models_root=tmp_path / "models")
    published: list[CityConfig] = []
    watcher = ConfigWatcher(
        path, running, lambda c: published.append(c) or len(published), base_dir=tmp_path, models_root=tmp_path / "m"
    )
    assert watcher.poll() is None  # nothing changed

    doc["cameras"]["dome"]["presets"]["bins"]["samples"] = 2
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    message = watcher.poll(force=True)
    assert message == "config revision 1 published (cameras changed)"
    assert published[-1].cameras["dome"].presets["bins"].samples == 2

    path.write_text("cameras: [oops", encoding="utf-8")
    message = watcher.poll(force=True)
    assert message is not None and message.startswith("config change refused") and "not valid YAML" in message

    doc["serving"] = {"port": 9999}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    message = watcher.poll(force=True)
    assert message is not None and "serving: changes take effect at the next start" in message
    assert len(published) == 1 and watcher.running.serving.port == 8000


def test_a_new_detector_needs_a_restart() -> None:
    doc = document()
    more = document()
    more["detectors"]["third"] = {"model": "builtin:coco-yolo11n"}
    problems = needs_restart(parse_config(doc), parse_config(more))
    assert problems and "adding ['third']" in problems[0]


def test_a_promotion_in_the_registry_reaches_the_registry_detectors(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    coco = registry.add(BUILTIN_MODELS["coco-yolo11n"], name="street", version="1")
    copy = tmp_path / "street-2.onnx"
    shutil.copyfile(BUILTIN_MODELS["coco-yolo11n"], copy)
    second = registry.add(copy, name="street", version="2")
    path = tmp_path / "city.yaml"
    path.write_text(yaml.safe_dump(document(default_model="registry:street")), encoding="utf-8")
    with pytest.raises(ConfigError, match="no promoted version of 'street'"):
        load_city(path, base_dir=tmp_path, models_root=registry.root)
    registry.promote("street", "1")
    running = load_city(path, base_dir=tmp_path, models_root=registry.root)
    assert running.detectors["default"].model == str(coco.path.resolve())

    published: list[CityConfig] = []
    watcher = ConfigWatcher(
        path, running, lambda c: published.append(c) or len(published), base_dir=tmp_path, models_root=registry.root
    )
    registry.promote("street", "2")
    message = watcher.poll()
    assert message == "config revision 1 published (detectors changed)"
    assert published[-1].detectors["default"].model == str(second.path.resolve())
