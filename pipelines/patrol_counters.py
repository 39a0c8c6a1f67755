"""Each camera's patrol counters (visits, missed, violations, errors) kept across restarts of its replica.

Where: one small JSON object per camera, `counters/<camera>.json`, in the live bucket beside the latest frames.
Not the case database: the counters are operational state, not records, and a table would need a migration
for what is a handful of integers per camera; not local disk: a restarted replica may run on another node.

The counters add up, so nothing is ever overwritten with zeros: a patrol starts at 0, and as soon as the
store answers, the stored counts of the camera's earlier patrols are *added* to it (`PatrolStats.add`); only
then are its totals saved, every `every` seconds. With the store down at start the camera counts from 0 and
catches up once the store is back. What an abruptly killed replica counted since its last save is lost (at
most `every` seconds of counts).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import weakref
from datetime import datetime
from typing import Any

from citywatch.cases.evidence import EvidenceNotFound, EvidenceStoreDown
from citywatch.cases.live import SnapshotStore
from citywatch.pipelines.config import StorageConfig
from citywatch.pipelines.patrol import COUNTERS, CameraPatrol
from citywatch.pipelines.snapshots import snapshot_store_from_config

log = logging.getLogger(__name__)


def counters_key(camera_id: str) -> str:
    return f"counters/{camera_id}.json"


def parse_counters(data: bytes) -> tuple[dict[str, Any], datetime | None]:
    """A stored counters document as (counts, since), checked whole before anything is added.

    Raises ValueError naming what is wrong: a half-applied document would add its counts again at every save.
    """
    document = json.loads(data)
    counts = document.get("counts") if isinstance(document, dict) else None
    if not isinstance(counts, dict):
        raise ValueError("no `counts` object")
    for name in COUNTERS:
        value = counts.get(name, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"counts.{name} is not a count: {value!r}")
    reasons = counts.get("missed_reasons", {})
    if not isinstance(reasons, dict) or not all(isinstance(v, int) and v >= 0 for v in reasons.values()):
        raise ValueError(f"counts.missed_reasons is not a map of counts: {reasons!r}")
    since = None
    with contextlib.suppress(KeyError, TypeError, ValueError):  # no usable time: the counters' start stays
        since = datetime.fromisoformat(document["since"])
    if since is not None and since.tzinfo is None:
        since = None
    return counts, since


class PatrolCounters:
    """Restores and saves the counters of the patrols it is shown; one per fleet."""

    def __init__(self, store: SnapshotStore, *, every: float = 30.0) -> None:
        self.store = store
        self.every = every
        self.last_error: str | None = None
        self._merged: weakref.WeakSet[CameraPatrol] = weakref.WeakSet()  # stored counts added (or none found)
        self._lock = threading.Lock()

    def restore(self, patrol: CameraPatrol) -> bool:
        """Add the camera's stored counts to `patrol` once; False while the store cannot be read."""
        if patrol in self._merged:
            return True
        try:
            stored = parse_counters(self.store.get(counters_key(patrol.camera_id)))
        except EvidenceNotFound:
            stored = None  # a camera never counted before
        except EvidenceStoreDown as error:
            self._failed(f"counters of camera {patrol.camera_id!r} not read: {error}")
            return False
        except ValueError as error:  # a damaged object must not stop the camera from counting again
            log.warning("camera %s: stored counters unreadable, counting from 0: %s", patrol.camera_id, error)
            stored = None
        # The periodic save and a stop may restore the same patrol from two threads: add the history once.
        with self._lock:
            if patrol in self._merged:
                return True
            if stored is not None:
                counts, since = stored
                patrol.stats.add(counts)
                if since is not None:
                    patrol.counting_since = min(patrol.counting_since, since)
            self._merged.add(patrol)
        return True

    def merged(self, patrol: CameraPatrol) -> bool:
        """Whether `patrol`'s counters include the stored history."""
        return patrol in self._merged

    def adopt(self, patrol: CameraPatrol) -> None:
        """`patrol` already carries the camera's history (handed over in memory): nothing to add from the store."""
        self._merged.add(patrol)

    def save(self, patrol: CameraPatrol) -> bool:
        """Store the patrol's totals (after adding the stored ones); False when the store is down."""
        if not self.restore(patrol):
            return False
        document = {
            "camera_id": patrol.camera_id,
            "since": patrol.counting_since.isoformat(),
            "counts": patrol.stats.counts(),
        }
        try:
            self.store.put(
                counters_key(patrol.camera_id), json.dumps(document).encode(), content_type="application/json"
            )
        except EvidenceStoreDown as error:
            self._failed(f"counters of camera {patrol.camera_id!r} not stored: {error}")
            return False
        if self.last_error is not None:
            log.info("patrol counters: stored again in s3://%s", self.store.bucket)
            self.last_error = None
        return True

    def _failed(self, message: str) -> None:
        if self.last_error is None:  # once per outage; the snapshots' own warning already names the store
            log.info("%s (kept in memory, saved when the store is back)", message)
        self.last_error = message


def patrol_counters_from_config(storage: StorageConfig) -> PatrolCounters | None:
    """The fleet's `PatrolCounters` in the live bucket; None when `storage.live` is off (counters then last as
    long as the replica)."""
    store = snapshot_store_from_config(storage)
    return None if store is None else PatrolCounters(store)
