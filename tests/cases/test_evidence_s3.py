"""Evidence in a real S3 server (SeaweedFS): integrity, presigned URLs, and nothing lost while S3 is down."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest

from citywatch.cases.evidence import (
    EvidenceConflict,
    EvidenceNotFound,
    EvidenceStore,
    EvidenceStoreDown,
)
from citywatch.cases.filing import CaseFiler
from citywatch.cases.spool import EvidenceSpool
from citywatch.cases.store import CaseStore
from citywatch.stack.s3 import S3Endpoint
from citywatch.vision.frame import Frame
from citywatch.vision.violation import Violation
from tests.clock import FakeClock

T0 = datetime(2026, 5, 4, 2, 0, tzinfo=UTC)
SEEN = T0 + timedelta(minutes=6)
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40 + b"\xff\xd9"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def live(s3_server: S3Endpoint) -> EvidenceStore:
    store = EvidenceStore.from_endpoint(
        s3_server.endpoint, s3_server.access_key, s3_server.secret_key, f"cw-evidence-{uuid.uuid4().hex[:12]}"
    )
    store.ensure_bucket()
    return store


@pytest.fixture
def dead() -> EvidenceStore:
    """A store pointed at a port nobody listens on."""
    return EvidenceStore.from_endpoint(f"127.0.0.1:{free_port()}", "key", "secret", "cw-evidence-dead")


def count_puts(store: EvidenceStore) -> list[str]:
    """The keys `store.put` is called with from now on (the real put still runs)."""
    attempts: list[str] = []
    real_put = store.put

    def counting_put(key: str, data: bytes, *, content_type: str, metadata: dict[str, str]) -> object:
        attempts.append(key)
        return real_put(key, data, content_type=content_type, metadata=metadata)

    store.put = counting_put  # type: ignore[method-assign,assignment]
    return attempts


def object_keys(store: EvidenceStore, s3: S3Endpoint) -> list[str]:
    return sorted(str(o.object_name) for o in s3.client().list_objects(store.bucket, recursive=True))


# -- the store ----------------------------------------------------------------------------------------------


def test_put_get_and_sha256_round_trip(live: EvidenceStore, s3_server: S3Endpoint) -> None:
    stored = live.put("cases/x/annotated.jpg", JPEG, content_type="image/jpeg", metadata={"camera": "白云-0412"})
    assert stored.sha256 == hashlib.sha256(JPEG).hexdigest()
    assert stored.size == len(JPEG)

    downloaded = live.get("cases/x/annotated.jpg")
    assert hashlib.sha256(downloaded).hexdigest() == stored.sha256
    # The raw client sees the hash and the (percent-encoded) camera in the object's own metadata.
    stat = s3_server.client().stat_object(live.bucket, "cases/x/annotated.jpg")
    assert stat.metadata["x-amz-meta-sha256"] == stored.sha256
    assert stat.content_type == "image/jpeg"
    assert live.metadata("cases/x/annotated.jpg")["camera"] == "白云-0412"
    assert live.head("cases/x/annotated.jpg") == stored


def test_put_is_idempotent_and_never_overwrites(live: EvidenceStore, s3_server: S3Endpoint) -> None:
    first = live.put("k/a.jpg", JPEG, content_type="image/jpeg", metadata={})
    assert live.put("k/a.jpg", JPEG, content_type="image/jpeg", metadata={}) == first
    with pytest.raises(EvidenceConflict, match=first.sha256):
        live.put("k/a.jpg", JPEG + b"tampered", content_type="image/jpeg", metadata={})
    assert object_keys(live, s3_server) == ["k/a.jpg"]
    assert live.get("k/a.jpg") == JPEG


def test_missing_object(live: EvidenceStore) -> None:
    assert live.head("nothing/here.jpg") is None
    with pytest.raises(EvidenceNotFound):
        live.get("nothing/here.jpg")


def test_presigned_url_is_fetchable(live: EvidenceStore) -> None:
    live.put("cases/p/frame.jpg", JPEG, content_type="image/jpeg", metadata={})
    url = live.presigned_get("cases/p/frame.jpg", expires=timedelta(minutes=5))
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    assert response.content == JPEG
    assert response.headers["content-type"] == "image/jpeg"
    tampered = httpx.get(url.replace("frame.jpg", "other.jpg"), timeout=10)
    assert tampered.status_code in {403, 404}


@pytest.mark.parametrize("action", ["put", "get", "ensure_bucket"])
def test_dead_store_fails_fast_naming_endpoint_and_bucket(dead: EvidenceStore, action: str) -> None:
    started = time.monotonic()
    with pytest.raises(EvidenceStoreDown) as raised:
        if action == "put":
            dead.put("a/b.jpg", JPEG, content_type="image/jpeg", metadata={})
        elif action == "get":
            dead.get("a/b.jpg")
        else:
            dead.ensure_bucket()
    assert time.monotonic() - started < 5
    assert "127.0.0.1:" in str(raised.value)
    assert "cw-evidence-dead" in str(raised.value)


def test_a_dead_store_puts_no_retry_warnings_in_the_log(dead: EvidenceStore, caplog: pytest.LogCaptureFixture) -> None:
    """Every drain and live-frame upload of an outage fails here; urllib3 must not log a warning for each."""
    caplog.set_level(logging.DEBUG, logger="urllib3")
    for _ in range(3):
        with pytest.raises(EvidenceStoreDown):
            dead.put("a/b.jpg", JPEG, content_type="image/jpeg", metadata={})
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


# -- the spool ----------------------------------------------------------------------------------------------


def test_spool_keeps_one_item_per_key_and_survives_reopening(tmp_path: Path) -> None:
    spool = EvidenceSpool(tmp_path / "spool")
    spool.add("cases/1/a.jpg", JPEG, "image/jpeg", {"case-id": "1"})
    spool.add("cases/1/a.jpg", JPEG, "image/jpeg", {"case-id": "1"})
    spool.add("cases/1/b.json", b"{}", "application/json", {"case-id": "1"})
    assert spool.pending() == 2
    assert EvidenceSpool(tmp_path / "spool").pending() == 2


def test_spool_drain_stops_at_a_dead_store(tmp_path: Path, dead: EvidenceStore) -> None:
    spool = EvidenceSpool(tmp_path / "spool")
    for index in range(3):
        spool.add(f"cases/1/{index}.jpg", JPEG, "image/jpeg", {})
    attempts = count_puts(dead)
    assert spool.drain(dead) == 0
    assert len(attempts) == 1  # one failed attempt, not one per item
    assert spool.pending() == 3


def test_spool_quarantines_corrupt_items(tmp_path: Path, live: EvidenceStore, s3_server: S3Endpoint) -> None:
    spool = EvidenceSpool(tmp_path / "spool")
    spool.add("cases/1/good.jpg", JPEG, "image/jpeg", {})
    spool.add("cases/1/bad.jpg", JPEG, "image/jpeg", {})
    [bad] = [p for p in spool.directory.glob("*.item") if b"bad.jpg" in p.read_bytes()]
    bad.write_bytes(bad.read_bytes()[:-10])  # a torn or bit-rotted file
    assert spool.drain(live) == 1
    assert spool.pending() == 0
    assert [p.name for p in spool.quarantine.iterdir()] == [bad.name]
    assert object_keys(live, s3_server) == ["cases/1/good.jpg"]


def test_spool_removes_only_stale_temp_files(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir()
    stale, fresh = directory / ".tmp-stale", directory / ".tmp-fresh"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    spool = EvidenceSpool(directory)
    assert not stale.exists() and fresh.exists()  # fresh may be another process mid-write
    assert spool.pending() == 0


# -- filing while S3 is down, then draining -----------------------------------------------------------------


def parked_car(x: float, sequence: int) -> Violation:
    image = np.full((48, 64, 3), 90 + sequence, dtype=np.uint8)
    return Violation(
        kind="motor_vehicle_illegal_parking",
        code="09009",
        rule="illegal_parking",
        zone="fire-lane",
        class_name="car",
        confidence=0.7,
        box=(x, 26.0, x + 16.0, 40.0),
        first_seen=T0,
        last_seen=SEEN,
        frame=Frame(image, "gate-3", "main", SEEN, sequence),
        zone_polygon=np.array([[0, 24], [63, 24], [63, 47], [0, 47]], dtype=np.int32),
    )


def evidence_for(v: Violation) -> dict[str, tuple[bytes, str]]:
    return {
        "frame": (v.frame.image.tobytes(), "image/jpeg"),
        "sidecar": (f'{{"sequence": {v.frame.sequence}}}'.encode(), "application/json"),
    }


def test_cases_are_filed_while_s3_is_down_and_evidence_drains_later(
    tmp_path: Path, dead: EvidenceStore, live: EvidenceStore, s3_server: S3Endpoint
) -> None:
    cases = CaseStore.from_url(f"sqlite:///{tmp_path / 'cases.db'}")
    spool = EvidenceSpool(tmp_path / "spool")
    down = CaseFiler(cases, dead, spool)

    attempts = count_puts(dead)
    first = down.file(parked_car(4.0, 0), evidence_for(parked_car(4.0, 0)))
    assert len(attempts) == 1  # the store was tried once; the other role went straight to the spool
    second = down.file(parked_car(44.0, 1), evidence_for(parked_car(44.0, 1)))
    assert (first.created, first.evidence_pending) == (True, 2)
    assert (second.created, second.evidence_pending) == (True, 2)
    assert cases.count_cases() == 2
    assert spool.pending() == 4
    assert len(cases.pending_evidence()) == 4
    assert down.drain_spool() == 0  # still down: the items stay

    # The store is back (here: a filer pointed at the live server, sharing the database and the spool).
    back = CaseFiler(cases, live, spool)
    assert back.drain_spool() == 4
    assert spool.pending() == 0
    assert cases.pending_evidence() == []
    all_evidence = [e for case in cases.list_cases() for e in case.evidence]
    assert all(e.uploaded for e in all_evidence)
    assert object_keys(live, s3_server) == sorted(e.key for e in all_evidence)
    for record in all_evidence:
        assert hashlib.sha256(live.get(record.key)).hexdigest() == record.sha256
        assert live.metadata(record.key)["case-id"] in {str(first.case_id), str(second.case_id)}

    # A second drain (say, another replica with a stale copy of the spool) adds no duplicate objects.
    spool.add(all_evidence[0].key, live.get(all_evidence[0].key), all_evidence[0].content_type, {})
    assert back.drain_spool() == 1
    assert object_keys(live, s3_server) == sorted(e.key for e in all_evidence)


def test_filer_spools_directly_for_a_while_after_a_failure(tmp_path: Path, dead: EvidenceStore) -> None:
    """After one failed upload the filer does not wait on the dead store for every later filing."""
    cases = CaseStore.from_url(f"sqlite:///{tmp_path / 'cases.db'}")
    clock = FakeClock(100.0)
    filer = CaseFiler(cases, dead, EvidenceSpool(tmp_path / "spool"), monotonic=clock)
    attempts = count_puts(dead)
    filer.file(parked_car(4.0, 0), evidence_for(parked_car(4.0, 0)))
    assert len(attempts) == 1  # the second role went straight to the spool
    filer.file(parked_car(44.0, 1), evidence_for(parked_car(44.0, 1)))
    assert len(attempts) == 1
    clock.now += 31
    filer.file(parked_car(24.0, 2), evidence_for(parked_car(24.0, 2)))
    assert len(attempts) == 2
