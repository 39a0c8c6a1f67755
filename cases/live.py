"""The bucket of each preset's latest frame (`storage.live`): overwritten in place, never the evidence bucket.

The evidence bucket keeps every version under retention; a picture replaced each minute must not pile up
there. What is stored when lives in `pipelines/snapshots.py`; this is only the bucket.
"""

from __future__ import annotations

import io

from minio import Minio

from citywatch.cases.evidence import S3Bucket, ensure_bucket


class SnapshotStore(S3Bucket):
    """The bucket of latest frames: put (overwriting), get, and presigned URLs for the cameras page."""

    what = "live-frame store"

    def __init__(self, client: Minio, bucket: str, *, endpoint: str = "(S3 endpoint)") -> None:
        super().__init__(client, bucket, endpoint=endpoint)
        self._bucket_ready = False

    def put(self, key: str, jpeg: bytes) -> None:
        """Store (or replace) one JPEG picture, making the bucket on first use; EvidenceStoreDown when the
        store cannot take it."""
        with self._s3("store", key):
            if not self._bucket_ready:
                ensure_bucket(self._client, self.bucket)
                self._bucket_ready = True
            self._client.put_object(self.bucket, key, io.BytesIO(jpeg), len(jpeg), content_type="image/jpeg")
