"""The bucket of each preset's latest frame (`storage.live`): overwritten in place, never the evidence bucket.
It also keeps each camera's patrol counters (`pipelines/patrol_counters.py`), live state of the same kind.

The evidence bucket keeps every version under retention; a picture replaced each minute must not pile up
there. What is stored when lives in `pipelines/snapshots.py`; this is only the bucket.
"""

from __future__ import annotations

import io

from minio import Minio
from minio.error import S3Error

from citywatch.cases.evidence import EvidenceNotFound, EvidenceStoreDown, S3Bucket, ensure_bucket


class SnapshotStore(S3Bucket):
    """The bucket of latest frames: put (overwriting), get, and presigned URLs for the cameras page."""

    what = "live-frame store"

    def __init__(self, client: Minio, bucket: str, *, endpoint: str = "(S3 endpoint)") -> None:
        super().__init__(client, bucket, endpoint=endpoint)
        self._bucket_ready = False

    def put(self, key: str, data: bytes, *, content_type: str = "image/jpeg") -> None:
        """Store (or replace) one object (a JPEG picture, or a camera's patrol counters as JSON), making the
        bucket on first use; EvidenceStoreDown when the store cannot take it."""
        with self._s3("store", key):
            if not self._bucket_ready:
                ensure_bucket(self._client, self.bucket)
                self._bucket_ready = True
            self._client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)

    def get(self, key: str) -> bytes:
        """The object under `key`; EvidenceNotFound also while the bucket is not made yet (made on first put)."""
        try:
            return super().get(key)
        except EvidenceStoreDown as error:
            if isinstance(error.__cause__, S3Error) and error.__cause__.code == "NoSuchBucket":
                raise EvidenceNotFound(f"no object s3://{self.bucket}/{key} (no bucket yet)") from error
            raise
