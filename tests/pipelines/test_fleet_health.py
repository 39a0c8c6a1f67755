"""The fleet health board: the last report of each replica, stale flags, and replicas scaled away."""

from __future__ import annotations

from citywatch.pipelines.fleet_health import HealthBoard
from tests.clock import FakeClock


def test_reports_age_and_go_stale() -> None:
    clock = FakeClock(1_000.0)
    board = HealthBoard(stale_after_s=30.0, clock=clock)
    board.report(0, 2, [{"camera_id": "a"}], {"cameras": 1})
    clock.now += 20
    board.report(1, 2, [{"camera_id": "b"}], {"cameras": 1})
    clock.now += 15
    cameras = {c["camera_id"]: c for c in board.cameras()}
    assert (cameras["a"]["report_age_s"], cameras["a"]["stale"]) == (35.0, True)
    assert (cameras["b"]["report_age_s"], cameras["b"]["stale"]) == (15.0, False)
    assert [(r["rank"], r["report_age_s"]) for r in board.replicas()] == [(0, 35.0), (1, 15.0)]


def test_the_newest_report_decides_how_many_replicas_there_are() -> None:
    clock = FakeClock(1_000.0)
    board = HealthBoard(clock=clock)
    for rank in range(3):
        board.report(rank, 3, [{"camera_id": f"cam-{rank}"}], {"cameras": 1})
    clock.now += 1
    board.report(0, 2, [{"camera_id": "cam-0"}, {"camera_id": "cam-2"}], {"cameras": 2})
    assert [r["rank"] for r in board.replicas()] == [0, 1]
    assert sorted(c["camera_id"] for c in board.cameras()) == ["cam-0", "cam-1", "cam-2"]  # not rank 2's


def test_an_empty_board_reports_nothing() -> None:
    board = HealthBoard()
    assert board.cameras() == []
    assert board.replicas() == []
