"""Each preset's latest frame in S3 for the cameras page: shrunk, throttled, overwritten, never in a sample's way."""

from __future__ import annotations

import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from citywatch.pipelines.config import ConfigError, parse_config
from citywatch.pipelines.snapshots import Snapshots, SnapshotStore, snapshot_key
from citywatch.stack.s3 import S3Endpoint
from citywatch.vision.frame import Frame
from tests.pipelines.test_fleet import document
from tests.waiting import wait_until

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def frame(shade: int, at: datetime, *, camera: str = "gate-3", preset: str = "main") -> Frame:
    return Frame(np.full((720, 1280, 3), shade, np.uint8), camera, preset, at, 0)


def store_on(s3: S3Endpoint) -> SnapshotStore:
    return SnapshotStore.from_endpoint(s3.endpoint, s3.access_key, s3.secret_key, f"cw-live-{uuid.uuid4().hex[:8]}")


def test_keeps_each_presets_latest_frame_shrunk_throttled_and_overwritten(s3_server: S3Endpoint) -> None:
    snapshots = Snapshots(store_on(s3_server), every=10.0, width=640)
    try:
        assert snapshots.offer(frame(40, T0))  # creates the bucket on the first put
        wait_until(lambda: snapshots.stored == 1, 30, "the first upload")
        assert not snapshots.offer(frame(90, T0 + timedelta(seconds=5)))  # within `every`: skipped
        assert snapshots.offer(frame(200, T0 + timedelta(seconds=12)))
        assert snapshots.offer(frame(120, T0 + timedelta(seconds=12), preset="bins"))  # another preset
        wait_until(lambda: snapshots.stored == 3, 30, "three uploads")

        latest = snapshots.latest("gate-3")
        assert set(latest) == {"main", "bins"}
        assert latest["main"].captured_at == T0 + timedelta(seconds=12)
        assert (latest["main"].width, latest["main"].height) == (640, 360)
        picture = cv2.imdecode(np.frombuffer(snapshots.store.get(snapshot_key("gate-3", "main")), np.uint8), 1)
        assert picture.shape == (360, 640, 3)
        assert abs(float(picture.mean()) - 200) < 3  # the newer frame replaced the first
        assert snapshots.latest("another-camera") == {}
        assert snapshots.health()["failed"] == 0
    finally:
        snapshots.close()


def test_a_dead_store_is_reported_and_the_next_frame_tries_again() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = SnapshotStore.from_endpoint(f"127.0.0.1:{port}", "k", "s", "cw-live")
    uploading, release = threading.Event(), threading.Event()
    real_put = store.put

    def held_put(key: str, jpeg: bytes) -> None:
        uploading.set()
        release.wait(60)
        real_put(key, jpeg)

    store.put = held_put  # type: ignore[method-assign]
    snapshots = Snapshots(store, every=1.0)
    try:
        assert snapshots.offer(frame(40, T0))  # returns while its upload is held: it runs beside the patrol
        wait_until(uploading.is_set, 30, "the upload to start")
        assert (snapshots.stored, snapshots.failed) == (0, 0)
        release.set()
        wait_until(lambda: snapshots.failed == 1, 30, "the failed upload")
        error = str(snapshots.health()["last_error"])
        assert f"127.0.0.1:{port}" in error and "gate-3" in error and "main" in error
        assert snapshots.latest("gate-3") == {}
        assert snapshots.offer(frame(40, T0 + timedelta(seconds=2)))  # tried again after `every`
        wait_until(lambda: snapshots.failed == 2, 30, "the second failed upload")
    finally:
        release.set()
        snapshots.close()


def test_the_live_bucket_must_not_be_the_evidence_bucket() -> None:
    raw = document({"a": {"rtsp": "rtsp://x/a", "presets": {"main": {"zones": {}}}}})
    raw["storage"]["live"] = {"bucket": "citywatch-evidence"}
    with pytest.raises(ConfigError, match=r"storage: .*live\.bucket: 'citywatch-evidence' is the evidence bucket"):
        parse_config(raw)
