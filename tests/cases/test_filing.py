"""Filing violations into cases: dedupe against open cases, evidence sets in a real S3 server (SeaweedFS)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from citywatch.cases.evidence import EvidenceStore
from citywatch.cases.filing import CaseFiler, FilingError, evidence_key
from citywatch.cases.spool import EvidenceSpool
from citywatch.cases.store import CaseStore
from citywatch.stack.s3 import S3Endpoint
from citywatch.vision.evidence import render_evidence
from citywatch.vision.frame import Frame
from citywatch.vision.violation import Violation

T0 = datetime(2026, 5, 4, 2, 0, tzinfo=UTC)
KEY = re.compile(r"^cases/2026/05/04/(\d+)/(annotated|crop|frame|sidecar)-[0-9a-f]{12}\.(jpg|json)$")


def violation(
    *, dx: float = 0.0, x: float = 20.0, seen: timedelta = timedelta(minutes=6), sequence: int = 0
) -> Violation:
    """A parked car in a 64×48 frame; each sequence number gives a slightly different picture."""
    rng = np.random.default_rng(sequence)
    image = rng.integers(60, 120, size=(48, 64, 3), dtype=np.uint8)
    polygon = np.array([[0, 24], [63, 24], [63, 47], [0, 47]], dtype=np.int32)
    return Violation(
        kind="motor_vehicle_illegal_parking",
        code="09009",
        rule="illegal_parking",
        zone="fire-lane",
        class_name="car",
        confidence=0.6 + 0.05 * sequence,
        box=(x + dx, 26.0, x + dx + 16.0, 40.0),
        first_seen=T0,
        last_seen=T0 + seen,
        frame=Frame(image, "gate-3", "main", T0 + seen, sequence),
        zone_polygon=polygon,
        track_id=7,
        model_version="coco-yolo11n@abc",
    )


def images(v: Violation) -> dict[str, tuple[bytes, str]]:
    return {role: (item.data, item.content_type) for role, item in render_evidence(v).items()}


@pytest.fixture
def evidence(s3_server: S3Endpoint) -> EvidenceStore:
    # A bucket per test, so counting objects sees only this test's.
    store = EvidenceStore.from_endpoint(
        s3_server.endpoint, s3_server.access_key, s3_server.secret_key, f"cw-filing-{uuid.uuid4().hex[:12]}"
    )
    store.ensure_bucket()
    return store


@pytest.fixture
def cases(database_url: str) -> CaseStore:
    return CaseStore.from_url(database_url)


@pytest.fixture
def filer(cases: CaseStore, evidence: EvidenceStore, tmp_path: Path) -> Iterator[CaseFiler]:
    yield CaseFiler(cases, evidence, EvidenceSpool(tmp_path / "spool"))


def object_keys(store: EvidenceStore, s3: S3Endpoint) -> list[str]:
    return sorted(str(o.object_name) for o in s3.client().list_objects(store.bucket, prefix="cases/", recursive=True))


def test_same_violation_five_times_is_one_case(
    filer: CaseFiler, cases: CaseStore, evidence: EvidenceStore, s3_server: S3Endpoint
) -> None:
    results = [
        filer.file(v, images(v))
        for v in (violation(dx=1.5 * i, seen=timedelta(minutes=6, seconds=30 * i), sequence=i) for i in range(5))
    ]
    assert [r.created for r in results] == [True, False, False, False, False]
    assert {r.case_id for r in results} == {results[0].case_id}
    assert all(r.evidence_pending == 0 for r in results)

    [case] = cases.list_cases()
    assert case.observations == 5
    assert case.confidence == pytest.approx(0.8)
    assert case.box == pytest.approx((26.0, 26.0, 42.0, 40.0))
    assert case.last_seen == T0 + timedelta(minutes=8)
    # One evidence set, from the first sighting, all of it in S3.
    assert sorted(e.role for e in case.evidence) == ["annotated", "crop", "frame", "sidecar"]
    assert all(e.uploaded for e in case.evidence)
    for record in case.evidence:
        match = KEY.match(record.key)
        assert match is not None, record.key
        assert match.group(1) == str(case.id)
        assert record.key.split("-")[-1].split(".")[0] == record.sha256[:12]
    assert object_keys(evidence, s3_server) == sorted(e.key for e in case.evidence)


def test_far_object_is_a_second_case(filer: CaseFiler, cases: CaseStore) -> None:
    near = violation()
    far = violation(x=44.0, sequence=1)
    first = filer.file(near, images(near))
    second = filer.file(far, images(far))
    assert first.created and second.created
    assert first.case_id != second.case_id
    assert cases.count_cases() == 2


def test_attached_case_gets_a_new_evidence_set_after_the_interval(
    filer: CaseFiler, cases: CaseStore, evidence: EvidenceStore, s3_server: S3Endpoint
) -> None:
    for minutes, sequence in ((6, 0), (12, 1), (16, 2), (20, 3)):
        v = violation(seen=timedelta(minutes=minutes), sequence=sequence)
        filer.file(v, images(v))
    [case] = cases.list_cases()
    assert case.observations == 4
    # Sets at minute 6 and 16 (10 min of frame time apart); 12 and 20 were too soon after one.
    assert sorted({e.captured_at for e in case.evidence}) == [
        T0 + timedelta(minutes=6),
        T0 + timedelta(minutes=16),
    ]
    assert len(case.evidence) == 8
    assert object_keys(evidence, s3_server) == sorted(e.key for e in case.evidence)


def test_objects_carry_case_metadata(filer: CaseFiler, cases: CaseStore, evidence: EvidenceStore) -> None:
    v = violation()
    result = filer.file(v, images(v))
    case = cases.get_case(result.case_id)
    assert case is not None
    for record in case.evidence:
        metadata = evidence.metadata(record.key)
        assert metadata["case-id"] == str(case.id)
        assert metadata["sha256"] == record.sha256
        assert (metadata["camera"], metadata["kind"], metadata["role"]) == (
            "gate-3",
            "motor_vehicle_illegal_parking",
            record.role,
        )


def test_bad_role_is_refused_before_anything_is_filed(filer: CaseFiler, cases: CaseStore) -> None:
    v = violation()
    with pytest.raises(FilingError, match="role"):
        filer.file(v, {"../escape": (b"x", "image/jpeg")})
    assert cases.count_cases() == 0


def test_case_without_images_is_filed(filer: CaseFiler, cases: CaseStore) -> None:
    result = filer.file(violation(), {})
    case = cases.get_case(result.case_id)
    assert case is not None
    assert case.evidence == ()


def test_evidence_key_layout_uses_the_utc_day() -> None:
    evening_in_shanghai = datetime(2026, 5, 5, 1, 30, tzinfo=timezone(timedelta(hours=8)))
    sha = "ab" * 32
    assert (
        evidence_key(17, evening_in_shanghai, "crop", sha, "image/jpeg") == "cases/2026/05/04/17/crop-abababababab.jpg"
    )
    assert evidence_key(17, T0, "sidecar", sha, "application/json").endswith("/sidecar-abababababab.json")
    assert evidence_key(17, T0, "blob", sha, "application/x-unknown").endswith(".bin")
