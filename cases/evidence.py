"""Evidence objects in S3 (MinIO in production, SeaweedFS in tests) through the `minio` client.

Evidence is immutable: a key is written once, and writing the same key again with the same bytes is a no-op
(so a retried upload or a spool drained twice leaves one object), while different bytes under an existing key
are refused. Every object carries its sha256 in its metadata so the bytes can be checked against the case
record without the database.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Self, TypedDict, Unpack
from urllib.parse import quote, unquote

import urllib3
from minio import Minio
from minio.commonconfig import COMPLIANCE, ENABLED
from minio.error import InvalidResponseError, S3Error, ServerError
from minio.objectlockconfig import DAYS, ObjectLockConfig
from minio.versioningconfig import VersioningConfig

# Errors that mean "the store is unreachable or would not take the request". OSError covers socket and TLS
# failures that escape urllib3's wrapping.
S3_UNAVAILABLE = (S3Error, ServerError, InvalidResponseError, urllib3.exceptions.HTTPError, OSError)
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "ResourceNotFound"})
# S3 metadata travels in HTTP headers (ASCII only). Values are percent-encoded, leaving printable ASCII other
# than "%" as is, so camera ids such as "白云-0412" survive and plain ids read the same in any S3 browser.
_METADATA_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
_META_PREFIX = "x-amz-meta-"
SHA256_METADATA = "sha256"


class EvidenceError(RuntimeError):
    """Base of the evidence layer's errors."""


class EvidenceStoreDown(EvidenceError):
    """The object store cannot be reached or refused the request; the caller should spool and retry later."""


class EvidenceNotFound(EvidenceError, LookupError):
    """No object under this key."""


class EvidenceConflict(EvidenceError):
    """An object already exists under this key with different bytes; evidence is never overwritten."""


class ClientOptions(TypedDict, total=False):
    """`s3_client`'s options, passed through by the stores' `from_endpoint` (the defaults are s3_client's)."""

    secure: bool
    region: str | None
    connect_timeout: float
    read_timeout: float
    retries: int


@dataclass(frozen=True)
class StoredObject:
    key: str
    sha256: str
    size: int
    content_type: str


def s3_client(
    endpoint: str,
    access_key: str,
    secret_key: str,
    *,
    secure: bool = False,
    region: str | None = "us-east-1",
    connect_timeout: float = 2.0,
    read_timeout: float = 5.0,
    retries: int = 1,
) -> Minio:
    """A minio client with short timeouts and one retry of a 5xx answer, so a dead store fails in seconds.

    minio's own default is 5-minute timeouts and 5 retries, which would stall a filing for half an hour.
    `region` defaults to S3's and MinIO's default so the client never asks the server for it: presigned
    URLs can then be made while the store is down. Pass None to have minio look it up.
    """
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        # Same override minio honours; None means the system trust store.
        ca_certs=os.environ.get("SSL_CERT_FILE"),
        # Connection and read failures are not retried: the callers spool or try again later, and each retry
        # would log a urllib3 warning on every attempt of an outage. Only 5xx answers get `retries`.
        retries=urllib3.Retry(
            total=retries,
            connect=0,
            read=0,
            other=0,
            backoff_factor=0.2,
            status_forcelist=(500, 502, 503, 504),
            raise_on_status=False,
        ),
    )
    return Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region, http_client=http)


def ensure_bucket(client: Minio, bucket: str, *, object_lock: bool = False) -> None:
    """Create `bucket` if it is missing; another process creating it first is fine. Raises S3_UNAVAILABLE."""
    try:
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket, object_lock=object_lock)
    except S3Error as error:
        if error.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
            raise


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class S3Bucket:
    """One bucket on an S3 endpoint: the client, and the one place its failures become EvidenceStoreDown."""

    what = "object store"
    """What the bucket holds, for error messages."""

    def __init__(self, client: Minio, bucket: str, *, endpoint: str = "(S3 endpoint)") -> None:
        self._client = client
        self.bucket = bucket
        # For error messages only: minio keeps its endpoint private.
        self._endpoint = endpoint

    @classmethod
    def from_endpoint(
        cls, endpoint: str, access_key: str, secret_key: str, bucket: str, **client: Unpack[ClientOptions]
    ) -> Self:
        """A store on `s3_client` (short timeouts, one retry, no region lookup)."""
        return cls(s3_client(endpoint, access_key, secret_key, **client), bucket, endpoint=endpoint)

    @contextmanager
    def _s3(self, action: str, key: str | None = None) -> Iterator[None]:
        """Turn the client's failures into EvidenceNotFound (no object under `key`) or EvidenceStoreDown."""
        try:
            yield
        except S3Error as error:
            if key is not None and error.code in _NOT_FOUND_CODES:
                raise EvidenceNotFound(f"no object s3://{self.bucket}/{key}") from error
            raise self._down(action, key, error) from error
        except S3_UNAVAILABLE as error:
            raise self._down(action, key, error) from error

    def _down(self, action: str, key: str | None, cause: BaseException) -> EvidenceStoreDown:
        where = f"s3://{self.bucket}/{key}" if key else f"bucket {self.bucket!r}"
        return EvidenceStoreDown(
            f"{self.what} {self._endpoint} could not {action} {where}: {type(cause).__name__}: {cause}"
        )

    def get(self, key: str) -> bytes:
        with self._s3("read", key):
            response = self._client.get_object(self.bucket, key)
        try:
            with self._s3("read", key):
                return response.read()
        finally:
            response.close()
            response.release_conn()

    def presigned_get(self, key: str, expires: timedelta = timedelta(minutes=15)) -> str:
        """A URL anyone holding it can GET until it expires (S3 allows at most 7 days).

        The URL names the endpoint this store was built with: a browser must be able to reach that address.
        Signed locally (the client knows its region): works while the store is down.
        """
        # Fails only when the region must be looked up (region=None) and the store is down.
        with self._s3("sign a URL for", key):
            return self._client.presigned_get_object(self.bucket, key, expires=expires)


class EvidenceStore(S3Bucket):
    """One bucket of evidence objects."""

    what = "evidence store"

    def ensure_bucket(self, *, object_lock: bool = False) -> None:
        """Create the bucket if it is missing (safe when several processes race to create it).

        `object_lock`: create it with S3 object lock (needed for retention; it also turns versioning on). An
        existing bucket is left as it is: object lock can only be chosen when a bucket is made."""
        with self._s3("create"):
            ensure_bucket(self._client, self.bucket, object_lock=object_lock)

    def protect(self, retention_days: int | None) -> None:
        """Turn versioning on, and with `retention_days` a default COMPLIANCE retention: nobody, not even the
        bucket's owner, can delete or overwrite a version of evidence before it runs out.

        Retention needs a bucket made with object lock (`ensure_bucket(object_lock=True)`). MinIO refuses it
        on other buckets; SeaweedFS 4 accepts the setting (tested in tests/cases/test_evidence_protection.py).
        """
        with self._s3("protect"):
            self._client.set_bucket_versioning(self.bucket, VersioningConfig(ENABLED))
            if retention_days is not None:
                self._client.set_object_lock_config(self.bucket, ObjectLockConfig(COMPLIANCE, retention_days, DAYS))

    def protection(self) -> dict[str, str | int | None]:
        """What the bucket enforces now: versioning status, and the default retention mode and days."""
        with self._s3("read the protection of"):
            versioning = self._client.get_bucket_versioning(self.bucket).status
            try:
                lock = self._client.get_object_lock_config(self.bucket)
                mode, days = lock.mode, lock.duration
                if days is not None and str(lock.duration_unit).upper() == "YEARS":
                    days *= 365
            except S3Error:  # no object lock configuration on this bucket
                mode, days = None, None
        return {"versioning": versioning, "retention_mode": mode, "retention_days": days}

    def head(self, key: str) -> StoredObject | None:
        """The stored object's size, type and recorded sha256, or None if there is no such object."""
        return self._head(key, "stat")

    def _head(self, key: str, action: str) -> StoredObject | None:
        try:
            with self._s3(action, key):
                stat = self._client.stat_object(self.bucket, key)
        except EvidenceNotFound:
            return None
        metadata = _decode_metadata(stat.metadata)
        return StoredObject(
            key=key,
            sha256=metadata.get(SHA256_METADATA, ""),
            size=int(stat.size or 0),
            content_type=str(stat.content_type or ""),
        )

    def metadata(self, key: str) -> dict[str, str]:
        """The object's user metadata, decoded (keys without the x-amz-meta- prefix)."""
        with self._s3("stat", key):
            stat = self._client.stat_object(self.bucket, key)
        return _decode_metadata(stat.metadata)

    def put(self, key: str, data: bytes, *, content_type: str, metadata: dict[str, str]) -> StoredObject:
        """Store `data` under `key` with its sha256 in the metadata; a no-op if the same bytes are there.

        Raises EvidenceStoreDown when the store cannot be reached or refuses the write, EvidenceConflict when
        other bytes are already stored under `key`.
        """
        digest = sha256_hex(data)
        stored = StoredObject(key=key, sha256=digest, size=len(data), content_type=content_type)
        # One HEAD per write buys idempotence: a drained spool or a retried filing never rewrites evidence.
        existing = self._head(key, "write")
        if existing is not None:
            if existing.sha256 == digest and existing.size == len(data):
                return stored
            raise EvidenceConflict(
                f"s3://{self.bucket}/{key} already holds sha256 {existing.sha256 or '?'} "
                f"({existing.size} bytes); refusing to overwrite with {digest} ({len(data)} bytes)"
            )
        headers = _encode_metadata({**metadata, SHA256_METADATA: digest})
        with self._s3("write", key):
            self._client.put_object(
                self.bucket, key, io.BytesIO(data), len(data), content_type=content_type, metadata=headers
            )
        return stored


def _encode_metadata(metadata: dict[str, str]) -> dict[str, str | list[str] | tuple[str]]:
    return {name: quote(value, safe=_METADATA_SAFE) for name, value in metadata.items()}


def _decode_metadata(headers: Mapping[str, str] | None) -> dict[str, str]:
    """User metadata from a stat's response headers."""
    decoded: dict[str, str] = {}
    for name, value in (headers or {}).items():
        lowered = str(name).lower()
        if lowered.startswith(_META_PREFIX):
            decoded[lowered.removeprefix(_META_PREFIX)] = unquote(str(value))
    return decoded
