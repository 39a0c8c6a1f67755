"""A durable local spool for evidence the object store would not take.

One file per object: a JSON header line (key, content type, metadata, sha256, size) followed by the raw bytes.
A file appears only complete: it is written under a temporary name, fsynced, renamed into place and the
directory fsynced, so a crash leaves either the whole item or a stray temporary file.

The file name is derived from the object key, so spooling the same key twice keeps one item, and several
processes may share one spool directory: a concurrent drain at worst uploads an item twice, which the
evidence store's idempotent put turns into one object.

`staging/` holds evidence bytes by sha256 from just before a filing's database transaction until they are
uploaded or spooled: a process killed between the commit and the spool write leaves its bytes there, and
`CaseFiler.recover` re-spools them at the next start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from citywatch.cases.evidence import (
    EvidenceConflict,
    EvidenceStore,
    EvidenceStoreDown,
    StoredObject,
    sha256_hex,
)

log = logging.getLogger(__name__)

_SUFFIX = ".item"
_TEMP_PREFIX = ".tmp-"
_FORMAT_VERSION = 1
# A temporary file this old belongs to a writer that died; younger ones may be another process mid-write.
_STALE_TEMP_SECONDS = 3600.0


class SpoolError(RuntimeError):
    """The spool cannot be read or written (disk full, permissions)."""


class CorruptSpoolItem(ValueError):
    """A spool file that does not parse or whose bytes do not match its recorded sha256."""


@dataclass(frozen=True)
class SpooledItem:
    key: str
    data: bytes
    content_type: str
    metadata: dict[str, str]
    sha256: str


class EvidenceSpool:
    """Evidence waiting on disk for the object store to come back."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.quarantine = self.directory / "quarantine"
        self.staging = self.directory / "staging"
        self.staging.mkdir(parents=True, exist_ok=True)
        # One drain at a time per process; other processes sharing the folder are tolerated (see above).
        self._drain_lock = threading.Lock()
        self._remove_stale_temp_files()

    def add(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> None:
        """Write one item durably; returns only once it would survive a crash."""
        header = {
            "version": _FORMAT_VERSION,
            "key": key,
            "content_type": content_type,
            "metadata": metadata,
            "sha256": sha256_hex(data),
            "size": len(data),
        }
        # ensure_ascii keeps the header one line whatever the metadata holds.
        payload = json.dumps(header, ensure_ascii=True).encode("ascii") + b"\n" + data
        try:
            _write_durably(self._path_for(key), payload)
        except OSError as error:
            raise SpoolError(f"could not spool evidence {key!r} to {self.directory}: {error}") from error

    def pending(self) -> int:
        return sum(1 for _ in self._item_paths())

    def has(self, key: str) -> bool:
        """Whether an item for `key` waits in the spool."""
        return self._path_for(key).exists()

    def keys(self) -> list[str]:
        """Keys of the items waiting (reads every header: for recovery and tests, not hot paths)."""
        keys = []
        for path in self._item_paths():
            try:
                keys.append(_read_item(path).key)
            except (FileNotFoundError, CorruptSpoolItem):
                continue
        return sorted(keys)

    def stage(self, data: bytes) -> str:
        """Keep `data` durably under its sha256 until `unstage`; returns the sha256."""
        digest = sha256_hex(data)
        final = self.staging / digest
        if final.exists():
            return digest
        try:
            _write_durably(final, data)
        except OSError as error:
            raise SpoolError(f"could not stage evidence {digest[:12]} in {self.staging}: {error}") from error
        return digest

    def staged(self, sha256: str) -> bytes | None:
        """The staged bytes with this sha256, or None (missing, or no longer matching their name)."""
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            return None
        try:
            data = (self.staging / sha256).read_bytes()
        except FileNotFoundError:
            return None
        return data if sha256_hex(data) == sha256 else None

    def unstage(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.staging / sha256).unlink()

    def remove_stale_staging(self, keep: set[str], older_than: float = _STALE_TEMP_SECONDS) -> int:
        """Delete staged files no pending evidence needs (not in `keep`) once they are `older_than` seconds:
        younger ones may belong to a filing in flight in another process."""
        cutoff = time.time() - older_than
        removed = 0
        for path in self.staging.iterdir():
            try:
                if path.name not in keep and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def drain(self, store: EvidenceStore, on_uploaded: Callable[[StoredObject], None] | None = None) -> int:
        """Upload spooled items oldest first, removing each once stored; stop at the first EvidenceStoreDown.

        `on_uploaded` runs after the upload and before the file is removed, so if it fails (database down)
        the item stays and is uploaded again next time, which the store's idempotent put makes harmless.
        Items that are corrupt or conflict with a different stored object are moved to `quarantine/`.
        Returns the number of items uploaded (0 if another thread of this process is draining).
        """
        if not self._drain_lock.acquire(blocking=False):
            return 0
        try:
            return self._drain(store, on_uploaded)
        finally:
            self._drain_lock.release()

    def _drain(self, store: EvidenceStore, on_uploaded: Callable[[StoredObject], None] | None) -> int:
        uploaded = 0
        for path in sorted(self._item_paths(), key=_mtime):
            try:
                item = _read_item(path)
            except FileNotFoundError:
                continue  # another process drained it
            except CorruptSpoolItem as error:
                self._quarantine(path, str(error))
                continue
            try:
                stored = store.put(item.key, item.data, content_type=item.content_type, metadata=item.metadata)
            except EvidenceStoreDown as error:
                log.info("evidence store still down, %d item(s) left in spool: %s", self.pending(), error)
                break
            except EvidenceConflict as error:
                self._quarantine(path, str(error))
                continue
            if on_uploaded is not None:
                on_uploaded(stored)
            path.unlink(missing_ok=True)
            uploaded += 1
        return uploaded

    def _path_for(self, key: str) -> Path:
        return self.directory / f"{hashlib.sha256(key.encode('utf-8')).hexdigest()}{_SUFFIX}"

    def _item_paths(self) -> Iterator[Path]:
        return (path for path in self.directory.glob(f"*{_SUFFIX}") if not path.name.startswith("."))

    def _quarantine(self, path: Path, reason: str) -> None:
        self.quarantine.mkdir(exist_ok=True)
        log.error("moving spool item %s to %s: %s", path.name, self.quarantine, reason)
        with contextlib.suppress(FileNotFoundError):  # another process moved or drained it
            os.replace(path, self.quarantine / path.name)

    def _remove_stale_temp_files(self) -> None:
        cutoff = time.time() - _STALE_TEMP_SECONDS
        for path in self.directory.glob(f"{_TEMP_PREFIX}*"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except FileNotFoundError:
                continue


def _read_item(path: Path) -> SpooledItem:
    raw = path.read_bytes()
    header_line, separator, data = raw.partition(b"\n")
    if not separator:
        raise CorruptSpoolItem(f"{path.name}: no header line")
    try:
        header = json.loads(header_line)
        key = str(header["key"])
        content_type = str(header["content_type"])
        metadata = {str(name): str(value) for name, value in header["metadata"].items()}
        expected_sha = str(header["sha256"])
        expected_size = int(header["size"])
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CorruptSpoolItem(f"{path.name}: bad header: {error}") from error
    digest = sha256_hex(data)
    if len(data) != expected_size or digest != expected_sha:
        raise CorruptSpoolItem(
            f"{path.name}: bytes do not match header ({len(data)} bytes sha256 {digest}, "
            f"expected {expected_size} bytes sha256 {expected_sha})"
        )
    return SpooledItem(key=key, data=data, content_type=content_type, metadata=metadata, sha256=digest)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _write_durably(final: Path, data: bytes) -> None:
    """Write `data` to `final` so that a crash leaves the whole file or none: a temporary file in the same folder,
    fsynced, renamed into place, then the folder fsynced. The temporary file is removed if this fails."""
    temp = final.parent / f"{_TEMP_PREFIX}{uuid.uuid4().hex}"
    try:
        with temp.open("xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final)
        _fsync_directory(final.parent)
    except OSError:
        temp.unlink(missing_ok=True)
        raise


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable: the new directory entry is only on disk once the directory is synced."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
