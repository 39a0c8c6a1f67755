"""A running city changes in place (issues 5 and 8), on real Ray Serve, one Ray session for the module.

- Config hot reload: the config file gains a camera and a PTZ preset; `ConfigWatcher` publishes it to the
  ConfigBoard, the fleet replica applies it: the new camera and preset patrol, the untouched camera's patrol
  is the same object (same `started_at`, its visit counter keeps growing). An invalid file is refused.
- Model hot swap: while detect calls run concurrently, the detector's model is swapped (COCO → a copy with
  another version string); no call fails and the reported version changes. A broken model file is refused,
  `/healthz` says so, and the old version keeps answering.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import yaml

from citywatch.cases.accounts import AccountStore
from citywatch.cases.lifecycle import Role
from citywatch.cases.store import CaseStore
from citywatch.models.builtin import BUILTIN_MODELS
from citywatch.serving.runner import ConfigWatcher, load_city, publish_config, running_city
from citywatch.stack.processes import free_port
from citywatch.stack.ptz_sim import PtzCameraSim
from citywatch.stack.rtsp import RtspServer
from citywatch.stack.s3 import S3Endpoint
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

APP = "citywatch"
ZONE = {"polygon": [[0, 0], [1, 0], [1, 1]], "rules": ["zebra"]}  # a class the clip never shows: no cases
QUICK = {"samples": 1, "sample_every": "0.5s", "zones": {"all": ZONE}}


def patrolled(token: str) -> dict[str, Any]:
    return {"token": token, "settle": "0.2s", "schedule": {"every": "3s"}, **QUICK}


def document(s3: S3Endpoint, rtsp_url: str, dome: Any, port: int) -> dict[str, Any]:
    ptz = {"onvif": dome.onvif, "user": dome.user, "password": dome.password, "move_timeout": "10s"}
    cameras: dict[str, Any] = {
        "lot-a": {"rtsp": rtsp_url, "presets": {"fixed": QUICK}},
        "dome": {"rtsp": dome.rtsp_url, "ptz": ptz, "presets": {"p1": patrolled("1")}},
    }
    return {
        "storage": {
            "evidence": s3.evidence_config(),
            "database": "sqlite:///var/cases.db",
            "spool_dir": "var/spool",
        },
        "detectors": {"default": {"model": "builtin:coco-yolo11n"}},
        "rules": {"zebra": {"type": "presence", "kind": "motor_vehicle_illegal_parking", "classes": ["zebra"]}},
        "cameras": cameras,
        "serving": {"port": port, "detector_cpus": 0.5, "fleet_cpus": 0.25, "max_batch_size": 4},
    }


class City:
    def __init__(self, path: Path, base: Path, url: str, watcher: ConfigWatcher, doc: dict[str, Any], key: str) -> None:
        self.path, self.base, self.url, self.watcher, self.doc = path, base, url, watcher, doc
        self.headers = {"Authorization": f"Bearer {key}"}

    def write(self, doc: dict[str, Any] | str) -> str | None:
        self.path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc), encoding="utf-8")
        return self.watcher.poll(force=True)

    def health(self) -> dict[str, Any]:
        report: dict[str, Any] = httpx.get(f"{self.url}/healthz/detail", headers=self.headers, timeout=10).json()
        return report

    def cameras(self) -> dict[str, dict[str, Any]]:
        return {camera["camera_id"]: camera for camera in self.health()["cameras"]}


@pytest.fixture(scope="module")
def city(
    tmp_path_factory: pytest.TempPathFactory, s3_server: S3Endpoint, rtsp_server: RtspServer, demo_clip: Path
) -> Iterator[City]:
    base = tmp_path_factory.mktemp("reload")
    dome_sim = PtzCameraSim(
        {"1": demo_clip, "2": demo_clip},
        name="reload-dome",
        move_time=0.5,
        user="test",
        password="reload-pass",
        log_dir=base / "logs",
    )
    dome = dome_sim.start()
    try:
        doc = document(s3_server, rtsp_server.urls["demo"], dome, free_port())
        path = base / "city.yaml"
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        config = load_city(path, base_dir=base, models_root=base / "models")
        accounts = AccountStore(CaseStore.from_url(config.storage.database))
        accounts.add_user("reload-viewer", Role.VIEWER)  # the health detail needs a staff login
        key = accounts.create_api_key("reload-viewer")
        with running_city(config, num_cpus=2, app_name=APP) as url:
            watcher = ConfigWatcher(
                path, config, lambda c: publish_config(c, APP), base_dir=base, models_root=base / "models"
            )
            yield City(path, base, url, watcher, doc, key)
    finally:
        dome_sim.stop()


def test_a_camera_and_a_preset_added_to_the_file_patrol_without_restarting_the_others(city: City) -> None:
    before = wait_until(
        lambda: (c := city.cameras()).get("lot-a", {}).get("patrol", {}).get("visits", 0) >= 2 and c,
        300,
        "lot-a's first visits",
        every=0.25,
    )
    lot_a = before["lot-a"]["patrol"]

    # A new camera, and a second preset on the dome.
    cameras = dict(city.doc["cameras"])
    cameras["lot-b"] = {"rtsp": cameras["lot-a"]["rtsp"], "presets": {"fixed": QUICK}}
    cameras["dome"] = {**cameras["dome"], "presets": {**cameras["dome"]["presets"], "p2": patrolled("2")}}
    grown = {**city.doc, "cameras": cameras}
    message = city.write(grown)
    assert message is not None and "published" in message, message

    def new_ones_patrolled() -> dict[str, dict[str, Any]] | None:
        cameras = city.cameras()
        lot_b = cameras.get("lot-b", {}).get("patrol", {})
        dome = cameras.get("dome", {}).get("patrol", {})
        p2_done = any(v["preset_id"] == "p2" and v["outcome"] == "done" for v in dome.get("recent_visits", []))
        return cameras if lot_b.get("visits", 0) >= 1 and p2_done else None

    after = wait_until(new_ones_patrolled, 180, "lot-b's first visit and a visit of the new preset p2", every=0.25)
    # The untouched camera kept its patrol (same start time) and kept visiting through the change.
    assert after["lot-a"]["patrol"]["started_at"] == lot_a["started_at"]
    assert after["lot-a"]["patrol"]["visits"] > lot_a["visits"]
    assert after["dome"]["patrol"]["presets"] == ["p1", "p2"]
    assert after["dome"]["patrol"]["started_at"] != before["dome"]["patrol"]["started_at"]  # the changed one

    # An invalid file is refused with the reason; the running city keeps its config.
    broken = yaml.safe_dump(grown).replace("every: 3s", "every: soon", 1)
    message = city.write(broken)
    assert message is not None and "refused" in message and "not a duration" in message, message
    message = city.write({**grown, "serving": {**grown["serving"], "port": 1}})
    assert message is not None and "refused" in message and "serving" in message, message
    # Nothing was published: the patrols go on visiting, none of them restarted.
    at_refusal = city.cameras()
    later = wait_until(
        lambda: (c := city.cameras())["lot-a"]["patrol"]["visits"] > at_refusal["lot-a"]["patrol"]["visits"] and c,
        120,
        "lot-a's next visit after the refusals",
        every=0.25,
    )
    assert {camera_id: c["patrol"]["started_at"] for camera_id, c in later.items()} == {
        camera_id: c["patrol"]["started_at"] for camera_id, c in at_refusal.items()
    }
    assert set(later) == {"lot-a", "lot-b", "dome"}
    city.write(grown)  # back to the running config: nothing to publish
    city.doc = grown


def restamped_copy(source: Path, target: Path, version: str) -> Path:
    """The same network with another `citywatch_version` in its metadata (a 'new' model to promote)."""
    import onnx

    model = onnx.load(str(source))
    for prop in model.metadata_props:
        if prop.key == "citywatch_version":
            prop.value = version
    onnx.save(model, str(target))
    return target


def first_frame(clip: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(clip))
    try:
        ok, image = capture.read()
    finally:
        capture.release()
    assert ok, f"cannot read a frame of {clip}"
    return image


def test_the_model_swaps_under_load_and_a_broken_one_is_refused(city: City, demo_clip: Path) -> None:
    from ray import serve

    detector = serve.get_deployment_handle("Detector-default", app_name=APP)
    old = city.health()["detectors"]["default"]
    new_model = restamped_copy(BUILTIN_MODELS["coco-yolo11n"], city.base / "coco-next.onnx", "1.0.1-swap")
    cameras_before = city.cameras()

    image = first_frame(demo_clip)  # parked cars: the answer says which model gave it
    reference = detector.detect.remote(image).result(timeout_s=60)
    assert len(reference) > 0
    calls: list[tuple[float, float]] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                detector.detect.remote(image).result(timeout_s=60)
            except Exception as error:  # counted: the swap must drop none
                failures.append(repr(error))
            calls.append((started, time.monotonic()))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        wait_until(lambda: len(calls) >= 8, 120, "detect calls before the swap")
        swapped = {**city.doc, "detectors": {"default": {"model": str(new_model)}}}
        published = time.monotonic()
        message = city.write(swapped)
        assert message is not None and "published" in message, message
        info = wait_until(
            lambda: (d := city.health()["detectors"]["default"])["version"] == "1.0.1-swap" and d,
            120,
            "the swap",
            every=0.25,
        )
        swapped_at = time.monotonic()
        wait_until(lambda: sum(c[0] >= swapped_at for c in calls) >= 8, 120, "detect calls after the swap")
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    during = [c for c in calls if c[1] >= published and c[0] <= swapped_at]
    print(f"\nswap under load: {len(calls)} calls, {len(during)} while swapping, {len(failures)} failed")
    assert not failures, failures[:3]
    assert len(during) >= 4
    assert info["swaps"] == 1 and info["refused"] is None and info["sha256"] != old["sha256"]

    # No camera restarted for the swap, and they record the new version.
    cameras_after = city.cameras()
    for camera_id, camera in cameras_before.items():
        assert cameras_after[camera_id]["patrol"]["started_at"] == camera["patrol"]["started_at"], camera_id

    # A broken model file is refused; the old version keeps answering.
    broken = city.base / "broken.onnx"
    broken.write_bytes(b"not an onnx model" * 100)
    message = city.write({**city.doc, "detectors": {"default": {"model": str(broken)}}})
    assert message is not None and "published" in message, message
    info = wait_until(
        lambda: (d := city.health()["detectors"]["default"])["refused"] and d, 120, "the refusal", every=0.25
    )
    assert "broken.onnx" in info["refused"]["error"] and info["version"] == "1.0.1-swap"
    # The swapped-in copy is the same network: it still finds what the first model found.
    answer = detector.detect.remote(image).result(timeout_s=60)
    best, expected = int(answer.confidence.argmax()), int(reference.confidence.argmax())
    assert answer.class_id[best] == reference.class_id[expected]
    assert np.allclose(answer.xyxy[best], reference.xyxy[expected], atol=2.0)
    assert detector.info.remote().result()["version"] == "1.0.1-swap"
