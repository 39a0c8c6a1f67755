"""Sharding cameras over replicas, and config changes that restart only what changed."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np
import supervision as sv

from citywatch.pipelines.config import parse_config
from citywatch.pipelines.fleet import Fleet, shard, shard_owner
from citywatch.pipelines.schedule import ManualClock
from citywatch.vision.violation import Violation
from tests.configs import no_store
from tests.fakes import StillReader

CAMERAS = [f"cam-{i:05d}" for i in range(3000)]


def test_assignment_is_stable_balanced_and_moves_little_when_replicas_change() -> None:
    four = {c: shard_owner(c, 4) for c in CAMERAS}
    assert four == {c: shard_owner(c, 4) for c in CAMERAS}  # the same on every redeploy
    counts = Counter(four.values())
    assert set(counts) == {0, 1, 2, 3} and max(counts.values()) < 1.15 * len(CAMERAS) / 4
    five = {c: shard_owner(c, 5) for c in CAMERAS}
    moved = [c for c in CAMERAS if four[c] != five[c]]
    assert all(five[c] == 4 for c in moved)  # only to the new replica
    assert 0.15 < len(moved) / len(CAMERAS) < 0.25  # about 1/5
    assert sorted(c for r in range(5) for c in shard(CAMERAS, r, 5)) == sorted(CAMERAS)


def document(cameras: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "storage": no_store(),
        "rules": {"car": {"type": "presence", "kind": "motor_vehicle_illegal_parking", "classes": ["car"]}},
        "cameras": cameras,
    }


def fixed(url: str, every: str = "1m") -> dict[str, Any]:
    zone = {"polygon": [[0, 0], [1, 0], [1, 1]], "rules": ["car"]}
    return {"rtsp": url, "presets": {"main": {"schedule": {"every": every}, "zones": {"all": zone}}}}


def test_apply_starts_new_cameras_restarts_changed_ones_and_leaves_the_rest_running() -> None:
    async def detect(image: np.ndarray) -> sv.Detections:
        return sv.Detections.empty()

    async def sink(violation: Violation) -> None:
        pass

    async def scenario() -> None:
        fleet = Fleet(
            detect_for=lambda _: detect, sink=sink, reader_factory=StillReader, clock=ManualClock(datetime.now(UTC))
        )
        first = parse_config(document({"a": fixed("rtsp://x/a"), "b": fixed("rtsp://x/b")}))
        change = await fleet.apply(first)
        assert sorted(change.started) == ["a", "b"]
        a_patrol, a_task = fleet.patrols["a"], fleet._tasks["a"]
        b_patrol = fleet.patrols["b"]

        second = parse_config(
            document({"a": fixed("rtsp://x/a"), "b": fixed("rtsp://x/b", "5m"), "c": fixed("rtsp://x/c")})
        )
        change = await fleet.apply(second)
        assert (change.started, change.restarted, change.stopped, change.unchanged) == (["c"], ["b"], [], ["a"])
        assert fleet.patrols["a"] is a_patrol and fleet._tasks["a"] is a_task and not a_task.done()
        assert fleet.patrols["b"] is not b_patrol and b_patrol.reader.stopped  # type: ignore[attr-defined]

        change = await fleet.apply(parse_config(document({"c": fixed("rtsp://x/c")})))
        assert sorted(change.stopped) == ["a", "b"] and change.unchanged == ["c"]
        assert a_task.cancelled()

        # Another shard: a replica of two keeps only the cameras rendezvous hashing gives it.
        many = parse_config(document({f"cam-{i}": fixed(f"rtsp://x/{i}") for i in range(20)}))
        await fleet.apply(many, rank=1, replicas=2)
        assert sorted(fleet.patrols) == sorted(shard(many.cameras, 1, 2))
        await fleet.stop()
        assert fleet.patrols == {}

    asyncio.run(scenario())


def test_config_survives_the_json_round_trip_of_serve_user_config() -> None:
    config = parse_config(document({"a": fixed("rtsp://x/a", "15m")}))
    again = type(config).model_validate(config.model_dump(mode="json"))
    assert again == config
