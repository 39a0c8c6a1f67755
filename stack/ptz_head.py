"""The simulated PTZ head and its picture: presets, the move time, and the frames sent while it turns.

`PtzState` is what the head does (shared by the ONVIF handlers and the renderer under its lock);
`render_forever` draws the clip of the preset shown, or a flat grey frame while the head turns, and pipes
the frames through one ffmpeg (x264, zero latency, SPS/PPS on every keyframe) as RTP to 127.0.0.1.
With a stamp, each frame carries its wall-clock render time (milliseconds, 40 bits as black/white 16x16
blocks along the top row), so a reader can measure the age of the frames it gets (`frame_age_s`).
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from citywatch.stack.processes import LOOPBACK
from citywatch.stack.rtsp import find_ffmpeg

MOVING_GREY = 128
STAMP_BITS = 40
STAMP_BLOCK = 16


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
    options = (
        "-hide_banner -nostdin -loglevel warning"
        f" -f rawvideo -pix_fmt bgr24 -s {width}x{height} -r {fps} -i -"
        " -c:v libx264 -preset ultrafast -tune zerolatency -pix_fmt yuv420p"
        " -g 10 -keyint_min 10 -bf 0 -x264-params repeat-headers=1"
        f" -f rtp rtp://{LOOPBACK}:{rtp_port}"
    )
    encoder = subprocess.Popen([str(find_ffmpeg()), *options.split()], stdin=subprocess.PIPE)
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
