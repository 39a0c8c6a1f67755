"""The whole product, real at every step: RTSP server → Ray Serve (detector, fleet, API) → SQLite + S3.

One Ray session serves three cameras: the shipped clip (must file a case), an unreachable URL and a camera
whose detector's model file is missing. The broken two must be reported by name while the good one works.
"""

from __future__ import annotations

import hashlib
from itertools import combinations
from pathlib import Path
from typing import Any

import httpx
import minio
import pytest

from citywatch.cases.accounts import AccountStore
from citywatch.cases.lifecycle import Role
from citywatch.cases.store import CaseStore
from citywatch.pipelines.config import parse_config
from citywatch.serving.runner import running_city
from citywatch.stack.processes import free_port
from citywatch.stack.rtsp import RtspServer
from citywatch.stack.s3 import S3Endpoint
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e


def city(s3: S3Endpoint, rtsp_url: str, port: int) -> dict[str, Any]:
    zone = {"polygon": [[0.52, 0.90], [0.80, 0.90], [0.80, 1.0], [0.52, 1.0]], "rules": ["illegal_parking"]}
    preset = {"fixed": {"sample_every": "1s", "zones": {"fire-lane": zone}}}
    return {
        "storage": {
            "evidence": s3.evidence_config(),
            "database": "sqlite:///var/cases.db",
            "spool_dir": "var/spool",
        },
        "detectors": {
            "default": {"model": "builtin:coco-yolo11n"},
            "missing": {"model": "models/does-not-exist.onnx"},
        },
        "rules": {
            "illegal_parking": {
                "type": "dwell",
                "kind": "motor_vehicle_illegal_parking",
                "classes": ["car", "truck"],
                "min_dwell": "8s",
                "min_confidence": 0.4,
                "repeat_every": "2s",
            },
        },
        "cameras": {
            "parking-lot-1": {"rtsp": rtsp_url, "presets": preset},
            "unreachable": {"rtsp": f"rtsp://127.0.0.1:{free_port()}/nothing", "presets": preset},
            "no-model": {"rtsp": rtsp_url, "detector": "missing", "presets": preset},
        },
        "serving": {"port": port, "detector_cpus": 0.5, "max_batch_size": 4},
    }


def test_a_parked_car_becomes_one_case_with_evidence_in_s3(
    tmp_path: Path, s3_server: S3Endpoint, rtsp_server: RtspServer
) -> None:
    config = parse_config(city(s3_server, rtsp_server.urls["demo"], free_port())).anchored(tmp_path)
    # The API refuses anonymous requests (but /healthz): an inspector's API key, made the way an admin would.
    accounts = AccountStore(CaseStore.from_url(config.storage.database))
    accounts.add_user("e2e-inspector", Role.INSPECTOR)
    headers = {"Authorization": f"Bearer {accounts.create_api_key('e2e-inspector')}"}
    with running_city(config, num_cpus=2) as url, httpx.Client(base_url=url, timeout=10, headers=headers) as api:
        assert api.get("/healthz").status_code == 200
        assert httpx.get(f"{url}/cases", timeout=10).status_code == 401
        assert set(httpx.get(f"{url}/healthz", timeout=10).json()) == {"status"}  # no camera addresses for anyone
        assert httpx.get(f"{url}/healthz/detail", timeout=10).status_code == 401

        # Wait for a listed case, not the total: the page and the count are two queries, a case may land between.
        listing = wait_until(lambda: (r := api.get("/cases").json())["cases"] and r, 300, "the first case", every=1)
        case = api.get(f"/cases/{listing['cases'][0]['id']}").json()
        assert case["code"] == "09009"
        assert case["camera_id"] == "parking-lot-1"
        assert case["zone"] == "fire-lane"
        assert case["class_name"] in {"car", "truck"}

        # The annotated evidence is in the bucket and its bytes hash to what the case recorded. The filer commits
        # the case before it uploads (so a crash between them loses nothing): wait for the upload to be marked.
        def uploaded_annotated() -> dict[str, Any] | None:
            evidence = api.get(f"/cases/{case['id']}").json()["evidence"]
            return next((e for e in evidence if e["role"] == "annotated" and e["uploaded"]), None)

        annotated = wait_until(uploaded_annotated, 120, "the annotated evidence to be uploaded", every=1)
        assert annotated["content_type"] == "image/jpeg"
        client = minio.Minio(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, secure=False)
        response = client.get_object(s3_server.bucket, annotated["key"])
        try:
            stored = response.read()
        finally:
            response.close()
            response.release_conn()
        assert hashlib.sha256(stored).hexdigest() == annotated["sha256"]
        artifacts = Path(__file__).resolve().parents[2] / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        (artifacts / "e2e-annotated-evidence.jpg").write_bytes(stored)  # for a human to look at
        assert httpx.get(annotated["url"], timeout=10).content == stored  # the presigned URL works

        # Broken parts are named; the good camera kept working beside them.
        health = api.get("/healthz/detail").json()
        assert health["status"] == "degraded"
        cameras = {c["camera_id"]: c for c in health["cameras"]}
        assert cameras["parking-lot-1"]["online"]
        assert not cameras["unreachable"]["online"]
        assert "cannot open rtsp://127.0.0.1" in cameras["unreachable"]["last_error"]
        missing = health["detectors"]["missing"]
        assert "does-not-exist.onnx" in missing["error"]
        assert "does-not-exist.onnx" in cameras["no-model"]["patrol"]["last_error"]
        assert health["detectors"]["default"]["error"] is None
        [replica] = health["fleet"]  # the fleet replica's own report: latest frames stored, no warning rules
        assert replica["cameras"] == 3 and replica["snapshots"]["stored"] >= 2 and replica["snapshots"]["failed"] == 0
        assert replica["warnings"]["holding"] == 0

        # The cameras page: each preset's latest frame, kept by the fleet (no case needed: "no-model" files
        # none), with the zone the config gives it; an unreachable camera has no frame.
        views = {c["camera_id"]: c for c in api.get("/stats/cameras").json()["cameras"]}
        for camera_id in ("parking-lot-1", "no-model"):
            [fixed] = views[camera_id]["presets"]
            assert fixed["zones"] == {"fire-lane": [[0.52, 0.90], [0.80, 0.90], [0.80, 1.0], [0.52, 1.0]]}
            picture = httpx.get(fixed["picture"], timeout=10)
            assert picture.status_code == 200 and picture.content[:2] == b"\xff\xd8", camera_id
        assert views["unreachable"]["presets"][0]["picture"] is None

        # One case per vehicle and zone, not one per frame: sampling goes on, the count stays small.
        samples_before = cameras["parking-lot-1"]["patrol"]["samples"]

        def sampled_on_and_attached() -> list[dict[str, Any]] | None:
            patrols = {c["camera_id"]: c["patrol"] for c in api.get("/healthz/detail").json()["cameras"]}
            cases = api.get("/cases", params={"limit": 100}).json()["cases"]
            sampled_on = patrols["parking-lot-1"]["samples"] >= samples_before + 6  # 6 s of sampling, once a second
            return cases if sampled_on and any(c["observations"] > 1 for c in cases) else None

        cases = wait_until(sampled_on_and_attached, 120, "six more samples and a later sighting attached", every=1)
        assert all(c["camera_id"] == "parking-lot-1" for c in cases)
        for a, b in combinations(cases, 2):
            assert iou(a["box"], b["box"]) < 0.3, f"cases {a['id']} and {b['id']} are one vehicle"


def iou(a: list[float], b: list[float]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
