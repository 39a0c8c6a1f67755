"""The camera reader against a real RTSP server that misbehaves: a stall, a restart, a change of resolution.

Each fault is detected within the reader's timeout, logged once naming the camera, and a second camera on the
same server keeps giving frames throughout.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from citywatch.pipelines.camera import CameraUnavailable, RtspReader
from citywatch.stack.processes import ManagedProcess
from citywatch.stack.rtsp import RtspServer

RtspFactory = Callable[[dict[str, Path]], RtspServer]
LOGGER = "citywatch.pipelines.camera"
READ_TIMEOUT = 1.5
X264 = [
    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "10", "-keyint_min", "10",
    "-sc_threshold", "0", "-bf", "0", "-x264-params", "repeat-headers=1", "-an",
]  # fmt: skip


@pytest.fixture(scope="module")
def resolution_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s at 640x360, then 2 s at 320x240, one H.264 stream (concat demuxer, no re-encode at the seam)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    folder = tmp_path_factory.mktemp("resolution")
    parts = []
    for name, source in (("big", "testsrc=size=640x360:rate=10"), ("small", "testsrc2=size=320x240:rate=10")):
        part = folder / f"{name}.mp4"
        command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", source, "-t", "2"]
        subprocess.run([*command, *X264, str(part)], check=True, timeout=60)
        parts.append(part)
    listing = folder / "list.txt"
    listing.write_text("".join(f"file '{part}'\n" for part in parts))
    out = folder / "switching.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "concat", "-safe", "0", "-i", str(listing),
         "-c", "copy", str(out)],
        check=True,
        timeout=60,
    )  # fmt: skip
    return out


@pytest.fixture
def readers() -> Iterator[Callable[[str, str], RtspReader]]:
    started: list[RtspReader] = []

    def make(camera_id: str, url: str) -> RtspReader:
        reader = RtspReader(camera_id, url, open_timeout=2, read_timeout=READ_TIMEOUT, backoff_min=0.2)
        reader.start()
        started.append(reader)
        return reader

    yield make
    for reader in started:
        reader.stop()


def publisher(server: RtspServer, name: str) -> ManagedProcess:
    return next(p for p in server.processes if f"publisher {name!r}" in p.name)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `condition` held; fails after `timeout`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def warnings_about(caplog: pytest.LogCaptureFixture, camera_id: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno >= logging.WARNING and camera_id in r.getMessage()
    ]


def test_a_stalled_stream_is_detected_within_the_read_timeout(
    rtsp_server_factory: RtspFactory,
    demo_clip: Path,
    readers: Callable[[str, str], RtspReader],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server = rtsp_server_factory({"steady": demo_clip, "stalls": demo_clip})
    steady, stalls = readers("cam-steady", server.urls["steady"]), readers("cam-stalls", server.urls["stalls"])
    stalls.read(timeout=10)
    steady.read(timeout=10)

    frozen = publisher(server, "stalls")
    assert frozen.pid is not None
    os.kill(frozen.pid, signal.SIGSTOP)  # the server keeps the TCP session open; no packets arrive
    try:
        detected = wait_until(lambda: not stalls.health.online, READ_TIMEOUT + 1.0, "the stall to be noticed")
        time.sleep(0.5)  # a frame FFmpeg held back may still come out as the stall begins
        with pytest.raises(CameraUnavailable, match="cam-stalls"):
            stalls.read(timeout=0.5)
        for _ in range(3):  # the other camera on the same server never noticed
            assert steady.read(timeout=2).image.shape == (360, 640, 3)
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    recovered = wait_until(lambda: stalls.health.online, 15, "the stalled camera to come back")
    print(f"stall detected after {detected:.2f} s (read timeout {READ_TIMEOUT} s); back {recovered:.2f} s after")
    assert stalls.read(timeout=5).camera_id == "cam-stalls"
    (warning,) = warnings_about(caplog, "cam-stalls")  # once per outage, however many retries
    assert "stalled" in warning
    assert warnings_about(caplog, "cam-steady") == []
    assert steady.health.reconnects == 0


def test_a_server_restart_mid_stream_is_survived(
    rtsp_server_factory: RtspFactory,
    demo_clip: Path,
    readers: Callable[[str, str], RtspReader],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server = rtsp_server_factory({"a": demo_clip, "b": demo_clip})
    cameras = [readers("cam-a", server.urls["a"]), readers("cam-b", server.urls["b"])]
    for camera in cameras:
        camera.read(timeout=10)
    server.restart_server()
    restarted = time.monotonic()
    for camera in cameras:
        while True:  # reading again after the restart
            try:
                camera.read(timeout=1)
                break
            except CameraUnavailable:
                assert time.monotonic() - restarted < 15, f"{camera.camera_id} not back 15 s after the restart"
    back = time.monotonic() - restarted
    print(f"both cameras reading {back:.2f} s after restart_server() returned")
    for camera in cameras:
        health = camera.health
        assert health.online and health.reconnects >= 1
        assert health.last_outage_s is not None and health.last_outage_s < 15
        assert len(warnings_about(caplog, camera.camera_id)) == 1
        print(f"{camera.camera_id}: outage {health.last_outage_s:.2f} s, {health.reconnects} reconnect(s)")


def test_a_change_of_resolution_is_noticed_and_frames_keep_their_native_size(
    rtsp_server_factory: RtspFactory,
    demo_clip: Path,
    resolution_clip: Path,
    readers: Callable[[str, str], RtspReader],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server = rtsp_server_factory({"switching": resolution_clip, "steady": demo_clip})
    switching, steady = readers("cam-zoom", server.urls["switching"]), readers("cam-ok", server.urls["steady"])
    shapes = set()
    deadline = time.monotonic() + 6  # one and a half loops of the 4 s clip
    while time.monotonic() < deadline:
        shapes.add(switching.read(timeout=READ_TIMEOUT + 1).image.shape)
        steady.read(timeout=READ_TIMEOUT + 1)
        time.sleep(0.2)
    assert shapes == {(360, 640, 3), (240, 320, 3)}  # native sizes, not stretched to the first one
    health = switching.health
    assert health.online and health.resolution_changes >= 1 and health.reconnects == 0
    changes = warnings_about(caplog, "cam-zoom")
    assert changes and all("resolution changed" in message for message in changes)
    assert len(changes) == health.resolution_changes  # once per change
    assert warnings_about(caplog, "cam-ok") == []


def test_a_missing_path_on_a_live_server_is_reported_with_the_camera(
    rtsp_server: RtspServer, readers: Callable[[str, str], RtspReader], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    url = rtsp_server.urls["demo"].rsplit("/", 1)[0] + "/no-such-path"
    broken, good = readers("cam-404", url), readers("cam-good", rtsp_server.urls["demo"])
    with pytest.raises(CameraUnavailable, match=r"camera 'cam-404': cannot open rtsp://127\.0\.0\.1.*404"):
        broken.read(timeout=3)
    wait_until(lambda: broken.health.reconnects >= 2, 10, "retries")
    assert good.read(timeout=5).image.shape == (360, 640, 3)
    assert len(warnings_about(caplog, "cam-404")) == 1


def test_idle_reader_decodes_keyframes_only_and_hands_out_clean_frames_again(
    rtsp_server: RtspServer, readers: Callable[[str, str], RtspReader]
) -> None:
    reader = readers("cam-idle", rtsp_server.urls["demo"])
    reader.read(timeout=10)
    reader.set_active(False)
    time.sleep(0.3)
    before, at = reader.health.frames_grabbed, time.monotonic()
    time.sleep(2.0)
    idle_rate = (reader.health.frames_grabbed - before) / (time.monotonic() - at)
    assert idle_rate < 3.0  # keyframes only: one a second in this clip, against 10 frames a second
    reader.set_active(True)
    assert reader.read(timeout=3).image.shape == (360, 640, 3)
    before, at = reader.health.frames_grabbed, time.monotonic()
    time.sleep(1.0)
    assert (reader.health.frames_grabbed - before) / (time.monotonic() - at) > 6
