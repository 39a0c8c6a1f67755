"""The service itself: the HTTP API and Ray deployments, API logins, and the case workflow's times."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from citywatch.cases.lifecycle import LifecyclePolicy, State
from citywatch.vision.params import DEFAULT_TIMEZONE, Duration, Strict, TimezoneName


class ServingConfig(Strict):
    host: str = Field("127.0.0.1", description="Address the HTTP API binds to")
    port: int = Field(8000, ge=1, le=65535, description="Port of the HTTP API")
    detector_replicas: int = Field(1, ge=1, description="Replicas of the detector deployment")
    max_batch_size: int = Field(8, ge=1, description="Most frames one detector call batches")
    batch_wait_s: float = Field(0.02, ge=0.0, description="How long a batch waits to fill")
    detector_cpus: float = Field(
        1.0, gt=0.0, description="CPUs reserved per detector replica; all replicas must fit the Ray cluster"
    )
    timezone: TimezoneName = Field(DEFAULT_TIMEZONE, description="Timezone of rule windows and schedules")
    fleet_replicas: int = Field(1, ge=1, description="Replicas of the camera fleet; cameras are sharded over them")
    fleet_cpus: float = Field(0.5, gt=0.0, description="CPUs reserved per camera-fleet replica")


def _default_stage_limits() -> dict[State, timedelta]:
    return {
        State.AUTO_FILED: timedelta(hours=2),
        State.UNDER_REVIEW: timedelta(hours=24),
        State.CONFIRMED: timedelta(hours=24),
        State.DISPATCHED: timedelta(hours=72),
        State.HANDLED: timedelta(hours=48),
        State.REOPENED: timedelta(hours=24),
    }


class LifecycleConfig(Strict):
    stage_limits: dict[State, Duration] = Field(
        default_factory=_default_stage_limits,
        description="How long a case may stay in each state before it is overdue; states left out have no limit",
    )
    cooldown: Duration = Field(
        timedelta(hours=24),
        description="After a case is closed or rejected, the same problem is filed anew only this much later",
    )
    evidence_retention_days: int | None = Field(
        None,
        ge=1,
        description="COMPLIANCE retention of evidence objects in days (needs a bucket made with object lock); "
        "none: versioning only",
    )

    def policy(self) -> LifecyclePolicy:
        return LifecyclePolicy(stage_limits=dict(self.stage_limits), cooldown=self.cooldown)


class AuthConfig(Strict):
    token_ttl: Duration = Field(timedelta(hours=12), description="How long a login token stays valid")
