"""A real case API for tests: FastAPI TestClient over a real database (SQLite or PostgreSQL) and real S3."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from fastapi.testclient import TestClient

from citywatch.cases.evidence import EvidenceStore
from citywatch.cases.filing import CaseFiler
from citywatch.cases.lifecycle import LifecyclePolicy, Role
from citywatch.cases.spool import EvidenceSpool
from citywatch.cases.store import CaseStore, Observation
from citywatch.cases.webhooks import WebhookOutbox
from citywatch.serving.api import ApiContext, Device, KindName, build_api
from citywatch.stack.s3 import S3Endpoint
from tests.waiting import wait_until

T0 = datetime(2026, 5, 4, 2, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
MANHOLE = KindName("90001", "井盖倾斜", "Manhole cover tilted")


async def no_health() -> dict[str, Any]:
    return {"cameras": [], "detectors": {}}


@dataclass
class Api:
    client: TestClient
    context: ApiContext
    keys: dict[Role, str]
    bucket: str

    def as_role(self, role: Role | None) -> dict[str, str]:
        return {} if role is None else {"Authorization": f"Bearer {self.keys[role]}"}

    def file(self, index: int, *, camera: str = "gate-3", kind: str = "motor_vehicle_illegal_parking") -> int:
        observation = Observation(
            kind=kind,
            code="09009" if kind.startswith("motor") else "06010",
            camera_id=camera,
            preset_id="main",
            zone=f"zone-{index}",
            rule="illegal_parking",
            class_name="car",
            confidence=0.7,
            box=(10.0, 10.0, 50.0, 40.0),
            first_seen=T0,
            last_seen=T0 + timedelta(minutes=6),
        )
        images = {"annotated": (b"\xff\xd8jpeg-" + str(index).encode(), "image/jpeg")}
        assert self.context.filer is not None
        return self.context.filer.file_observation(observation, images).case_id


def make_api(
    database_url: str, s3: S3Endpoint, tmp_path: Path, *, outbox_factory: Any = None, clock: Any = None
) -> Api:
    store = CaseStore.from_url(
        database_url, policy=LifecyclePolicy(stage_limits={}), **({"clock": clock} if clock else {})
    )
    bucket = f"cw-api-{uuid.uuid4().hex[:10]}"
    evidence = EvidenceStore.from_endpoint(s3.endpoint, s3.access_key, s3.secret_key, bucket)
    evidence.ensure_bucket()
    outbox: WebhookOutbox | None = outbox_factory(store) if outbox_factory else None
    context = ApiContext(
        store=store,
        evidence=evidence,
        health=no_health,
        filer=CaseFiler(store, evidence, EvidenceSpool(tmp_path / "spool")),
        outbox=outbox,
        camera_locations={"gate-3": (23.1291, 113.2644)},
        device_kinds={"manhole_cover_tilt": MANHOLE},
        devices={"mh-0042": Device(frozenset({"manhole_cover_tilt"}), (23.13, 113.27))},
    )
    keys = {}
    for role in Role:
        context.accounts.add_user(f"{role.value}-user", role, PASSWORD)
        keys[role] = context.accounts.create_api_key(f"{role.value}-user")
    return Api(TestClient(build_api(context), raise_server_exceptions=False), context, keys, bucket)


@dataclass
class Served:
    """An app served by uvicorn on a free port, counting the request body bytes the app pulled."""

    url: str
    pulled: int = 0


@contextmanager
def served(app: Any) -> Iterator[Served]:
    """Serve `app` with uvicorn in a thread (real HTTP: chunked bodies arrive chunk by chunk)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = Served(f"http://127.0.0.1:{sock.getsockname()[1]}")

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        async def counted() -> Any:
            message = await receive()
            site.pulled += len(message.get("body", b""))
            return message

        await app(scope, counted, send)

    server = uvicorn.Server(uvicorn.Config(counting, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 60, "uvicorn to start")
    try:
        yield site
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
