"""The RTSP cameras the tests and the demo start: GStreamer RTSP server + ffmpeg publishers."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import cv2
import pytest

from citywatch.stack.processes import StackError, processes_in_groups
from citywatch.stack.rtsp import SERVER_SCRIPT, SYSTEM_PYTHON, RtspServer, read_frame, rtsp_available
from tests.waiting import wait_until

# Clips published with `-c copy` must carry SPS/PPS on every keyframe, have a short GOP and no
# B-frames: the flags stack/demo_clip.py uses, applied here to an outside video.
PUBLISHABLE_X264 = [
    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
    "-g", "10", "-keyint_min", "10", "-sc_threshold", "0", "-bf", "0",
    "-x264-params", "repeat-headers=1", "-an", "-movflags", "+faststart",
]  # fmt: skip
RtspFactory = Callable[[dict[str, Path]], RtspServer]  # the rtsp_server_factory fixture


@pytest.fixture(scope="module")
def street_clip(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s of the crosswalk video, re-encoded for publishing (the source is never copied into the repo)."""
    source = shared_dir / "video" / "crosswalk_pedestrians_varshini.mp4"
    if not source.exists() or shutil.which("ffmpeg") is None:
        pytest.skip(f"needs {source} and ffmpeg")
    out = tmp_path_factory.mktemp("clips") / "street.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-t",
            "4",
            "-i",
            str(source),
            "-vf",
            "fps=10",
            *PUBLISHABLE_X264,
            str(out),
        ],
        check=True,
        timeout=120,
    )
    return out


def test_demo_clip_is_publishable(demo_clip: Path) -> None:
    """Shipped clip: H.264 640x360 or 854x480 at 10 fps, 40-60 s, <= 2 MB, SPS in-band on keyframes."""
    assert demo_clip.stat().st_size <= 2_000_000
    cap = cv2.VideoCapture(str(demo_clip))
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
        frames = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()
    assert round(fps) == 10 and 40 <= frames / fps <= 60
    assert size in {(640, 360), (854, 480)}
    # repeat-headers=1 copies the SPS from the avcC box in front of every keyframe (one per 10 frames).
    data = demo_clip.read_bytes()
    avcc = data.index(b"avcC") + 4
    sps_len = struct.unpack(">H", data[avcc + 6 : avcc + 8])[0]
    sps = data[avcc + 8 : avcc + 8 + sps_len]
    assert data.count(sps) >= frames // 10


def test_shared_server_serves_the_demo(rtsp_server: RtspServer) -> None:
    frame = read_frame(rtsp_server.urls["demo"])
    assert frame is not None and frame.shape == (360, 640, 3)


def test_two_streams_restart_and_stop(rtsp_server_factory: RtspFactory, demo_clip: Path, street_clip: Path) -> None:
    server = rtsp_server_factory({"demo": demo_clip, "street": street_clip})
    urls = server.urls
    assert urls == {name: f"rtsp://127.0.0.1:{server.port}/{name}" for name in ("demo", "street")}
    shapes = {name: getattr(read_frame(url), "shape", None) for name, url in urls.items()}
    assert shapes == {"demo": (360, 640, 3), "street": (360, 640, 3)}

    # A reader that retries, as camera readers do, is reading again after a restart.
    server.restart_server()
    wait_until(lambda: read_frame(urls["street"]) is not None, 60, "a frame after the server restart", every=0.5)

    pgids = {p.pid for p in server.processes if p.pid is not None}
    assert len(pgids) == 3  # server + two publishers
    server.stop()
    assert processes_in_groups(pgids) == []
    assert server.urls == {}
    server.stop()  # idempotent


def test_taken_port_fails_clearly(tmp_path: Path, demo_clip: Path) -> None:
    if reason := rtsp_available():
        pytest.skip(reason)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = RtspServer({"demo": demo_clip}, port=port, log_dir=tmp_path)
        with pytest.raises(StackError, match=f"RTSP port 127.0.0.1:{port} is already in use"):
            server.start(timeout=10)
    assert not server.running() and all(not p.running() for p in server.processes)


def test_server_script_exits_when_it_cannot_listen() -> None:
    """attach() fails silently on a taken port; the script must exit 2 instead of serving nothing."""
    if reason := rtsp_available():
        pytest.skip(reason)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = subprocess.run(
            [str(SYSTEM_PYTHON), str(SERVER_SCRIPT), "--port", str(port), "--stream", "cam=40000"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_bad_streams_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        RtspServer({"cam": tmp_path / "missing.mp4"})
    (tmp_path / "a.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match="stream name"):
        RtspServer({"cam/1": tmp_path / "a.mp4"})
