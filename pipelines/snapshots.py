"""Each preset's latest frame, kept in S3 for the cameras page: what a supervisor sees a preset watch.

A patrol offers every frame it reads; `Snapshots` stores at most one per preset every `every` seconds, shrunk
to `width` pixels, under `live/<camera>/<preset>.jpg` in its own bucket, overwriting the last one. It is a
separate bucket because the evidence bucket keeps every version under retention, and a picture replaced each
minute must not pile up there.

Uploads run on a small thread pool: a slow or dead object store never delays a sample. A failed upload is
counted and logged once per outage; the next offer after `every` tries again. Nothing here can lose a case:
the cameras page only shows an older picture, or none, until the store is back.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import cv2

from citywatch.cases.live import SnapshotStore
from citywatch.pipelines.config import StorageConfig
from citywatch.vision.frame import Frame

log = logging.getLogger(__name__)


def snapshot_key(camera_id: str, preset_id: str) -> str:
    return f"live/{camera_id}/{preset_id}.jpg"


@dataclass(frozen=True)
class Snapshot:
    key: str
    captured_at: datetime
    width: int
    height: int


class Snapshots:
    """Takes frames from the patrols and keeps each preset's latest in a `SnapshotStore`."""

    def __init__(
        self, store: SnapshotStore, *, every: float = 30.0, width: int = 640, quality: int = 70, workers: int = 2
    ) -> None:
        self.store = store
        self.every = every
        self.width = width
        self.quality = quality
        self.stored = 0
        self.failed = 0
        self.last_error: str | None = None
        self._latest: dict[tuple[str, str], Snapshot] = {}
        self._offered: dict[tuple[str, str], datetime] = {}
        self._busy: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="snapshots")

    def offer(self, frame: Frame) -> bool:
        """Store this frame if its preset's last one is `every` old and none is uploading; never blocks or
        raises. True when an upload was started."""
        where = (frame.camera_id, frame.preset_id or "-")
        with self._lock:
            last = self._offered.get(where)
            if where in self._busy or (last is not None and (frame.captured_at - last).total_seconds() < self.every):
                return False
            self._busy.add(where)
            self._offered[where] = frame.captured_at
        try:
            self._pool.submit(self._store, where, frame)
        except RuntimeError:  # the pool is shut down: the fleet is stopping
            with self._lock:
                self._busy.discard(where)
            return False
        return True

    def _store(self, where: tuple[str, str], frame: Frame) -> None:
        try:
            snapshot = self._upload(where, frame)
        except Exception as error:  # the page shows an older picture; the patrol never notices
            message = f"live frame of camera {where[0]!r} preset {where[1]!r} not stored: {error}"
            with self._lock:  # counters and the busy mark change together: a reader never sees one without the other
                self._busy.discard(where)
                self.failed += 1
                first, self.last_error = self.last_error is None, message
            if first:
                log.warning("%s (the cameras page shows older pictures until the store is back)", message)
            return
        with self._lock:
            self._busy.discard(where)
            self._latest[where] = snapshot
            self.stored += 1
            recovered, self.last_error = self.last_error, None
        if recovered:
            log.warning("live frames: stored again in s3://%s", self.store.bucket)

    def _upload(self, where: tuple[str, str], frame: Frame) -> Snapshot:
        image = frame.image
        height, width = image.shape[:2]
        if width > self.width:
            height = round(height * self.width / width)
            width = self.width
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise ValueError(f"could not encode a {width}x{height} frame as JPEG")
        key = snapshot_key(*where)
        self.store.put(key, jpeg.tobytes())
        return Snapshot(key, frame.captured_at, width, height)

    def latest(self, camera_id: str) -> dict[str, Snapshot]:
        """The newest stored snapshot of each of a camera's presets."""
        with self._lock:
            return {preset: shot for (camera, preset), shot in self._latest.items() if camera == camera_id}

    def health(self) -> dict[str, object]:
        with self._lock:
            return {
                "bucket": self.store.bucket,
                "stored": self.stored,
                "failed": self.failed,
                "last_error": self.last_error,
            }

    def close(self, wait: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)


def snapshot_store_from_config(storage: StorageConfig) -> SnapshotStore | None:
    """The bucket of latest frames on the evidence store's endpoint; None when `storage.live` is turned off."""
    if not storage.live.enabled:
        return None
    evidence = storage.evidence
    return SnapshotStore.from_endpoint(
        evidence.endpoint, evidence.access_key, evidence.secret_key, storage.live.bucket, secure=evidence.secure
    )


def snapshots_from_config(storage: StorageConfig) -> Snapshots | None:
    """The fleet's `Snapshots` for a city's storage config; None when `storage.live` is turned off."""
    store = snapshot_store_from_config(storage)
    if store is None:
        return None
    live = storage.live
    return Snapshots(store, every=live.every.total_seconds(), width=live.width, quality=live.jpeg_quality)
