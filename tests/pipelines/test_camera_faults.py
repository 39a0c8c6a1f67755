"""The camera reader against a real RTSP server that misbehaves: a stall, a restart, a change of resolution.

Each fault is detected (a stall by the reader's watchdog), logged once naming the camera, and a second camera on
the same server keeps giving frames throughout. How fast is not asserted here: speed belongs in bench/.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from citywatch.pipelines.camera import CameraUnavailable, RtspReader
from citywatch.stack.processes import ManagedProcess
from citywatch.stack.rtsp import RtspServer
from tests.waiting import wait_until

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
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "concat",
            "-safe",
            "0",
            "-i",
            str(listing),
            "-c",
            "copy",
            str(out),
        ],
        check=True,
        timeout=60,
    )
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


def read_fails(reader: RtspReader, timeout: float) -> bool:
    try:
        reader.read(timeout=timeout)
    except CameraUnavailable:
        return True
    return False


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
        wait_until(lambda: not stalls.health.online, 30, "the stall to be noticed")
        # The watchdog noticed it (no frame for longer than the read timeout), not FFmpeg's own, later timeout.
        (warning,) = wait_until(lambda: warnings_about(caplog, "cam-stalls"), 30, "the warning about the stall")
        assert "stalled: no frame for" in warning
        # A frame FFmpeg held back may still come out as the stall begins; then reads fail, naming the camera.
        wait_until(lambda: read_fails(stalls, timeout=0.5), 30, "reads from the stalled camera to fail")
        with pytest.raises(CameraUnavailable, match="cam-stalls"):
            stalls.read(timeout=0.5)
        for _ in range(3):  # the other camera on the same server never noticed
            assert steady.read(timeout=10).image.shape == (360, 640, 3)
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    wait_until(lambda: stalls.health.online, 60, "the stalled camera to come back")
    assert stalls.read(timeout=10).camera_id == "cam-stalls"
    assert warnings_about(caplog, "cam-stalls") == [warning]  # once per outage, however many retries
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
    for camera in cameras:  # reading again after the restart
        wait_until(lambda camera=camera: not read_fails(camera, timeout=1), 60, f"{camera.camera_id} to read again")
    for camera in cameras:
        health = camera.health
        assert health.online and health.reconnects >= 1
        assert health.last_outage_s is not None and health.last_outage_s > 0  # the outage was measured
        assert len(warnings_about(caplog, camera.camera_id)) == 1


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
    shapes: set[tuple[int, ...]] = set()

    def both_sizes_seen() -> set[tuple[int, ...]]:
        shapes.add(switching.read(timeout=10).image.shape)
        steady.read(timeout=10)
        return shapes if len(shapes) >= 2 else set()

    wait_until(both_sizes_seen, 60, "frames at both sizes of the clip", every=0.2)
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
    wait_until(lambda: broken.health.reconnects >= 2, 60, "retries")
    assert good.read(timeout=5).image.shape == (360, 640, 3)
    assert len(warnings_about(caplog, "cam-404")) == 1


class KeyframeRecorder(RtspReader):
    """The real reader, noting for each frame it decodes whether it was a keyframe."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keyframes: list[bool] = []

    def _grabbed(self, frame: Any) -> None:
        self.keyframes.append(bool(frame.key_frame))
        super()._grabbed(frame)


def test_idle_reader_decodes_keyframes_only_and_hands_out_clean_frames_again(rtsp_server: RtspServer) -> None:
    reader = KeyframeRecorder("cam-idle", rtsp_server.urls["demo"], open_timeout=2, read_timeout=READ_TIMEOUT)
    reader.start()
    try:
        reader.read(timeout=10)
        # Active: every frame is decoded (one keyframe in ten in this clip).
        wait_until(lambda: not all(reader.keyframes), 60, "frames other than keyframes decoded")
        reader.set_active(False)
        idle_from = len(reader.keyframes)
        # The packet being decoded as it went idle may give any frame; from the next packet on, keyframes only.
        wait_until(lambda: len(reader.keyframes) >= idle_from + 4, 60, "frames decoded while idle")
        assert all(reader.keyframes[idle_from + 1 :]), reader.keyframes[idle_from:]
        active_from = len(reader.keyframes)
        reader.set_active(True)
        assert reader.read(timeout=10).image.shape == (360, 640, 3)
        wait_until(lambda: not all(reader.keyframes[active_from:]), 60, "every frame decoded again")
    finally:
        reader.stop()
