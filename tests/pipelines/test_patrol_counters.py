"""A camera's patrol counters outlive its replica: kept in the live bucket of a real S3 server, added to (never
overwritten by) a restarted replica's fresh counts, caught up when the store was down at the start, and carried
over in memory when a config change restarts the camera."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import supervision as sv

from citywatch.cases.evidence import EvidenceNotFound
from citywatch.cases.live import SnapshotStore
from citywatch.pipelines.config import parse_config
from citywatch.pipelines.fleet import Fleet
from citywatch.pipelines.patrol_counters import PatrolCounters, counters_key, parse_counters
from citywatch.pipelines.schedule import ManualClock
from citywatch.stack.s3 import S3Endpoint
from citywatch.vision.violation import Violation
from tests.pipelines.test_fleet import StillReader, document, fixed
from tests.waiting import wait_until_async

CONFIG = parse_config(document({"a": fixed("rtsp://x/a")}))


async def detect(image: np.ndarray) -> sv.Detections:
    return sv.Detections.empty()


async def sink(violation: Violation) -> None:
    pass


@pytest.fixture
def live(s3_server: S3Endpoint) -> SnapshotStore:
    bucket = f"cw-live-{uuid.uuid4().hex[:12]}"
    return SnapshotStore.from_endpoint(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, bucket)


def dead_store() -> SnapshotStore:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return SnapshotStore.from_endpoint(f"127.0.0.1:{port}", "k", "s", "cw-live-dead", connect_timeout=0.2)


class FrozenClock(ManualClock):
    """Time stands still and every wait lasts until cancelled: the patrols count only what a test sets."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.Event().wait()


def fleet(counters: PatrolCounters | None, start: datetime) -> Fleet:
    return Fleet(
        detect_for=lambda _: detect, sink=sink, reader_factory=StillReader, clock=FrozenClock(start), counters=counters
    )


def has_counters(store: SnapshotStore) -> bool:
    try:
        store.get(counters_key("a"))
    except EvidenceNotFound:
        return False
    return True


def stored(store: SnapshotStore) -> dict[str, object]:
    document: dict[str, object] = json.loads(store.get(counters_key("a")))
    return document


def test_a_restarted_replica_adds_the_stored_counts_to_its_own(live: SnapshotStore) -> None:
    first_start = datetime(2026, 5, 4, 1, 0, tzinfo=UTC)

    async def scenario() -> None:
        first = fleet(PatrolCounters(live, every=0.1), first_start)
        await first.apply(CONFIG)
        patrol = first.patrols["a"]
        patrol.stats.visits, patrol.stats.violations = 7, 3
        patrol.stats.missed, patrol.stats.missed_reasons["camera offline"] = 2, 2
        await wait_until_async(
            lambda: has_counters(live) and stored(live)["counts"]["visits"] == 7,
            30,
            "the first replica's counters to be stored",
        )
        for task in first._tasks.values():  # killed: no goodbye, no last save
            task.cancel()
        assert first._counters_task is not None
        first._counters_task.cancel()

        second = fleet(PatrolCounters(live, every=0.1), first_start + timedelta(hours=1))
        await second.apply(CONFIG)
        again = second.patrols["a"]
        again.stats.visits += 1  # counted by the new replica before it reached the store
        await wait_until_async(lambda: again.stats.visits == 8, 30, "the stored counts to be added")
        assert again.stats.violations == 3 and again.stats.missed_reasons == {"camera offline": 2}
        assert again.counting_since == first_start  # counting since the first replica began
        await wait_until_async(lambda: stored(live)["counts"]["visits"] == 8, 30, "the total to be stored")
        assert again.health()["counting_since"] == first_start.isoformat()
        await second.stop()

    asyncio.run(scenario())


def test_with_the_store_down_at_start_the_history_is_added_once_it_is_back(live: SnapshotStore) -> None:
    start = datetime(2026, 5, 4, 1, 0, tzinfo=UTC)
    live.put(counters_key("a"), json.dumps({"since": start.isoformat(), "counts": {"visits": 10}}).encode())

    async def scenario() -> None:
        counters = PatrolCounters(dead_store(), every=0.1)
        running = fleet(counters, start + timedelta(days=1))
        await running.apply(CONFIG)
        patrol = running.patrols["a"]
        patrol.stats.visits = 4
        await wait_until_async(lambda: counters.last_error, 30, "saving to fail while the store is down")
        assert patrol.stats.visits == 4  # nothing added, nothing lost
        counters.store = live  # the store is back
        await wait_until_async(lambda: patrol.stats.visits == 14, 30, "the history to be added")
        await wait_until_async(lambda: stored(live)["counts"]["visits"] == 14, 30, "the total to be stored")
        assert counters.last_error is None
        await asyncio.sleep(0.5)  # several more saving rounds: the history is added once only
        assert patrol.stats.visits == 14 and stored(live)["counts"]["visits"] == 14
        await running.stop()

    asyncio.run(scenario())


def test_a_camera_restarted_by_a_config_change_keeps_its_counters() -> None:
    async def scenario() -> None:
        running = fleet(None, datetime(2026, 5, 4, 1, 0, tzinfo=UTC))
        await running.apply(CONFIG)
        before = running.patrols["a"]
        before.stats.visits, before.stats.camera_errors = 5, 1
        await running.apply(parse_config(document({"a": fixed("rtsp://x/a", "5m")})))
        after = running.patrols["a"]
        assert after is not before
        assert (after.stats.visits, after.stats.camera_errors) == (5, 1)
        assert after.counting_since == before.counting_since
        await running.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (b"[]", "no `counts` object"),
        (b'{"counts": {"visits": "x"}}', "counts.visits is not a count"),
        (b'{"counts": {"visits": true}}', "counts.visits is not a count"),
        (b'{"counts": {"visits": -1}}', "counts.visits is not a count"),
        (b'{"counts": {"missed_reasons": {"offline": "2"}}}', "counts.missed_reasons is not a map of counts"),
        (b"not json", "Expecting value"),
    ],
)
def test_a_damaged_counters_document_is_refused_whole(document: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_counters(document)


def test_a_document_without_a_start_time_still_counts() -> None:
    counts, since = parse_counters(b'{"counts": {"visits": 100}}')
    assert (counts, since) == ({"visits": 100}, None)


def test_damaged_stored_counters_are_added_once_at_most(live: SnapshotStore) -> None:
    live.put(counters_key("a"), b'{"counts": {"visits": 100, "missed": "lots"}}', content_type="application/json")
    start = datetime(2026, 5, 4, 1, 0, tzinfo=UTC)

    async def scenario() -> None:
        counters = PatrolCounters(live, every=0.1)
        replica = fleet(counters, start)
        await replica.apply(CONFIG)
        patrol = replica.patrols["a"]
        await wait_until_async(lambda: has_counters(live) and "missed" in stored(live)["counts"], 30, "a save")
        for _ in range(3):  # every save restores first: a damaged document must not be added again each time
            assert counters.save(patrol)
        assert patrol.stats.visits == 0 and stored(live)["counts"]["visits"] == 0  # refused whole: counts from 0
        await replica.stop()

    asyncio.run(scenario())
