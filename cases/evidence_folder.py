"""Evidence in a plain folder: the `EvidenceStore` interface the filer uses, without an object store.

For `citywatch replay`: a throwaway run keeps its evidence as files under `<out>/evidence/<key>`, beside a
`.meta.json` holding the content type and metadata. It subclasses `EvidenceStore` so that the filer and the
spool take it as they are; every method they call is overridden (no S3 client is ever made).
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from citywatch.cases.evidence import (
    SHA256_METADATA,
    EvidenceConflict,
    EvidenceNotFound,
    EvidenceStore,
    StoredObject,
    sha256_hex,
)


class FolderEvidenceStore(EvidenceStore):
    """One folder of evidence objects, keyed like the bucket's objects; writes are idempotent, never overwrite."""

    def __init__(self, root: Path) -> None:  # no super().__init__: there is no S3 client
        self.root = root
        self.bucket = str(root)
        root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The file holding `key` (keys are relative POSIX paths with no `..`)."""
        parts = PurePosixPath(key).parts
        if not parts or key.startswith("/") or ".." in parts:
            raise ValueError(f"evidence key {key!r} is not a relative path inside {self.root}")
        return self.root.joinpath(*parts)

    def _meta_path(self, key: str) -> Path:
        path = self.path(key)
        return path.with_name(path.name + ".meta.json")

    def head(self, key: str) -> StoredObject | None:
        meta = self._read_meta(key)
        if meta is None:
            return None
        return StoredObject(key, meta["metadata"].get(SHA256_METADATA, ""), int(meta["size"]), meta["content_type"])

    def metadata(self, key: str) -> dict[str, str]:
        meta = self._read_meta(key)
        if meta is None:
            raise EvidenceNotFound(f"no evidence object {self.path(key)}")
        return dict(meta["metadata"])

    def put(self, key: str, data: bytes, *, content_type: str, metadata: dict[str, str]) -> StoredObject:
        digest = sha256_hex(data)
        stored = StoredObject(key=key, sha256=digest, size=len(data), content_type=content_type)
        existing = self.head(key)
        if existing is not None:
            if existing.sha256 == digest:
                return stored
            raise EvidenceConflict(f"{self.path(key)} already holds sha256 {existing.sha256}; refusing {digest}")
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        meta = {"content_type": content_type, "size": len(data), "metadata": {**metadata, SHA256_METADATA: digest}}
        self._meta_path(key).write_text(json.dumps(meta, sort_keys=True), encoding="utf-8")
        return stored

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise EvidenceNotFound(f"no evidence object {self.path(key)}") from None

    def _read_meta(self, key: str) -> dict[str, Any] | None:
        try:
            meta: dict[str, Any] = json.loads(self._meta_path(key).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return meta
