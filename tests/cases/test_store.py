"""The case store on a real SQLite file and a real PostgreSQL server: create, list, filter, match by overlap, UTC
times, concurrency (threads and processes)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import sqlite3
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from citywatch.cases.db import CaseRow
from citywatch.cases.store import (
    AUTO_FILED,
    CaseFilter,
    CaseStore,
    CaseStoreError,
    EvidenceDraft,
    Observation,
    ObservationOutcome,
    box_iou,
)

T0 = datetime(2026, 5, 4, 2, 0, tzinfo=UTC)
BOX = (100.0, 200.0, 180.0, 260.0)
HOUR = timedelta(hours=1)


def observation(**changes: object) -> Observation:
    base = Observation(
        kind="motor_vehicle_illegal_parking",
        code="09009",
        camera_id="gate-3",
        preset_id="main",
        zone="fire-lane",
        rule="illegal_parking",
        class_name="car",
        confidence=0.8,
        box=BOX,
        first_seen=T0,
        last_seen=T0 + timedelta(minutes=6),
        model_version="coco-yolo11n@abc",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def drafts(tag: str = "a") -> list[EvidenceDraft]:
    return [
        EvidenceDraft(role="annotated", sha256=f"{tag}1" * 32, size=10, content_type="image/jpeg"),
        EvidenceDraft(role="sidecar", sha256=f"{tag}2" * 32, size=5, content_type="application/json"),
    ]


def key_for(case_id: int, draft: EvidenceDraft) -> str:
    return f"cases/{case_id}/{draft.role}-{draft.sha256[:12]}"


def record(store: CaseStore, obs: Observation, tag: str = "a") -> ObservationOutcome:
    return store.record_observation(obs, drafts(tag), key_for=key_for)


@pytest.fixture
def store(database_url: str) -> CaseStore:
    return CaseStore.from_url(database_url)


def test_from_url_creates_folder_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "var" / "db" / "cases.db"
    store = CaseStore.from_url(f"sqlite:///{path}")
    assert store.count_cases() == 0
    assert path.exists()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_create_get_list_count(store: CaseStore) -> None:
    first = record(store, observation())
    second = record(store, observation(camera_id="gate-4"))
    assert first.created and second.created
    assert [e.role for e in first.evidence] == ["annotated", "sidecar"]
    assert store.count_cases() == 2

    case = store.get_case(first.case_id)
    assert case is not None
    assert (case.kind, case.code, case.state, case.camera_id, case.preset_id) == (
        "motor_vehicle_illegal_parking",
        "09009",
        AUTO_FILED,
        "gate-3",
        "main",
    )
    assert (case.zone, case.rule, case.class_name, case.model_version) == (
        "fire-lane",
        "illegal_parking",
        "car",
        "coco-yolo11n@abc",
    )
    assert case.box == BOX
    assert case.confidence == pytest.approx(0.8)
    assert case.observations == 1
    assert [(e.role, e.key, e.uploaded) for e in case.evidence] == [
        ("annotated", f"cases/{first.case_id}/annotated-a1a1a1a1a1a1", False),
        ("sidecar", f"cases/{first.case_id}/sidecar-a2a2a2a2a2a2", False),
    ]
    assert store.get_case(9999) is None
    # Newest first.
    assert [c.id for c in store.list_cases()] == [second.case_id, first.case_id]
    assert [c.id for c in store.list_cases(limit=1, offset=1)] == [first.case_id]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"camera_id": "gate-3"}, {"gate-3/parking", "gate-3/garbage"}),
        ({"kind": "exposed_garbage"}, {"gate-3/garbage", "gate-4/garbage"}),
        ({"camera_id": "gate-4", "kind": "exposed_garbage"}, {"gate-4/garbage"}),
        ({"state": "closed"}, {"gate-4/garbage"}),
        ({"state": AUTO_FILED}, {"gate-3/parking", "gate-3/garbage"}),
        ({"camera_id": "nowhere"}, set()),
    ],
)
def test_list_filters(store: CaseStore, filters: dict[str, Any], expected: set[str]) -> None:
    record(store, observation())
    record(store, observation(kind="exposed_garbage", code="06010", class_name="garbage"))
    closed = record(store, observation(camera_id="gate-4", kind="exposed_garbage", code="06010"))
    _set_state(store, closed.case_id, "closed")

    names = {
        f"{c.camera_id}/{'parking' if c.kind.startswith('motor') else 'garbage'}"
        for c in store.list_cases(CaseFilter(**filters))
    }
    assert names == expected
    assert store.count_cases(CaseFilter(**filters)) == len(expected)


def _set_state(store: CaseStore, case_id: int, state: str) -> None:
    # The lifecycle API comes later; a direct update stands in for it.
    with store.engine.begin() as connection:
        connection.execute(sa.text("UPDATE cases SET state = :state WHERE id = :id"), {"state": state, "id": case_id})


@pytest.mark.parametrize(
    ("query", "matches"),
    [
        ({}, True),
        ({"box": (110.0, 205.0, 190.0, 262.0)}, True),  # moved a little
        ({"box": (600.0, 200.0, 680.0, 260.0)}, False),  # far away
        ({"box": (170.0, 200.0, 250.0, 260.0)}, False),  # touches, IoU ~0.06
        ({"zone": "crosswalk"}, False),
        ({"kind": "exposed_garbage"}, False),
        ({"camera_id": "gate-4"}, False),
        ({"preset_id": "other"}, False),
        ({"preset_id": None}, False),
    ],
)
def test_find_open_match(store: CaseStore, query: dict[str, object], matches: bool) -> None:
    case_id = record(store, observation()).case_id
    arguments: dict[str, object] = {
        "camera_id": "gate-3",
        "preset_id": "main",
        "zone": "fire-lane",
        "kind": "motor_vehicle_illegal_parking",
        "box": BOX,
    }
    arguments.update(query)
    found = store.find_open_match(**arguments)  # type: ignore[arg-type]
    assert found == (case_id if matches else None)


def test_find_open_match_without_preset_and_skips_closed(store: CaseStore) -> None:
    fixed = record(store, observation(preset_id=None)).case_id
    assert (
        store.find_open_match(
            camera_id="gate-3",
            preset_id=None,
            zone="fire-lane",
            kind="motor_vehicle_illegal_parking",
            box=BOX,
        )
        == fixed
    )
    _set_state(store, fixed, "rejected")
    assert (
        store.find_open_match(
            camera_id="gate-3", preset_id=None, zone="fire-lane", kind="motor_vehicle_illegal_parking", box=BOX
        )
        is None
    )


def test_find_open_match_prefers_the_best_overlap(store: CaseStore) -> None:
    left = record(store, observation(box=(100.0, 200.0, 200.0, 260.0))).case_id
    right = record(store, observation(box=(160.0, 200.0, 260.0, 260.0))).case_id
    assert left != right  # IoU 0.25 < 0.3: two objects side by side are two cases
    found = store.find_open_match(
        camera_id="gate-3",
        preset_id="main",
        zone="fire-lane",
        kind="motor_vehicle_illegal_parking",
        box=(150.0, 200.0, 250.0, 260.0),
    )
    assert found == right


def test_attach_updates_case_and_paces_evidence(store: CaseStore) -> None:
    first = record(store, observation())
    later = T0 + timedelta(minutes=9)
    attached = record(store, observation(box=(104.0, 200.0, 184.0, 262.0), confidence=0.9, last_seen=later), "b")
    assert (attached.case_id, attached.created, attached.evidence) == (first.case_id, False, ())

    lower = record(store, observation(confidence=0.5, last_seen=later + timedelta(minutes=1)), "c")
    assert lower.evidence == ()  # 4 min of frame time since the first set: keep it
    case = store.get_case(first.case_id)
    assert case is not None
    assert case.observations == 3
    assert case.confidence == pytest.approx(0.9)  # the highest seen
    assert case.last_seen == later + timedelta(minutes=1)
    assert case.box == BOX  # the last box
    assert len(case.evidence) == 2

    refreshed = record(store, observation(last_seen=T0 + timedelta(minutes=16)), "d")
    assert [e.role for e in refreshed.evidence] == ["annotated", "sidecar"]
    case = store.get_case(first.case_id)
    assert case is not None
    assert len(case.evidence) == 4
    assert {e.captured_at for e in case.evidence} == {T0 + timedelta(minutes=6), T0 + timedelta(minutes=16)}


def test_out_of_order_observation_keeps_latest_box(store: CaseStore) -> None:
    case_id = record(store, observation(last_seen=T0 + timedelta(minutes=6))).case_id
    record(store, observation(box=(102.0, 200.0, 182.0, 260.0), last_seen=T0 + timedelta(minutes=5)))
    case = store.get_case(case_id)
    assert case is not None
    assert case.box == BOX
    assert case.last_seen == T0 + timedelta(minutes=6)
    assert case.observations == 2


def test_mark_uploaded(store: CaseStore) -> None:
    outcome = record(store, observation())
    keys = [e.key for e in outcome.evidence]
    assert [e.key for e in store.pending_evidence()] == keys
    store.mark_uploaded(keys[0])
    store.mark_uploaded("cases/unknown")  # no row: nothing to do
    assert [e.key for e in store.pending_evidence()] == keys[1:]
    assert store.mark_uploaded_many(keys) == 1
    case = store.get_case(outcome.case_id)
    assert case is not None
    assert all(e.uploaded for e in case.evidence)


def test_timestamps_round_trip_as_utc(store: CaseStore) -> None:
    shanghai = timezone(timedelta(hours=8))
    first_seen = datetime(2026, 5, 4, 10, 0, 0, 123456, tzinfo=shanghai)
    outcome = record(store, observation(first_seen=first_seen, last_seen=first_seen + timedelta(minutes=5)))
    case = store.get_case(outcome.case_id)
    assert case is not None
    assert case.first_seen == first_seen
    assert case.first_seen.utcoffset() == timedelta(0)
    assert case.first_seen.hour == 2
    assert case.last_seen.tzinfo is not None and case.created_at.tzinfo is not None
    assert case.evidence[0].captured_at == first_seen + timedelta(minutes=5)
    assert case.evidence[0].created_at.utcoffset() == timedelta(0)


def test_naive_timestamps_are_refused(store: CaseStore) -> None:
    with pytest.raises(CaseStoreError, match="timezone-aware"):
        record(store, observation(first_seen=datetime(2026, 5, 4, 2, 0), last_seen=datetime(2026, 5, 4, 2, 6)))
    assert store.count_cases() == 0


def test_box_iou() -> None:
    assert box_iou(BOX, BOX) == pytest.approx(1.0)
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0


def test_threads_file_one_case(store: CaseStore) -> None:
    def work() -> None:
        for _ in range(10):
            record(store, observation())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [case] = store.list_cases()
    assert case.observations == 40


def _file_in_child(url: str, count: int, start: multiprocessing.synchronize.Event) -> None:
    store = CaseStore.from_url(url)
    start.wait()
    for _ in range(count):
        record(store, observation())


def test_processes_file_one_case(database_url: str) -> None:
    """Replicas are processes: BEGIN IMMEDIATE (SQLite) or an advisory lock (PostgreSQL) makes find-then-create
    atomic across them."""
    url = database_url
    # Create the tables first, and close the parent's connections: database handles must not cross a fork.
    CaseStore.from_url(url).engine.dispose()
    context = multiprocessing.get_context("fork")
    start = context.Event()
    children = [context.Process(target=_file_in_child, args=(url, 8, start)) for _ in range(3)]
    for child in children:
        child.start()
    start.set()
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    [case] = CaseStore.from_url(url).list_cases()
    assert case.observations == 24
    assert len(case.evidence) == 2


def test_case_filter_refuses_naive_times_and_an_empty_range() -> None:
    with pytest.raises(CaseStoreError, match="timezone-aware"):
        CaseFilter(since=datetime(2026, 5, 4))
    with pytest.raises(CaseStoreError, match="must be before until"):
        CaseFilter(since=T0, until=T0)


def test_one_case_filter_lists_and_counts_by_time_text_and_department(store: CaseStore) -> None:
    early = record(store, observation(zone="kerb_east"))
    late = record(store, observation(zone="crossing", camera_id="gate-9"))
    with store.writing() as session:
        for row, at in ((session.get(CaseRow, early.case_id), T0), (session.get(CaseRow, late.case_id), T0 + HOUR)):
            assert row is not None
            row.created_at = at
            row.department = "grid-7" if at > T0 else None
    for where, expected in [
        (CaseFilter(until=T0 + timedelta(seconds=1)), [early.case_id]),
        (CaseFilter(since=T0 + timedelta(seconds=1)), [late.case_id]),
        (CaseFilter(text="CROSS"), [late.case_id]),
        (CaseFilter(text="gate-9", department="grid-7"), [late.case_id]),
        (CaseFilter(department="grid-8"), []),
    ]:
        assert [c.id for c in store.list_cases(where)] == expected, where
        assert store.count_cases(where) == len(expected), where
