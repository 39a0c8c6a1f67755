"""The review page's JSON: dashboard days are the city's days; the cameras view comes from a real fleet report."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import supervision as sv

from citywatch.cases.lifecycle import Role
from citywatch.pipelines.config import parse_config
from citywatch.pipelines.fleet import Fleet
from citywatch.pipelines.schedule import ManualClock
from citywatch.pipelines.snapshots import Snapshots, SnapshotStore
from citywatch.stack.s3 import S3Endpoint
from citywatch.vision.frame import Frame
from citywatch.vision.violation import Violation
from tests.clock import FakeClock
from tests.pipelines.test_fleet import StillReader, document
from tests.serving.api_support import make_api
from tests.waiting import wait_until_async


def test_dashboard_days_are_the_citys_days(s3_server: S3Endpoint, tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 5, 4, 15, 30, tzinfo=UTC))  # 23:30 in Shanghai, 4 May
    api = make_api(f"sqlite:///{tmp_path / 'cases.db'}", s3_server, tmp_path, clock=clock)
    api.file(1)
    clock.now = datetime(2026, 5, 4, 16, 30, tzinfo=UTC)  # the same UTC day; 00:30 on 5 May in Shanghai
    api.file(2)
    clock.now = datetime(2026, 5, 5, 3, 0, tzinfo=UTC)

    def per_day(timezone: str) -> dict[str, int]:
        api.context.timezone = timezone
        response = api.client.get("/stats/overview?days=3", headers=api.as_role(Role.VIEWER))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["timezone"] == timezone
        return dict(zip(body["days"], body["by_kind"]["motor_vehicle_illegal_parking"], strict=True))

    assert per_day("Asia/Shanghai") == {"2026-05-03": 0, "2026-05-04": 1, "2026-05-05": 1}
    assert per_day("UTC") == {"2026-05-03": 0, "2026-05-04": 2, "2026-05-05": 0}


class StreetReader(StillReader):
    def read(self, preset_id: str | None = None, timeout: float | None = None) -> Frame:
        image = np.full((720, 1280, 3), 90, np.uint8)
        image[:240] = (200, 170, 120)
        return Frame(image, self.camera_id, preset_id, datetime.now(UTC), 0)


def test_the_cameras_view_shows_a_real_fleets_zones_and_latest_frame(s3_server: S3Endpoint, tmp_path: Path) -> None:
    """A camera that never filed a case: its preset's frame and zones come from the fleet, not from evidence."""

    async def detect(image: np.ndarray) -> sv.Detections:
        return sv.Detections.empty()

    async def sink(violation: Violation) -> None:
        pass

    zone = {"polygon": [[0.1, 0.5], [0.9, 0.5], [0.9, 1.0], [0.1, 1.0]], "rules": ["car"]}
    config = parse_config(document({"quiet-7": {"rtsp": "rtsp://x/q", "presets": {"lot": {"zones": {"lane": zone}}}}}))
    store = SnapshotStore.from_endpoint(
        s3_server.endpoint, s3_server.access_key, s3_server.secret_key, f"cw-live-{uuid.uuid4().hex[:8]}"
    )
    snapshots = Snapshots(store, every=60.0)

    async def fleet_report() -> list[dict[str, Any]]:
        fleet = Fleet(
            detect_for=lambda _: detect,
            sink=sink,
            reader_factory=StreetReader,
            clock=ManualClock(datetime.now(UTC)),
            snapshots=snapshots,
        )
        await fleet.apply(config)
        await wait_until_async(lambda: fleet.health()[0]["snapshots"], 60, "the fleet's first latest frame")
        report = fleet.health()
        await fleet.stop()
        return report

    try:
        report = asyncio.run(fleet_report())
    finally:
        snapshots.close()
    assert report[0]["patrol"]["samples"] > 1 and snapshots.stored == 1  # many samples, one picture a minute

    async def health() -> dict[str, Any]:
        return {"cameras": report, "detectors": {}}

    api = make_api(f"sqlite:///{tmp_path / 'cases.db'}", s3_server, tmp_path)
    api.context.health, api.context.snapshots = health, store
    response = api.client.get("/stats/cameras", headers=api.as_role(Role.VIEWER))
    assert response.status_code == 200, response.text
    [camera] = response.json()["cameras"]
    assert camera["camera_id"] == "quiet-7" and camera["health"]["online"] is True
    [preset] = camera["presets"]
    assert preset["preset_id"] == "lot" and preset["current"] is True
    assert preset["zones"] == {"lane": [[0.1, 0.5], [0.9, 0.5], [0.9, 1.0], [0.1, 1.0]]}
    with urllib.request.urlopen(preset["picture"], timeout=5) as got:  # the presigned URL a browser loads
        picture = cv2.imdecode(np.frombuffer(got.read(), np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (360, 640, 3) == (preset["height"], preset["width"], 3)
    assert picture[:100].mean() > 140 and picture[200:].mean() < 100  # the street frame, shrunk

    refused = api.client.get("/stats/cameras")
    assert refused.status_code == 401


def test_queue_thumbnails_are_presigned_per_case_and_bad_ids_refused(s3_server: S3Endpoint, tmp_path: Path) -> None:
    api = make_api(f"sqlite:///{tmp_path / 'cases.db'}", s3_server, tmp_path)
    first, second = api.file(1), api.file(2)
    viewer = api.as_role(Role.VIEWER)
    response = api.client.get("/review/evidence", params={"ids": f"{first},{second},999"}, headers=viewer)
    assert response.status_code == 200, response.text
    urls = response.json()
    assert set(urls) == {str(first), str(second)}  # no evidence, no entry
    with urllib.request.urlopen(urls[str(second)]["annotated"], timeout=5) as got:
        assert got.read() == b"\xff\xd8jpeg-2"
    for bad in ("1,two", "0", str(2**63), ",".join(str(i) for i in range(1, 502))):
        refused = api.client.get("/review/evidence", params={"ids": bad}, headers=viewer)
        assert refused.status_code == 422, (bad[:20], refused.text)
