"""RTSP ingestion: one background thread per camera that keeps the stream open and hands out fresh frames.

The thread demuxes and decodes every packet (PyAV over FFmpeg, RTSP over TCP) so the decoder never falls
behind, but converts a picture to BGR only when a visit asks for one: a slow consumer never gets a frame that
waited in a buffer. Between visits the reader can go idle (`active=False`): then only keyframes are decoded,
which keeps the connection and the health fresh at a tenth of the cost; frames are handed out again from the
first keyframe after it turns active.

Failures are detected within the configured timeouts (open, read: a stalled stream that keeps the TCP
connection open counts as a failure after `read_timeout`), logged once per outage with the camera id, and the
stream is reopened with exponential back-off and jitter. A change of resolution is logged once per change and
counted in the health; frames are handed out at the new native size (zones are fractions of the frame).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
import weakref
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import av
import numpy as np

from citywatch.vision.frame import Frame

log = logging.getLogger(__name__)

# Probe little before the first frame: without this, opening an RTSP stream takes 3-5 s instead of 0.2-2 s.
RTSP_OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "200000", "probesize": "100000"}


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
    resolution_changes: int = 0
    last_outage_s: float | None = None
    """How long the last outage lasted, from the first failure to the first frame after it."""


def redact(url: str) -> str:
    """The URL without credentials, for logs and the API."""
    return re.sub(r"//[^/@]*@", "//***@", url)


def _describe(error: Exception) -> str:
    """FFmpeg's message without the URL it quotes (which carries the credentials)."""
    return re.sub(r":\s*'[a-z]+://[^']*'$", "", redact(str(error)))


def probe(camera_id: str, url: str, *, timeout: float = 5.0) -> tuple[int, int]:
    """Open the stream once and decode its first picture: (width, height), or CameraUnavailable with the exact
    reason (`citywatch check --cameras`)."""
    where = redact(url)
    started = time.monotonic()
    try:
        with av.open(url, options=RTSP_OPTIONS, timeout=(timeout, timeout)) as container:
            if not container.streams.video:
                raise CameraUnavailable(f"camera {camera_id!r}: {where} has no video stream")
            for frame in container.decode(container.streams.video[0]):
                return int(frame.width), int(frame.height)
    except av.FFmpegError as error:
        waited = time.monotonic() - started >= 0.9 * timeout
        limit = f"no answer within {timeout:g} s: " if waited else ""
        raise CameraUnavailable(f"camera {camera_id!r}: cannot open {where}: {limit}{_describe(error)}") from None
    raise CameraUnavailable(f"camera {camera_id!r}: {where} ended before its first picture")


class _StallWatchdog:
    """One thread for all readers: marks a camera offline once no frame came for its `read_timeout`.

    FFmpeg's own read timeout fires later than asked on RTSP (periodic RTCP over the TCP session resets it:
    measured 3 s for a 1.5 s timeout), so the reader does not rely on it to notice a stall; the stream is
    reopened when FFmpeg does give up.
    """

    def __init__(self, every: float = 0.1) -> None:
        self.every = every
        self._readers: weakref.WeakSet[RtspReader] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, reader: RtspReader) -> None:
        with self._lock:
            self._readers.add(reader)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="camera-stall-watchdog", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.every)
            with self._lock:
                readers = list(self._readers)
            for reader in readers:
                try:
                    reader._check_stalled()
                except Exception:  # never let one camera stop the watch over the others
                    log.exception("camera %s: stall check failed", reader.camera_id)


_WATCHDOG = _StallWatchdog()


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
        self._active = True  # decode every frame (False: keyframes only)
        self._clean = False  # decoding is complete since the last keyframe (no skipped references)
        self._stalled = False  # the watchdog gave up on this session: whatever it still delivers is stale
        self._picture: np.ndarray | None = None
        self._picture_at: datetime | None = None
        self._sequence = 0
        self._health = CameraHealth(camera_id, False, datetime.now(UTC), None, 0, 0, None, None, None)

    @property
    def health(self) -> CameraHealth:
        with self._lock:
            return self._health

    @property
    def active(self) -> bool:
        return self._active

    def set_active(self, active: bool) -> None:
        """Decode every frame (a visit is on) or keyframes only (between visits)."""
        with self._lock:
            if active and not self._active:
                self._clean = False  # frames reference skipped ones until the next keyframe
            self._active = active

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.camera_id}", daemon=True)
        self._thread.start()
        _WATCHDOG.watch(self)

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
                if self._picture is None or self._picture_at is None or self._sequence == sequence:
                    raise CameraUnavailable(f"camera {self.camera_id!r}: reader stopped")
                picture, taken_at, sequence = self._picture, self._picture_at, self._sequence
            finally:
                self._wanted -= 1
        return Frame(picture, self.camera_id, preset_id, taken_at, sequence)

    # -- the background thread -------------------------------------------------------------------------

    def _run(self) -> None:
        delay = self.backoff_min
        while not self._stop.is_set():
            grabbed = self.health.frames_grabbed
            try:
                self._stream_once()
            except CameraUnavailable as error:
                if self._stop.is_set():
                    break
                self._mark_offline(str(error))
            except Exception as error:  # a bug or a decoder surprise must not kill the camera thread
                log.exception("camera %s: unexpected reader error", self.camera_id)
                self._mark_offline(f"unexpected reader error: {error!r}")
            if self.health.frames_grabbed > grabbed:  # it streamed, then failed: back off from scratch
                delay = self.backoff_min
            if self._stop.wait(delay * random.uniform(0.8, 1.2)):
                break
            delay = min(self.backoff_max, delay * 2)

    def _stream_once(self) -> None:
        where = redact(self.url)
        try:
            # FFmpeg's read timeout is only the backstop: the watchdog notices a stall after `read_timeout`,
            # before FFmpeg times out and flushes a held (stale) frame, which then reads as a live one.
            timeout = (self.open_timeout, 2 * self.read_timeout)
            started = time.monotonic()
            container = av.open(self.url, options=RTSP_OPTIONS, timeout=timeout)
        except av.FFmpegError as error:
            # Name the timeout only when it is what ended the attempt (a refusal comes back at once).
            waited = time.monotonic() - started >= 0.9 * self.open_timeout
            limit = f"no answer within {self.open_timeout:g} s: " if waited else ""
            raise CameraUnavailable(f"cannot open {where}: {limit}{_describe(error)}") from None
        try:
            if not container.streams.video:
                raise CameraUnavailable(f"{where} has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"  # no frame-threading delay: a frame is ready when its packet is
            self._clean = False
            self._stalled = False
            skipping: bool | None = None
            try:
                for packet in container.demux(stream):
                    if self._stop.is_set():
                        return
                    if self._stalled:  # FFmpeg flushes a held frame when it times out: reopen instead
                        raise CameraUnavailable(f"stream {where} stalled")
                    if skipping is not self._skipping():
                        skipping = self._skipping()
                        stream.codec_context.skip_frame = "NONKEY" if skipping else "DEFAULT"
                    for frame in packet.decode():
                        self._grabbed(frame)
            except av.FFmpegError as error:
                raise CameraUnavailable(f"stream {where} stalled or broke: {_describe(error)}") from None
            raise CameraUnavailable(f"stream {where} ended")
        finally:
            container.close()

    def _skipping(self) -> bool:
        return not self._active and self._wanted == 0

    def _grabbed(self, frame: Any) -> None:
        now = datetime.now(UTC)
        with self._lock:
            wanted = self._wanted > 0
            health = self._health
            if frame.key_frame:
                self._clean = True
            clean = self._clean
        if not health.online:
            outage = None
            if health.offline_since is not None and health.reconnects > 0:
                outage = (now - health.offline_since).total_seconds()
                log.info("camera %s: back online after %.1f s", self.camera_id, outage)
            health = replace(health, online=True, offline_since=None, last_error=None, last_outage_s=outage)
        width, height = int(frame.width), int(frame.height)
        if health.width is not None and (width, height) != (health.width, health.height):
            log.warning(
                "camera %s: resolution changed from %dx%d to %dx%d",
                self.camera_id,
                health.width,
                health.height,
                width,
                height,
            )
            health = replace(health, resolution_changes=health.resolution_changes + 1)
        health = replace(health, width=width, height=height, last_frame_at=now)
        picture = None
        if wanted and clean:
            picture = frame.to_ndarray(format="bgr24")
        with self._lock:
            self._health = replace(health, frames_grabbed=health.frames_grabbed + 1)
            if picture is not None:
                self._picture, self._picture_at = picture, now
                self._sequence += 1
                self._lock.notify_all()

    def _check_stalled(self) -> None:
        with self._lock:
            health = self._health
        if self._thread is None or not health.online or health.last_frame_at is None:
            return
        silent = (datetime.now(UTC) - health.last_frame_at).total_seconds()
        if silent > self.read_timeout:
            self._stalled = True
            self._mark_offline(f"stream {redact(self.url)} stalled: no frame for {silent:.1f} s", count=False)

    def _mark_offline(self, reason: str, *, count: bool = True) -> None:
        with self._lock:
            health = self._health
            first_failure = health.online or health.last_error is None
            self._health = replace(
                health,
                online=False,
                offline_since=health.offline_since or datetime.now(UTC),
                reconnects=health.reconnects + int(count),
                last_error=reason if first_failure or count else health.last_error,
            )
            self._lock.notify_all()
        if first_failure:  # once per outage, not once per retry
            log.warning("camera %s offline: %s (retrying with back-off)", self.camera_id, reason)
        else:
            log.debug("camera %s still offline: %s", self.camera_id, reason)
