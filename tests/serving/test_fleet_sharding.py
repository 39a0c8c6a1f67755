"""CameraFleet on real Ray Serve with two replicas: cameras sharded by rendezvous hashing, health gathered from
both shards through the board, and a camera added through the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from citywatch.pipelines.config import CityConfig, parse_config
from citywatch.pipelines.fleet import shard_owner
from citywatch.serving import deployments
from citywatch.serving.app import fleet_deployment
from citywatch.serving.runner import local_ray_settings
from citywatch.stack.processes import free_port
from citywatch.stack.s3 import S3Endpoint
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e


def city(s3: S3Endpoint, cameras: int) -> dict[str, Any]:
    zone = {"polygon": [[0, 0], [1, 0], [1, 1]], "rules": ["car"]}
    port = free_port()  # nothing listens: every camera is offline, which is enough to see where it runs
    return {
        "storage": {
            "evidence": s3.evidence_config(),
            "database": "sqlite:///var/cases.db",
            "spool_dir": "var/spool",
        },
        "rules": {"car": {"type": "presence", "kind": "motor_vehicle_illegal_parking", "classes": ["car"]}},
        "cameras": {
            f"cam-{i}": {"rtsp": f"rtsp://127.0.0.1:{port}/cam-{i}", "presets": {"main": {"zones": {"z": zone}}}}
            for i in range(cameras)
        },
    }


def fleet_app(config: CityConfig) -> Any:
    from ray.serve import Deployment

    detector = cast(Deployment, deployments.Detector).options(ray_actor_options={"num_cpus": 0.5})
    detectors = {"default": detector.bind("default", config.detectors["default"], 4, 0.02)}
    board = cast(Deployment, deployments.FleetHealthBoard).bind()
    replicas = config.model_copy(update={"serving": config.serving.model_copy(update={"fleet_replicas": 2})})
    return fleet_deployment(replicas).options(ray_actor_options={"num_cpus": 0.25}).bind(detectors, board, 0.5)


def wait_for_cameras(handle: Any, count: int, timeout: float = 120) -> dict[str, dict[str, Any]]:
    def reported() -> dict[str, dict[str, Any]] | None:
        cameras = {c["camera_id"]: c for c in handle.health.remote().result()["cameras"]}
        return cameras if len(cameras) == count else None

    return wait_until(reported, timeout, f"{count} cameras reported", every=0.5)


def test_two_fleet_replicas_share_the_cameras_and_report_them_all(tmp_path: Path, s3_server: S3Endpoint) -> None:
    local_ray_settings(tmp_path)  # loopback only, token auth: as the product runs Ray
    import ray
    from ray import serve

    first = parse_config(city(s3_server, 8)).anchored(tmp_path)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        handle = serve.run(fleet_app(first), name="shards", route_prefix=None)
        cameras = wait_for_cameras(handle, 8)
        # Whichever replica answered, it reported both shards, each camera once, on its rendezvous replica.
        assert {c: cameras[c]["replica"] for c in cameras} == {c: shard_owner(c, 2) for c in cameras}
        assert {cameras[c]["replica"] for c in cameras} == {0, 1}
        assert all(not c["online"] and "cannot open" in (c["last_error"] or "") for c in cameras.values())
        # Each replica's own report: how many cameras it runs, its latest-frame uploads (none: all offline).
        replicas = handle.health.remote().result()["fleet"]
        assert [r["rank"] for r in replicas] == [0, 1] and sum(r["cameras"] for r in replicas) == 8
        assert all(r["snapshots"]["stored"] == 0 and r["snapshots"]["failed"] == 0 for r in replicas)

        # A ninth camera through the config: it lands on its rendezvous replica, the others stay where they were.
        second = parse_config(city(s3_server, 9)).anchored(tmp_path)
        handle = serve.run(fleet_app(second), name="shards", route_prefix=None)
        after = wait_for_cameras(handle, 9)
        assert {c: after[c]["replica"] for c in after} == {c: shard_owner(c, 2) for c in after}
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
