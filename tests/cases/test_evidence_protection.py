"""What the test S3 server (SeaweedFS `weed mini`) enforces: versioning, object lock and COMPLIANCE retention.

Production runs MinIO, which supports all three; these tests pin down that SeaweedFS does too, so the demo
and the tests exercise the same calls.
"""

from __future__ import annotations

import uuid

import pytest
from minio.error import S3Error

from citywatch.cases.evidence import EvidenceStore
from citywatch.stack.s3 import S3Endpoint

JPEG = b"\xff\xd8\xff\xe0evidence\xff\xd9"


def store(s3: S3Endpoint, name: str) -> EvidenceStore:
    return EvidenceStore.from_endpoint(s3.endpoint, s3.access_key, s3.secret_key, f"{name}-{uuid.uuid4().hex[:8]}")


def test_locked_bucket_refuses_deleting_evidence_under_retention(s3_server: S3Endpoint) -> None:
    evidence = store(s3_server, "cw-locked")
    evidence.ensure_bucket(object_lock=True)
    evidence.protect(retention_days=1)
    assert evidence.protection() == {"versioning": "Enabled", "retention_mode": "COMPLIANCE", "retention_days": 1}
    evidence.put("cases/1/frame.jpg", JPEG, content_type="image/jpeg", metadata={"case-id": "1"})
    client = s3_server.client()
    [version] = [
        o.version_id
        for o in client.list_objects(evidence.bucket, prefix="cases/", recursive=True, include_version=True)
    ]
    assert client.get_object_retention(evidence.bucket, "cases/1/frame.jpg").mode == "COMPLIANCE"
    with pytest.raises(S3Error) as refused:
        client.remove_object(evidence.bucket, "cases/1/frame.jpg", version_id=version)
    assert refused.value.code == "AccessDenied"
    assert evidence.get("cases/1/frame.jpg") == JPEG


def test_versioning_keeps_every_version_and_idempotent_put_adds_none(s3_server: S3Endpoint) -> None:
    evidence = store(s3_server, "cw-versioned")
    evidence.ensure_bucket()
    evidence.protect(retention_days=None)
    assert evidence.protection()["versioning"] == "Enabled"
    evidence.put("cases/2/frame.jpg", JPEG, content_type="image/jpeg", metadata={})
    evidence.put("cases/2/frame.jpg", JPEG, content_type="image/jpeg", metadata={})  # a retried upload
    client = s3_server.client()
    versions = list(client.list_objects(evidence.bucket, prefix="cases/", recursive=True, include_version=True))
    assert len(versions) == 1
    client.remove_object(evidence.bucket, "cases/2/frame.jpg")  # without a version id: a delete marker only
    versions = list(client.list_objects(evidence.bucket, prefix="cases/", recursive=True, include_version=True))
    kept = [v for v in versions if not v.is_delete_marker]
    assert len(kept) == 1
    response = client.get_object(evidence.bucket, "cases/2/frame.jpg", version_id=kept[0].version_id)
    try:
        assert response.read() == JPEG
    finally:
        response.close()
        response.release_conn()
