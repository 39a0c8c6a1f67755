"""What the API routes work on: live stores, and what the config says about cameras and devices."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from citywatch.cases.accounts import AccountStore
from citywatch.cases.evidence import EvidenceStore
from citywatch.cases.filing import CaseFiler
from citywatch.cases.live import SnapshotStore
from citywatch.cases.store import CaseStore
from citywatch.cases.webhooks import RetryPolicy, WebhookOutbox, WebhookTarget
from citywatch.cases.workflow import CaseWorkflow
from citywatch.pipelines.config import CityConfig
from citywatch.pipelines.sink import CaseBackends
from citywatch.pipelines.snapshots import snapshot_store_from_config

HealthProbe = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class KindName:
    code: str
    name_zh: str
    name_en: str


@dataclass(frozen=True)
class Device:
    kinds: frozenset[str]
    location: tuple[float, float] | None = None


@dataclass
class ApiContext:
    """Everything the routes use: live stores and what the config says about cameras and devices."""

    store: CaseStore
    evidence: EvidenceStore
    health: HealthProbe
    filer: CaseFiler | None = None
    """Files device events; None: POST /events answers 503."""
    outbox: WebhookOutbox | None = None
    camera_locations: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    device_kinds: Mapping[str, KindName] = field(default_factory=dict)
    devices: Mapping[str, Device] = field(default_factory=dict)
    token_ttl: timedelta = timedelta(hours=12)
    snapshots: SnapshotStore | None = None
    """Each preset's latest frame (the cameras page); None: the page shows no pictures."""
    timezone: str = "UTC"
    """The city's timezone: dashboard days are its days."""
    accounts: AccountStore = field(init=False)
    workflow: CaseWorkflow = field(init=False)

    def __post_init__(self) -> None:
        self.accounts = AccountStore(self.store)
        self.workflow = CaseWorkflow(self.store)

    @classmethod
    def from_config(cls, config: CityConfig, health: HealthProbe) -> ApiContext:
        """Live stores for an anchored city config (the Serve ingress builds its context with this)."""
        storage = config.storage
        cases = CaseBackends.from_config(config)
        store = cases.store
        hooks = config.webhooks
        outbox = None
        if hooks.targets:
            targets = [
                WebhookTarget(name, t.url, t.secret.encode("utf-8"), frozenset(t.events), t.timeout.total_seconds())
                for name, t in hooks.targets.items()
            ]
            policy = RetryPolicy(
                first_retry=hooks.first_retry, max_backoff=hooks.max_backoff, max_attempts=hooks.max_attempts
            )
            outbox = WebhookOutbox(store, targets, policy=policy)
        devices = config.devices
        return cls(
            store=store,
            evidence=cases.evidence,
            health=health,
            filer=cases.filer,
            outbox=outbox,
            camera_locations={c: cam.location for c, cam in config.cameras.items() if cam.location is not None},
            device_kinds={k: KindName(v.code, v.name_zh, v.name_en) for k, v in devices.kinds.items()},
            devices={d: Device(frozenset(v.kinds), v.location) for d, v in devices.devices.items()},
            token_ttl=config.auth.token_ttl,
            snapshots=snapshot_store_from_config(storage),
            timezone=config.serving.timezone,
        )
