"""A simulated ONVIF PTZ camera for tests and the demo: presets that change the picture, and a move time.

Design: one child process plays the camera. It answers ONVIF SOAP 1.2 on 127.0.0.1 (`ptz_onvif`) and
renders the picture itself (`ptz_head`): the clip of the preset it was last sent to, or, for `move_time`
seconds after a GotoPreset, a flat grey frame (the view while the head turns: never to be analysed). The
frames go as RTP to 127.0.0.1, and the project's GStreamer RTSP server (`rtsp_server_gst.py`) serves them at
one URL, like a real camera's single stream. Rendering in the camera process, rather than switching RTP
between publishers, keeps the H.264 stream continuous when the preset changes, at the cost of one encode
(640x360 at 10 fps: a few % of a core). This module is that process's entry point and its launcher:

    python -m citywatch.stack.ptz_sim --onvif-port P --rtp-port U --preset 1=a.mp4 --preset 2=b.mp4
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from citywatch.stack.processes import LOOPBACK, Component, ManagedProcess, StackError, free_ports
from citywatch.stack.ptz_head import Preset, PtzState, render_forever
from citywatch.stack.ptz_onvif import OnvifServer
from citywatch.stack.rtsp import free_rtp_ports, read_frame, rtsp_available, rtsp_server_process

# -- the camera process --------------------------------------------------------------------------------


def _parse_preset(text: str) -> tuple[str, Path]:
    token, sep, clip = text.partition("=")
    if not sep or not token or not clip:
        raise argparse.ArgumentTypeError(f"expected TOKEN=CLIP, got {text!r}")
    return token, Path(clip)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A simulated ONVIF PTZ camera on 127.0.0.1.")
    parser.add_argument("--onvif-port", type=int, required=True)
    parser.add_argument("--rtp-port", type=int, required=True, help="UDP port the RTP video is sent to")
    parser.add_argument("--rtsp-url", required=True, help="the URL GetStreamUri answers")
    parser.add_argument("--preset", type=_parse_preset, action="append", required=True, help="TOKEN=CLIP")
    parser.add_argument("--move-time", type=float, default=2.0, help="seconds a GotoPreset takes")
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--user", default="")
    parser.add_argument("--password", default="")
    parser.add_argument("--stamp", action="store_true", help="write the render time into every frame")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    presets = {
        token: Preset(token, f"preset {token}", clip, pan=round(0.3 * i - 0.5, 3), tilt=round(-0.1 * i, 3))
        for i, (token, clip) in enumerate(args.preset)
    }
    first = next(iter(presets))
    state = PtzState(presets, args.move_time, current=first, target=first)
    server = OnvifServer(args.onvif_port, state, args.user, args.password, args.rtsp_url)
    threading.Thread(target=server.serve_forever, name="onvif", daemon=True).start()
    print(f"ptz_sim: ONVIF on {server.base}, presets {', '.join(presets)}, RTP to udp {args.rtp_port}", flush=True)
    render_forever(state, (width, height), args.fps, args.rtp_port, args.stamp)
    return 1


# -- the launcher --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PtzSimEndpoint:
    onvif: str
    """host:port of the ONVIF services."""
    rtsp_url: str
    user: str
    password: str


class PtzCameraSim(Component):
    """Start a simulated PTZ camera (ONVIF + RTSP on 127.0.0.1) until stop()."""

    def __init__(
        self,
        presets: dict[str, Path],
        *,
        name: str = "ptz",
        move_time: float = 2.0,
        size: tuple[int, int] = (640, 360),
        fps: float = 10.0,
        user: str = "",
        password: str = "",
        stamp: bool = False,
        log_dir: Path | None = None,
    ) -> None:
        if not presets:
            raise ValueError("a PTZ camera needs at least one preset")
        for token, clip in presets.items():
            if not Path(clip).is_file():
                raise ValueError(f"preset {token!r}: clip {clip} does not exist")
        self.presets = {token: Path(clip) for token, clip in presets.items()}
        self.name = name
        self.move_time = move_time
        self.size = size
        self.fps = fps
        self.user = user
        self.password = password
        self.stamp = stamp
        self.log_dir = log_dir or Path.cwd() / "var" / "ptz-sim"
        self._camera: ManagedProcess | None = None
        self._server: ManagedProcess | None = None
        self._endpoint: PtzSimEndpoint | None = None

    @property
    def endpoint(self) -> PtzSimEndpoint:
        if self._endpoint is None:
            raise StackError(f"PTZ simulator {self.name!r} is not started")
        return self._endpoint

    @property
    def processes(self) -> list[ManagedProcess]:
        return [p for p in (self._camera, self._server) if p is not None]

    def start(self, timeout: float = 30.0) -> PtzSimEndpoint:
        if reason := rtsp_available():
            raise StackError(f"PTZ simulator cannot run here: {reason}")
        deadline = time.monotonic() + timeout
        onvif_port, rtsp_port = free_ports(2)
        (rtp_port,) = free_rtp_ports(1)
        rtsp_url = f"rtsp://{LOOPBACK}:{rtsp_port}/{self.name}"
        options = {
            "--onvif-port": onvif_port,
            "--rtp-port": rtp_port,
            "--rtsp-url": rtsp_url,
            "--move-time": self.move_time,
            "--size": f"{self.size[0]}x{self.size[1]}",
            "--fps": self.fps,
            "--user": self.user,
            "--password": self.password,
        }
        argv = [sys.executable, "-u", "-m", __name__, *(str(part) for pair in options.items() for part in pair)]
        argv += ["--stamp"] if self.stamp else []
        for token, clip in self.presets.items():
            argv += ["--preset", f"{token}={clip.resolve()}"]
        self._camera = ManagedProcess(
            f"PTZ simulator {self.name!r} (onvif {LOOPBACK}:{onvif_port})",
            argv,
            log_path=self.log_dir / f"ptz-{self.name}.log",
        )
        self._server = rtsp_server_process(
            rtsp_port,
            {self.name: rtp_port},
            f"rtsp server of PTZ simulator {self.name!r}",
            self.log_dir / f"ptz-{self.name}-rtsp.log",
        )
        try:
            self._camera.start()
            self._server.start()
            self._camera.wait_for_port(onvif_port, max(0.0, deadline - time.monotonic()))
            self._server.wait_for_port(rtsp_port, max(0.0, deadline - time.monotonic()))
            while read_frame(rtsp_url) is None:
                if not self._camera.running():
                    raise self._camera.error(f"exited with code {self._camera.returncode}")
                if time.monotonic() > deadline:
                    raise self._server.error(f"serves no decodable frame at {rtsp_url}")
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise
        self._endpoint = PtzSimEndpoint(f"{LOOPBACK}:{onvif_port}", rtsp_url, self.user, self.password)
        return self._endpoint

    def stop(self) -> None:
        for process in self.processes:
            process.stop(timeout=3.0)
        self._endpoint = None


if __name__ == "__main__":
    sys.exit(main())
