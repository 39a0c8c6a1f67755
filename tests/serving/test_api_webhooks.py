"""Webhooks against a real HTTP receiver that fails the first deliveries: signed, retried, at least once,
idempotency keys stable across retries, and the delivery log visible through the API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from citywatch.cases.lifecycle import Role
from citywatch.cases.store import CaseStore
from citywatch.cases.webhooks import RetryPolicy, WebhookOutbox, WebhookTarget, signature
from citywatch.stack.s3 import S3Endpoint
from tests.serving.api_support import Api, make_api
from tests.waiting import wait_until

SECRET = b"shared-secret-of-the-city-system"


class Receiver:
    """An outside case system: answers 503 to the first `fail_first` requests, then 200."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    failing = len(receiver.requests) <= receiver.fail_first
                self.send_response(503 if failing else 200)
                self.end_headers()
                self.wfile.write(b"busy" if failing else b"ok")

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(fail_first=3)
    yield server
    server.stop()


@pytest.fixture
def api(database_url: str, s3_server: S3Endpoint, tmp_path: Path, receiver: Receiver) -> Iterator[Api]:
    def outbox(store: CaseStore) -> WebhookOutbox:
        target = WebhookTarget("city-system", receiver.url, SECRET, frozenset({"file", "confirm", "reject"}), 2.0)
        policy = RetryPolicy(
            first_retry=timedelta(milliseconds=50),
            max_backoff=timedelta(milliseconds=200),
            max_attempts=6,
            lease=timedelta(seconds=10),
        )
        return WebhookOutbox(store, [target], policy=policy)

    made = make_api(database_url, s3_server, tmp_path, outbox_factory=outbox)
    with made.client:
        yield made


def run_until_settled(outbox: WebhookOutbox, timeout: float = 60.0) -> None:
    def settled() -> bool:
        outbox.run_once()
        return not outbox.deliveries(state="pending")

    wait_until(settled, timeout, "the webhook deliveries to settle")


def test_events_are_signed_retried_and_delivered_at_least_once(api: Api, receiver: Receiver) -> None:
    outbox = api.context.outbox
    assert outbox is not None
    outbox.enqueue()  # the target's cursor starts here: earlier history is not replayed
    case_id = api.file(1)
    inspector = api.as_role(Role.INSPECTOR)
    api.client.post(f"/cases/{case_id}/actions/confirm", json={}, headers=inspector)
    api.client.post(f"/cases/{case_id}/comments", json={"text": "not sent: not subscribed"}, headers=inspector)
    run_until_settled(outbox)

    delivered = outbox.deliveries(state="delivered")
    assert sorted(d.event for d in delivered) == ["case.confirm", "case.file"]
    assert sum(d.attempts for d in delivered) == 2 + receiver.fail_first
    by_key: dict[str, list[dict[str, Any]]] = {}
    for headers, body in receiver.requests:
        expected = signature(SECRET, headers["x-citywatch-timestamp"], body)
        assert headers["x-citywatch-signature"] == expected
        payload = json.loads(body)
        assert payload["id"] == headers["idempotency-key"]
        by_key.setdefault(headers["idempotency-key"], []).append(payload)
    assert len(by_key) == 2  # retries reuse the key: the receiver can drop repeats
    filed = next(p for p in (ps[0] for ps in by_key.values()) if p["event"] == "case.file")
    assert filed["case"]["id"] == case_id and filed["audit"]["actor"] == "camera:gate-3"
    confirm = next(p for p in (ps[0] for ps in by_key.values()) if p["event"] == "case.confirm")
    assert (confirm["audit"]["from_state"], confirm["audit"]["to_state"]) == ("auto_filed", "confirmed")
    assert confirm["sequence"] > filed["sequence"]

    # The log through the API, with each attempt.
    supervisor = api.as_role(Role.SUPERVISOR)
    listed = api.client.get("/webhooks/deliveries", params={"case_id": case_id}, headers=supervisor).json()
    assert {d["state"] for d in listed} == {"delivered"}
    retried = max(listed, key=lambda d: d["attempts"])
    detail = api.client.get(f"/webhooks/deliveries/{retried['id']}", headers=supervisor).json()
    assert [a["status_code"] for a in detail["attempt_log"]][-1] == 200
    assert 503 in [a["status_code"] for a in detail["attempt_log"]]
    assert api.client.get("/webhooks/deliveries", headers=api.as_role(Role.INSPECTOR)).status_code == 403
    # Nothing new: another round sends nothing.
    count = len(receiver.requests)
    outbox.run_once()
    assert len(receiver.requests) == count


def test_failed_delivery_is_kept_and_can_be_retried(api: Api, receiver: Receiver) -> None:
    outbox = api.context.outbox
    assert outbox is not None
    receiver.fail_first = 10_000
    outbox.enqueue()
    api.file(1)
    run_until_settled(outbox)
    [failed] = outbox.deliveries(state="failed")
    assert failed.attempts == 6 and failed.last_status == 503
    admin = api.as_role(Role.ADMIN)
    assert api.client.post(f"/webhooks/deliveries/{failed.id}/retry", headers=admin).json()["state"] == "pending"
    assert api.client.post("/webhooks/deliveries/999999/retry", headers=admin).status_code == 404
    receiver.fail_first = 0
    run_until_settled(outbox)
    assert outbox.delivery(failed.id).state == "delivered"
    keys = {headers["idempotency-key"] for headers, _ in receiver.requests}
    assert keys == {failed.idempotency_key}
    second = api.client.post(f"/webhooks/deliveries/{failed.id}/retry", headers=admin)
    assert second.status_code == 409  # only failed deliveries are retried
