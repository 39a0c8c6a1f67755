"""Real RTSP cameras for tests and the demo: GStreamer's RTSP server fed by ffmpeg over loopback RTP.

One ffmpeg publisher per clip sends H.264 RTP (``-c copy``, no re-encoding) to a UDP port on
127.0.0.1; ``rtsp_server_gst.py``, run by Debian's /usr/bin/python3, serves each UDP input as an
RTSP path. Publishers are UDP senders, so they survive a restart of the server (reconnect tests).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from citywatch.stack.processes import (
    LOOPBACK,
    Component,
    ManagedProcess,
    StackError,
    check_port_free,
    child_env,
    free_port,
    free_port_pairs,
)

# python3-gi belongs to Debian's interpreter, not to any virtualenv.
SYSTEM_PYTHON = Path(os.environ.get("CITYWATCH_GST_PYTHON", "/usr/bin/python3"))
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server_gst.py")
# Readers: TCP interleaved (no UDP port juggling) and a small probe; without the probe options
# opening takes 3-4.6 s, with them 0.2-2.3 s.
READER_OPTIONS = "rtsp_transport;tcp|analyzeduration;200000|probesize;100000"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_GST_ELEMENTS = ("udpsrc", "rtpjitterbuffer", "rtph264depay", "h264parse", "rtph264pay")
_GST_CHECK = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0')\n"
    "from gi.repository import Gst, GstRtspServer\n"
    "Gst.init(None)\n"
    f"missing = [e for e in {_GST_ELEMENTS!r} if Gst.ElementFactory.find(e) is None]\n"
    "assert not missing, 'missing GStreamer elements: ' + ', '.join(missing)\n"
)
APT_PACKAGES = (
    "ffmpeg gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
    "gstreamer1.0-plugins-bad"
)


@functools.cache
def rtsp_available() -> str | None:
    """None when the RTSP stack can run here, else a one-line reason (tests skip with it)."""
    if shutil.which("ffmpeg") is None:
        return f"ffmpeg is not on PATH (apt-get install -y {APT_PACKAGES})"
    if not SYSTEM_PYTHON.exists():
        return f"{SYSTEM_PYTHON} not found (python3-gi needs Debian's interpreter)"
    try:
        result = subprocess.run(
            [str(SYSTEM_PYTHON), "-c", _GST_CHECK],
            capture_output=True,
            text=True,
            timeout=60,  # the first Gst.init() builds the plugin registry: seconds on a cold machine
            env=_system_python_env(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{SYSTEM_PYTHON} cannot check GStreamer: {exc}"
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return f"GStreamer RTSP server unusable from {SYSTEM_PYTHON}: {last} (apt-get install -y {APT_PACKAGES})"
    return None


def find_ffmpeg() -> Path:
    path = shutil.which("ffmpeg")
    if path is None:
        raise StackError(f"ffmpeg is not on PATH (apt-get install -y {APT_PACKAGES})")
    return Path(path)


def read_frame(url: str, timeout: float = 2.0) -> Any:
    """Open ``url`` with OpenCV over TCP and decode one frame: a BGR array, or None on failure.

    Sets OPENCV_FFMPEG_CAPTURE_OPTIONS (TCP, short probe) unless the caller already set it: OpenCV
    only reads options from that process-wide variable.
    """
    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", READER_OPTIONS)
    ms = int(timeout * 1000)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
    try:
        if not cap.isOpened():
            return None
        ok, frame = cap.read()
        return frame if ok else None
    finally:
        cap.release()


def _system_python_env() -> dict[str, str]:
    # A virtualenv's PYTHONPATH/PYTHONHOME would make Debian's python import the venv's packages.
    return child_env(drop=("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"))


def free_rtp_ports(count: int) -> list[int]:
    """``count`` even UDP ports P on 127.0.0.1 with P+1 free too (ffmpeg sends RTCP to P+1)."""
    return free_port_pairs(count, 1, kind=socket.SOCK_DGRAM, step=2)


def rtsp_server_process(port: int, udp_ports: dict[str, int], label: str, log_path: Path) -> ManagedProcess:
    """The GStreamer RTSP server (not started) serving rtsp://127.0.0.1:`port`/NAME from each NAME's UDP port."""
    argv = [str(SYSTEM_PYTHON), "-u", str(SERVER_SCRIPT), "--port", str(port)]
    for name, udp_port in udp_ports.items():
        argv += ["--stream", f"{name}={udp_port}"]
    return ManagedProcess(f"{label} ({LOOPBACK}:{port})", argv, env=_system_python_env(), log_path=log_path)


class RtspServer(Component):
    """Serve clips as rtsp://127.0.0.1:PORT/NAME, looping, until stop()."""

    def __init__(
        self,
        streams: dict[str, Path],
        *,
        port: int | None = None,
        log_dir: Path | None = None,
        loop: bool = True,
    ) -> None:
        if not streams:
            raise ValueError("RtspServer needs at least one stream")
        for name, clip in streams.items():
            if not _NAME_RE.fullmatch(name):
                raise ValueError(f"stream name {name!r}: use letters, digits, '_', '-', '.'")
            if not Path(clip).is_file():
                raise ValueError(f"stream {name!r}: clip {clip} does not exist")
        self.streams = {name: Path(clip) for name, clip in streams.items()}
        self.port = port
        self.loop = loop
        self._log_dir = log_dir
        self._own_log_dir: Path | None = None
        self._server: ManagedProcess | None = None
        self._publishers: dict[str, ManagedProcess] = {}
        self._urls: dict[str, str] = {}

    @property
    def urls(self) -> dict[str, str]:
        """{name: rtsp URL}; empty until start()."""
        return dict(self._urls)

    @property
    def log_dir(self) -> Path:
        if self._log_dir is not None:
            return self._log_dir
        if self._own_log_dir is None:
            self._own_log_dir = Path(tempfile.mkdtemp(prefix="cw-rtsp-"))
        return self._own_log_dir

    def start(self, timeout: float = 30.0) -> dict[str, str]:
        """Start the publishers and the server; return once every URL yields a decoded frame."""
        if self._server is not None and self._server.running():
            return self.urls
        if reason := rtsp_available():
            raise StackError(f"RTSP server cannot run here: {reason}")
        deadline = time.monotonic() + timeout
        if self.port is None:
            self.port = free_port()
        else:
            # Checked first: wait_for_port would take a squatter's listener for our server.
            check_port_free(self.port, "RTSP")
        udp_ports = dict(zip(self.streams, free_rtp_ports(len(self.streams)), strict=True))
        ffmpeg = find_ffmpeg()
        try:
            for name, clip in self.streams.items():
                self._start_publisher(ffmpeg, name, clip, udp_ports[name])
            self._server = rtsp_server_process(self.port, udp_ports, "rtsp server", self.log_dir / "rtsp-server.log")
            self._start_server(deadline)
            self._urls = {name: f"rtsp://{LOOPBACK}:{self.port}/{name}" for name in self.streams}
            self._wait_readable(deadline)
        except BaseException:
            self.stop()
            raise
        return self.urls

    def restart_server(self, timeout: float = 30.0) -> None:
        """Stop and start only the RTSP server, on the same port; publishers keep sending.

        Returns once the port accepts connections again; readers must reconnect by themselves.
        """
        if self._server is None:
            raise StackError("RtspServer is not started")
        self._server.stop(timeout=3.0)
        self._start_server(time.monotonic() + timeout)

    def stop(self) -> None:
        """Stop the server and every publisher. Safe to call twice."""
        if self._server is not None:
            self._server.stop(timeout=3.0)
        for publisher in self._publishers.values():
            publisher.stop(timeout=3.0)
        self._publishers = {}
        self._urls = {}
        if self._own_log_dir is not None:
            shutil.rmtree(self._own_log_dir, ignore_errors=True)
            self._own_log_dir = None

    def running(self) -> bool:
        return self._server is not None and self._server.running()

    @property
    def processes(self) -> list[ManagedProcess]:
        """The server and the publishers started so far."""
        server = [] if self._server is None else [self._server]
        return server + list(self._publishers.values())

    def _start_publisher(self, ffmpeg: Path, name: str, clip: Path, udp_port: int) -> None:
        argv = [str(ffmpeg), "-hide_banner", "-nostdin", "-loglevel", "warning", "-re"]
        if self.loop:
            argv += ["-stream_loop", "-1"]
        argv += ["-i", str(clip), "-map", "0:v:0", "-c", "copy", "-f", "rtp", f"rtp://{LOOPBACK}:{udp_port}"]
        publisher = ManagedProcess(
            f"ffmpeg publisher {name!r} -> udp {udp_port}",
            argv,
            log_path=self.log_dir / f"publish-{name}.log",
        )
        self._publishers[name] = publisher
        publisher.start()

    def _start_server(self, deadline: float) -> None:
        assert self._server is not None and self.port is not None
        self._server.start()
        self._server.wait_for_port(self.port, max(0.0, deadline - time.monotonic()))

    def _wait_readable(self, deadline: float) -> None:
        assert self._server is not None
        pending = dict(self._urls)
        while pending:
            if not self._server.running():
                raise self._server.error(f"exited with code {self._server.returncode}")
            for name, url in list(pending.items()):
                publisher = self._publishers[name]
                if not publisher.running() and self.loop:
                    raise publisher.error(f"exited with code {publisher.returncode}")
                if read_frame(url) is not None:
                    del pending[name]
            if pending and time.monotonic() > deadline:
                raise self._server.error(f"serves no decodable frame yet on {', '.join(pending.values())}")
            if pending:
                time.sleep(0.2)  # a refused or 404 open returns at once: don't spin
