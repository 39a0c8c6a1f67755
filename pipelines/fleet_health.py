"""Every fleet replica's last health report, so one call sees all cameras (the FleetHealthBoard's state).

Plain Python, no Ray: the `FleetHealthBoard` deployment holds one of these (a Serve handle reaches one
replica of a deployment, not all of them, so the board has one replica). It keeps the last report of each
rank, flags reports older than `stale_after_s`, and drops ranks beyond the current number of replicas
(after a scale-down), as the newest report counts them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ShardReport:
    """One replica's last report: when it came, how many replicas it saw, and its cameras."""

    at: float
    replicas: int
    cameras: list[dict[str, Any]]


class HealthBoard:
    def __init__(self, stale_after_s: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        self.stale_after_s = stale_after_s
        self.clock = clock
        self.shards: dict[int, ShardReport] = {}
        self.replica_reports: dict[int, dict[str, Any]] = {}

    def report(
        self, rank: int, replicas: int, cameras: list[dict[str, Any]], replica: dict[str, Any] | None = None
    ) -> None:
        """A replica's cameras, and what it runs beside them (warnings held, latest-frame uploads)."""
        self.shards[rank] = ShardReport(self.clock(), replicas, cameras)
        if replica is not None:
            self.replica_reports[rank] = replica

    def replicas(self) -> list[dict[str, Any]]:
        """Each current fleet replica's own report (rank order), with its age."""
        now, replicas = self.clock(), self._replica_count()
        return [
            {"rank": rank, "report_age_s": round(now - self.shards[rank].at, 1), **report}
            for rank, report in sorted(self.replica_reports.items())
            if rank in self.shards and rank < replicas
        ]

    def cameras(self) -> list[dict[str, Any]]:
        """Every camera of the current replicas, with its report's age and whether that is stale."""
        now, replicas = self.clock(), self._replica_count()
        report = []
        for rank, shard in sorted(self.shards.items()):
            if rank >= replicas:
                continue
            age = now - shard.at
            for camera in shard.cameras:
                report.append({**camera, "report_age_s": round(age, 1), "stale": age > self.stale_after_s})
        return report

    def _replica_count(self) -> int:
        """The number of fleet replicas as the newest report sees it (ranks beyond it were scaled away)."""
        return max(self.shards.values(), key=lambda shard: shard.at).replicas if self.shards else 0
