"""RTSP ingestion: one background thread per camera that keeps the stream open and hands out fresh frames.

The thread grabs (demuxes and decodes) every packet so the decoder never falls behind, but converts a picture
to BGR only when a visit asks for one: a slow consumer never gets a frame that waited in a buffer.
A camera that fails is reconnected with exponential back-off and jitter; the failure is logged once per outage.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import cv2
import numpy as np

from citywatch.vision.frame import Frame

log = logging.getLogger(__name__)

# Probe little before the first frame: without this, opening an RTSP stream takes 3-5 s instead of 0.2-2 s.
_FFMPEG_OPTIONS = "rtsp_transport;tcp|analyzeduration;200000|probesize;100000"
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", _FFMPEG_OPTIONS)


class CameraUnavailable(RuntimeError):
    """No frame could be had from a camera; the message names the camera and the reason."""


@dataclass(frozen=True)
class CameraHealth:
    camera_id: str
    online: bool
    offline_since: datetime | None
    last_frame_at: datetime | None
    reconnects: int
    frames_grabbed: int
    last_error: str | None
    width: int | None
    height: int | None


def redact(url: str) -> str:
    """The URL without credentials, for logs and the API."""
    return re.sub(r"//[^/@]*@", "//***@", url)


class RtspReader:
    """Keeps one camera's stream open in a background thread."""

    def __init__(
        self,
        camera_id: str,
        url: str,
        *,
        open_timeout: float = 5.0,
        read_timeout: float = 5.0,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        self.camera_id = camera_id
        self.url = url
        self.open_timeout = open_timeout
        self.read_timeout = read_timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Condition()
        self._wanted = 0  # how many readers wait for the next picture
        self._picture: np.ndarray | None = None
        self._picture_at: datetime | None = None
        self._sequence = 0
        self._health = CameraHealth(camera_id, False, datetime.now(UTC), None, 0, 0, None, None, None)

    @property
    def health(self) -> CameraHealth:
        with self._lock:
            return self._health

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.camera_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def read(self, preset_id: str | None = None, timeout: float | None = None) -> Frame:
        """The next picture decoded after this call, as a Frame; CameraUnavailable if none comes in time."""
        timeout = self.read_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._lock:
            sequence = self._sequence
            self._wanted += 1
            try:
                while self._sequence == sequence and not self._stop.is_set():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        reason = self._health.last_error or f"no frame within {timeout:.1f} s"
                        raise CameraUnavailable(f"camera {self.camera_id!r}: {reason}")
                    self._lock.wait(remaining)
                if self._picture is None or self._picture_at is None:
                    raise CameraUnavailable(f"camera {self.camera_id!r}: reader stopped")
                picture, taken_at, sequence = self._picture, self._picture_at, self._sequence
            finally:
                self._wanted -= 1
        return Frame(picture, self.camera_id, preset_id, taken_at, sequence)

    # -- the background thread -------------------------------------------------------------------------

    def _run(self) -> None:
        delay = self.backoff_min
        while not self._stop.is_set():
            try:
                self._stream_once()
                delay = self.backoff_min  # the stream worked for a while: start backing off from scratch
            except CameraUnavailable as error:
                self._mark_offline(str(error))
            except Exception as error:  # a bug or an OpenCV surprise must not kill the camera thread
                log.exception("camera %s: unexpected reader error", self.camera_id)
                self._mark_offline(f"unexpected reader error: {error!r}")
            if self._stop.wait(delay * random.uniform(0.8, 1.2)):
                break
            delay = min(self.backoff_max, delay * 2)

    def _stream_once(self) -> None:
        capture = cv2.VideoCapture(
            self.url,
            cv2.CAP_FFMPEG,
            [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout * 1000),
            ],
        )  # fmt: skip
        try:
            if not capture.isOpened():
                raise CameraUnavailable(f"cannot open {redact(self.url)} within {self.open_timeout:.0f} s")
            while not self._stop.is_set():
                if not capture.grab():
                    raise CameraUnavailable(f"stream {redact(self.url)} stalled or ended")
                self._grabbed(capture)
        finally:
            capture.release()

    def _grabbed(self, capture: cv2.VideoCapture) -> None:
        now = datetime.now(UTC)
        with self._lock:
            wanted = self._wanted > 0
            health = self._health
        if not health.online:
            if health.offline_since is not None and health.reconnects > 0:
                down = (now - health.offline_since).total_seconds()
                log.info("camera %s: back online after %.1f s", self.camera_id, down)
            health = replace(health, online=True, offline_since=None, last_error=None)
        picture = None
        if wanted:
            ok, picture = capture.retrieve()
            if not ok or picture is None or picture.ndim != 3:
                raise CameraUnavailable(f"stream {redact(self.url)} gave a picture that could not be decoded")
        with self._lock:
            self._health = replace(health, last_frame_at=now, frames_grabbed=health.frames_grabbed + 1)
            if picture is not None:
                self._picture, self._picture_at = picture, now
                self._sequence += 1
                self._health = replace(self._health, width=picture.shape[1], height=picture.shape[0])
                self._lock.notify_all()

    def _mark_offline(self, reason: str) -> None:
        with self._lock:
            health = self._health
            first_failure = health.online or health.last_error is None
            self._health = replace(
                health,
                online=False,
                offline_since=health.offline_since or datetime.now(UTC),
                reconnects=health.reconnects + 1,
                last_error=reason,
            )
            self._lock.notify_all()
        if first_failure:  # once per outage, not once per retry
            log.warning("camera %s offline: %s (retrying with back-off)", self.camera_id, reason)
        else:
            log.debug("camera %s still offline: %s", self.camera_id, reason)
