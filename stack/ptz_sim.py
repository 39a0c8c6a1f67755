"""A simulated ONVIF PTZ camera for tests and the demo: presets that change the picture, and a move time.

Design: one child process plays the camera. It answers ONVIF SOAP 1.2 on 127.0.0.1 (device, media and PTZ
services: GetSystemDateAndTime, GetCapabilities, GetServices, GetProfiles, GetStreamUri, GetPresets,
GotoPreset, GetStatus with MoveStatus and UtcTime; WS-Security UsernameToken digest checked when a user is
set) and renders the picture itself: the clip of the preset it was last sent to, or, for `move_time` seconds
after a GotoPreset, a flat grey frame (the view while the head turns: never to be analysed). The frames go
through one ffmpeg (x264, zero latency, SPS/PPS on every keyframe) as RTP to 127.0.0.1, and the project's
GStreamer RTSP server (`rtsp_server_gst.py`) serves them at one URL, like a real camera's single stream.
Rendering in the camera process, rather than switching RTP between publishers, keeps the H.264 stream
continuous when the preset changes, at the cost of one encode (640x360 at 10 fps: a few % of a core).

With `stamp=True` each frame carries its wall-clock render time (milliseconds, 40 bits as black/white
16x16 blocks along the top row), so a reader can measure the age of the frames it gets (`read_stamp`).

    python -m citywatch.stack.ptz_sim --onvif-port P --rtp-port U --preset 1=a.mp4 --preset 2=b.mp4
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from citywatch.stack.processes import LOOPBACK, ManagedProcess, StackError, free_ports
from citywatch.stack.rtsp import (
    SERVER_SCRIPT,
    SYSTEM_PYTHON,
    _free_rtp_ports,
    _system_python_env,
    find_ffmpeg,
    read_frame,
    rtsp_available,
)

MOVING_GREY = 128
STAMP_BITS = 40
STAMP_BLOCK = 16
PROFILE_TOKEN = "profile-main"

# -- the camera process --------------------------------------------------------------------------------

NS = {
    "env": "http://www.w3.org/2003/05/soap-envelope",
    "tds": "http://www.onvif.org/ver10/device/wsdl",
    "trt": "http://www.onvif.org/ver10/media/wsdl",
    "tptz": "http://www.onvif.org/ver20/ptz/wsdl",
    "tt": "http://www.onvif.org/ver10/schema",
    "ter": "http://www.onvif.org/ver10/error",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "wsu": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd",
}
_ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<env:Envelope xmlns:env="{env}" xmlns:tds="{tds}" xmlns:trt="{trt}" xmlns:tptz="{tptz}" xmlns:tt="{tt}" '
    'xmlns:ter="{ter}"><env:Body>{{body}}</env:Body></env:Envelope>'
).format(**NS)


@dataclass
class Preset:
    token: str
    name: str
    clip: Path
    pan: float
    tilt: float


@dataclass
class PtzState:
    """What the head is doing; shared by the SOAP handlers and the renderer under `lock`."""

    presets: dict[str, Preset]
    move_time: float
    current: str
    target: str
    moving_until: float = 0.0
    gotos: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def goto(self, token: str) -> None:
        with self.lock:
            now = time.monotonic()
            moving = now < self.moving_until
            if token == self.target and (moving or token == self.current):
                return  # already there or on the way
            self.current = self.current if not moving else self.target
            self.target = token
            self.moving_until = now + self.move_time
            self.gotos += 1

    def view(self) -> tuple[str | None, bool]:
        """(preset shown, moving); settles the target once the move time is over."""
        with self.lock:
            if time.monotonic() < self.moving_until:
                return None, True
            self.current = self.target
            return self.current, False


class SoapFault(Exception):
    def __init__(self, subcode: str, reason: str, *, sender: bool = True) -> None:
        super().__init__(reason)
        self.subcode = subcode
        self.reason = reason
        self.sender = sender


def _text(parent: ET.Element, path: str) -> str | None:
    node = parent.find(path, NS)
    return None if node is None or node.text is None else node.text.strip()


def _check_auth(envelope: ET.Element, user: str, password: str) -> None:
    token = envelope.find("env:Header/wsse:Security/wsse:UsernameToken", NS)
    if token is None:
        raise SoapFault("ter:NotAuthorized", "Sender not authorized: no UsernameToken")
    name, given = _text(token, "wsse:Username"), _text(token, "wsse:Password")
    nonce, created = _text(token, "wsse:Nonce") or "", _text(token, "wsu:Created") or ""
    digest = base64.b64encode(
        hashlib.sha1(base64.b64decode(nonce) + created.encode() + password.encode()).digest()
    ).decode()
    if name != user or given not in {digest, password}:
        raise SoapFault("ter:NotAuthorized", "Sender not authorized: wrong user or password")


def _position(preset: Preset | None) -> str:
    pan, tilt = (0.0, 0.0) if preset is None else (preset.pan, preset.tilt)
    return f'<tt:PanTilt x="{pan:.3f}" y="{tilt:.3f}"/><tt:Zoom x="0.000"/>'


class OnvifHandler(BaseHTTPRequestHandler):
    server: OnvifServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per SOAP call would drown the camera's log

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            envelope = ET.fromstring(self.rfile.read(length))
            body = envelope.find("env:Body", NS)
            if body is None or len(body) == 0:
                raise SoapFault("ter:InvalidArgVal", "no SOAP body")
            operation = body[0].tag.rsplit("}", 1)[-1]
            if operation != "GetSystemDateAndTime" and self.server.user:  # that one is always open
                _check_auth(envelope, self.server.user, self.server.password)
            payload, status = self.server.answer(operation, body[0]), 200
        except SoapFault as fault:
            side = "env:Sender" if fault.sender else "env:Receiver"
            payload = (
                f"<env:Fault><env:Code><env:Value>{side}</env:Value><env:Subcode><env:Value>{fault.subcode}"
                f'</env:Value></env:Subcode></env:Code><env:Reason><env:Text xml:lang="en">{escape(fault.reason)}'
                "</env:Text></env:Reason></env:Fault>"
            )
            status = 400 if fault.sender else 500
        except ET.ParseError as error:
            reason = f"<env:Reason><env:Text>{escape(str(error))}</env:Text></env:Reason>"
            payload, status = f"<env:Fault>{reason}</env:Fault>", 400
        data = _ENVELOPE.format(body=payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/soap+xml; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class OnvifServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, state: PtzState, user: str, password: str, rtsp_url: str) -> None:
        super().__init__((LOOPBACK, port), OnvifHandler)
        self.state = state
        self.user = user
        self.password = password
        self.rtsp_url = rtsp_url
        self.base = f"http://{LOOPBACK}:{port}/onvif"

    def answer(self, operation: str, request: ET.Element) -> str:
        handler = getattr(self, f"op_{operation}", None)
        if handler is None:
            raise SoapFault("ter:ActionNotSupported", f"{operation} is not supported by this simulator")
        result: str = handler(request)
        return result

    def op_GetSystemDateAndTime(self, _request: ET.Element) -> str:
        now = datetime.now(UTC)
        return (
            "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime><tt:DateTimeType>NTP</tt:DateTimeType>"
            "<tt:DaylightSavings>false</tt:DaylightSavings><tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone>"
            f"<tt:UTCDateTime><tt:Time><tt:Hour>{now.hour}</tt:Hour><tt:Minute>{now.minute}</tt:Minute>"
            f"<tt:Second>{now.second}</tt:Second></tt:Time><tt:Date><tt:Year>{now.year}</tt:Year>"
            f"<tt:Month>{now.month}</tt:Month><tt:Day>{now.day}</tt:Day></tt:Date></tt:UTCDateTime>"
            "</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
        )

    def op_GetServices(self, _request: ET.Element) -> str:
        services = [("tds", "device_service"), ("trt", "media_service"), ("tptz", "ptz_service")]
        entries = "".join(
            f"<tds:Service><tds:Namespace>{NS[prefix]}</tds:Namespace><tds:XAddr>{self.base}/{path}</tds:XAddr>"
            "<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version></tds:Service>"
            for prefix, path in services
        )
        return f"<tds:GetServicesResponse>{entries}</tds:GetServicesResponse>"

    def op_GetCapabilities(self, _request: ET.Element) -> str:
        return (
            "<tds:GetCapabilitiesResponse><tds:Capabilities>"
            f"<tt:Device><tt:XAddr>{self.base}/device_service</tt:XAddr></tt:Device>"
            f"<tt:Media><tt:XAddr>{self.base}/media_service</tt:XAddr><tt:StreamingCapabilities>"
            "<tt:RTPMulticast>false</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true"
            "</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media>"
            f"<tt:PTZ><tt:XAddr>{self.base}/ptz_service</tt:XAddr></tt:PTZ>"
            "</tds:Capabilities></tds:GetCapabilitiesResponse>"
        )

    def op_GetProfiles(self, _request: ET.Element) -> str:
        return (
            f'<trt:GetProfilesResponse><trt:Profiles token="{PROFILE_TOKEN}" fixed="true"><tt:Name>main</tt:Name>'
            '<tt:PTZConfiguration token="ptz-config"><tt:Name>ptz</tt:Name><tt:UseCount>1</tt:UseCount>'
            "<tt:NodeToken>ptz-node</tt:NodeToken></tt:PTZConfiguration></trt:Profiles></trt:GetProfilesResponse>"
        )

    def op_GetStreamUri(self, _request: ET.Element) -> str:
        return (
            f"<trt:GetStreamUriResponse><trt:MediaUri><tt:Uri>{escape(self.rtsp_url)}</tt:Uri>"
            "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false"
            "</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:GetStreamUriResponse>"
        )

    def _profile(self, request: ET.Element) -> None:
        token = _text(request, "tptz:ProfileToken")
        if token != PROFILE_TOKEN:
            raise SoapFault("ter:NoProfile", f"no media profile {token!r}")

    def op_GetPresets(self, request: ET.Element) -> str:
        self._profile(request)
        presets = "".join(
            f'<tptz:Preset token="{escape(p.token)}"><tt:Name>{escape(p.name)}</tt:Name>'
            f"<tt:PTZPosition>{_position(p)}</tt:PTZPosition></tptz:Preset>"
            for p in self.state.presets.values()
        )
        return f"<tptz:GetPresetsResponse>{presets}</tptz:GetPresetsResponse>"

    def op_GotoPreset(self, request: ET.Element) -> str:
        self._profile(request)
        token = _text(request, "tptz:PresetToken") or ""
        if token not in self.state.presets:
            raise SoapFault("ter:NoToken", f"no preset with token {token!r}")
        self.state.goto(token)
        return "<tptz:GotoPresetResponse/>"

    def op_GetStatus(self, request: ET.Element) -> str:
        self._profile(request)
        shown, moving = self.state.view()
        move = "MOVING" if moving else "IDLE"
        where = self.state.presets.get(shown) if shown else self.state.presets[self.state.current]
        utc = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return (
            f"<tptz:GetStatusResponse><tptz:PTZStatus><tt:Position>{_position(where)}</tt:Position>"
            f"<tt:MoveStatus><tt:PanTilt>{move}</tt:PanTilt><tt:Zoom>IDLE</tt:Zoom></tt:MoveStatus>"
            f"<tt:UtcTime>{utc}</tt:UtcTime></tptz:PTZStatus></tptz:GetStatusResponse>"
        )


def stamp(image: np.ndarray, millis: int) -> None:
    """Write `millis` (mod 2**40) into the top row of `image` as black/white blocks, most significant first."""
    for bit in range(STAMP_BITS):
        on = (millis >> (STAMP_BITS - 1 - bit)) & 1
        image[:STAMP_BLOCK, bit * STAMP_BLOCK : (bit + 1) * STAMP_BLOCK] = 255 if on else 0


def read_stamp(image: np.ndarray) -> int | None:
    """The milliseconds `stamp` wrote, or None when the picture is too narrow to hold them."""
    if image.shape[1] < STAMP_BITS * STAMP_BLOCK:
        return None
    half = STAMP_BLOCK // 2
    centres = image[half, half::STAMP_BLOCK][:STAMP_BITS].mean(axis=-1)
    return int("".join("1" if value > 127 else "0" for value in centres), 2)


def frame_age_s(image: np.ndarray, received_at: float) -> float | None:
    """Seconds between the simulator rendering this picture and `received_at` (Unix time)."""
    millis = read_stamp(image)
    if millis is None:
        return None
    now_millis = int(received_at * 1000) % (1 << STAMP_BITS)
    return ((now_millis - millis) % (1 << STAMP_BITS)) / 1000


def is_moving_frame(image: np.ndarray) -> bool:
    """True for the simulator's picture while the head turns (flat grey below the stamp row)."""
    body = image[STAMP_BLOCK + 4 :]
    return bool(abs(float(body.mean()) - MOVING_GREY) < 6 and float(body.std()) < 6)


def render_forever(state: PtzState, size: tuple[int, int], fps: float, rtp_port: int, with_stamp: bool) -> None:
    import cv2  # the camera process only

    width, height = size
    encoder = subprocess.Popen(
        [
            str(find_ffmpeg()), "-hide_banner", "-nostdin", "-loglevel", "warning",
            "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-",
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
            "-g", "10", "-keyint_min", "10", "-bf", "0", "-x264-params", "repeat-headers=1",
            "-f", "rtp", f"rtp://{LOOPBACK}:{rtp_port}",
        ],
        stdin=subprocess.PIPE,
    )  # fmt: skip
    assert encoder.stdin is not None
    captures = {token: cv2.VideoCapture(str(p.clip)) for token, p in state.presets.items()}
    grey = np.full((height, width, 3), MOVING_GREY, np.uint8)
    next_at = time.monotonic()
    while encoder.poll() is None:
        shown, _moving = state.view()
        image: np.ndarray
        if shown is None:
            image = grey.copy()
        else:
            capture = captures[shown]
            ok, picture = capture.read()
            if not ok:  # loop the clip
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, picture = capture.read()
            if not ok or picture is None:
                raise SystemExit(f"cannot read the clip of preset {shown}: {state.presets[shown].clip}")
            image = cv2.resize(picture, (width, height), interpolation=cv2.INTER_AREA)
        if with_stamp:
            stamp(image, int(time.time() * 1000) % (1 << STAMP_BITS))
        try:
            encoder.stdin.write(image.tobytes())
            encoder.stdin.flush()
        except BrokenPipeError:
            break
        next_at += 1 / fps
        time.sleep(max(0.0, next_at - time.monotonic()))
    raise SystemExit(f"ffmpeg encoder exited with code {encoder.poll()}")


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


class PtzCameraSim:
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
        (rtp_port,) = _free_rtp_ports(1)
        rtsp_url = f"rtsp://{LOOPBACK}:{rtsp_port}/{self.name}"
        argv = [
            sys.executable, "-u", "-m", "citywatch.stack.ptz_sim", "--onvif-port", str(onvif_port),
            "--rtp-port", str(rtp_port), "--rtsp-url", rtsp_url, "--move-time", str(self.move_time),
            "--size", f"{self.size[0]}x{self.size[1]}", "--fps", str(self.fps),
            "--user", self.user, "--password", self.password,
        ]  # fmt: skip
        argv += ["--stamp"] if self.stamp else []
        for token, clip in self.presets.items():
            argv += ["--preset", f"{token}={clip.resolve()}"]
        self._camera = ManagedProcess(
            f"PTZ simulator {self.name!r} (onvif {LOOPBACK}:{onvif_port})",
            argv,
            log_path=self.log_dir / f"ptz-{self.name}.log",
        )
        server_argv = [str(SYSTEM_PYTHON), "-u", str(SERVER_SCRIPT), "--port", str(rtsp_port)]
        self._server = ManagedProcess(
            f"rtsp server of PTZ simulator {self.name!r} ({LOOPBACK}:{rtsp_port})",
            [*server_argv, "--stream", f"{self.name}={rtp_port}"],
            env=_system_python_env(),
            log_path=self.log_dir / f"ptz-{self.name}-rtsp.log",
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

    def __enter__(self) -> PtzCameraSim:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
