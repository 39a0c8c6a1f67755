"""Webhooks to an outside case system: every audit-log line becomes an event, delivered at least once.

The audit log is the outbox: a case change and its audit line commit together, so no event can be lost
between the database and the network. `enqueue` turns new audit lines into one delivery row per target (a
per-target cursor remembers how far it got; a new target starts from now, not from history). `deliver_due`
claims due deliveries with a lease (so several replicas never send the same one at once), POSTs them signed
with HMAC-SHA256, and on failure retries with exponential back-off and jitter until `max_attempts`.

A receiver must verify `X-Citywatch-Signature` (`sha256=` + hex HMAC of `<timestamp>.<body>` under the
shared secret, timestamp in `X-Citywatch-Timestamp`), and drop a delivery whose `Idempotency-Key` it has
already applied: after a timeout we cannot know whether it was applied, so it is sent again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from citywatch.cases.db import AuditRow, CaseRow, WebhookAttemptRow, WebhookCursorRow, WebhookDeliveryRow
from citywatch.cases.records import from_row
from citywatch.cases.store import CaseStore

log = logging.getLogger(__name__)

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
_ERROR_LIMIT = 500


@dataclass(frozen=True)
class WebhookTarget:
    name: str
    url: str
    secret: bytes
    events: frozenset[str] = frozenset()
    """Audit actions to send (file, confirm, reject, dispatch, ..., correct_kind, comment); empty: all."""
    timeout: float = 5.0


@dataclass(frozen=True)
class RetryPolicy:
    first_retry: timedelta = timedelta(seconds=5)
    max_backoff: timedelta = timedelta(hours=1)
    max_attempts: int = 12
    lease: timedelta = timedelta(seconds=60)
    """How long a claimed delivery is hidden from other replicas; must exceed the HTTP timeout."""

    def backoff(self, attempts: int, rng: Callable[[], float] = random.random) -> timedelta:
        """Delay before attempt `attempts + 1`: doubling from `first_retry`, capped, with ±20 % jitter."""
        base: timedelta = min(self.first_retry * (2 ** max(attempts - 1, 0)), self.max_backoff)
        jitter: float = 0.8 + 0.4 * rng()
        return base * jitter


@dataclass(frozen=True, kw_only=True)
class AttemptInfo:
    at: datetime
    status_code: int | None
    error: str
    duration_ms: float


@dataclass(frozen=True, kw_only=True)
class DeliveryInfo:
    """A delivery as the log shows it (the API returns it as it is)."""

    id: int
    target: str
    case_id: int
    audit_id: int
    event: str
    idempotency_key: str
    state: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None
    last_status: int | None
    last_error: str
    attempt_log: tuple[AttemptInfo, ...] = field(default=())


class WebhookError(RuntimeError):
    """A delivery that cannot be retried, or an event whose audit line is gone."""


class DeliveryNotFound(WebhookError, LookupError):
    """No delivery with this id."""


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def event_name(action: str) -> str:
    return f"case.{action}"


class WebhookOutbox:
    def __init__(
        self,
        store: CaseStore,
        targets: Sequence[WebhookTarget],
        *,
        policy: RetryPolicy | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        names = [t.name for t in targets]
        if len(set(names)) != len(names):
            raise ValueError(f"webhook target names must be unique; got {names}")
        self.store = store
        self.targets = {t.name: t for t in targets}
        self.policy = policy or RetryPolicy()
        self._client = client or httpx.Client(follow_redirects=False)

    # -- queueing ------------------------------------------------------------------------------------------

    def enqueue(self) -> int:
        """Create deliveries for audit lines not yet queued for each target; returns how many."""
        created = 0
        with self.store.writing() as session:
            newest = int(session.scalar(sa.select(sa.func.max(AuditRow.id))) or 0)
            for target in self.targets.values():
                cursor = session.get(WebhookCursorRow, target.name, with_for_update=True)
                if cursor is None:
                    session.add(WebhookCursorRow(target=target.name, last_audit_id=newest))
                    continue
                query = sa.select(AuditRow.id, AuditRow.case_id, AuditRow.action).where(
                    AuditRow.id > cursor.last_audit_id, AuditRow.id <= newest
                )
                if target.events:
                    query = query.where(AuditRow.action.in_(sorted(target.events)))
                now = self.store.now()
                for audit_id, case_id, action in session.execute(query.order_by(AuditRow.id)):
                    session.add(
                        WebhookDeliveryRow(
                            target=target.name,
                            audit_id=audit_id,
                            case_id=case_id,
                            event=event_name(action),
                            idempotency_key=f"citywatch-{target.name}-{audit_id}",
                            state=PENDING,
                            attempts=0,
                            next_attempt_at=now,
                            created_at=now,
                            last_error="",
                        )
                    )
                    created += 1
                cursor.last_audit_id = newest
        return created

    # -- sending -------------------------------------------------------------------------------------------

    def deliver_due(self, limit: int = 50) -> int:
        """Send deliveries that are due; returns how many were delivered successfully."""
        delivered = 0
        for claim in self._claim(limit):
            if self._send(*claim):
                delivered += 1
        return delivered

    def run_once(self) -> int:
        self.enqueue()
        return self.deliver_due()

    def run_forever(self, stop: threading.Event, every: float = 1.0) -> None:
        """A background loop: report and go on after any error, until `stop` is set."""
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("webhook delivery round failed")
            stop.wait(every)

    def _claim(self, limit: int) -> list[tuple[int, str, int, str, str]]:
        now = self.store.now()
        query = (
            sa.select(WebhookDeliveryRow)
            .where(WebhookDeliveryRow.state == PENDING, WebhookDeliveryRow.next_attempt_at <= now)
            .order_by(WebhookDeliveryRow.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self.store.writing() as session:
            claims = []
            for row in session.scalars(query):
                if row.target not in self.targets:
                    continue  # a target removed from the config: its deliveries wait for it to come back
                row.next_attempt_at = now + self.policy.lease
                claims.append((row.id, row.target, row.audit_id, row.idempotency_key, row.event))
            return claims

    def _send(self, delivery_id: int, target_name: str, audit_id: int, key: str, event: str) -> bool:
        target = self.targets[target_name]
        body = json.dumps(self._payload(audit_id, key, event), ensure_ascii=False, default=str).encode("utf-8")
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "citywatch-webhooks",
            "Idempotency-Key": key,
            "X-Citywatch-Event": event,
            "X-Citywatch-Delivery": str(delivery_id),
            "X-Citywatch-Timestamp": timestamp,
            "X-Citywatch-Signature": signature(target.secret, timestamp, body),
        }
        started = time.monotonic()
        status: int | None = None
        error = ""
        try:
            response = self._client.post(target.url, content=body, headers=headers, timeout=target.timeout)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}: {response.text[:200]}"
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"
        duration_ms = (time.monotonic() - started) * 1000
        self._record(delivery_id, status, error[:_ERROR_LIMIT], duration_ms)
        if error:
            log.warning("webhook %s delivery %d (%s) failed: %s", target_name, delivery_id, event, error)
        return not error

    def _payload(self, audit_id: int, key: str, event: str) -> dict[str, Any]:
        with self.store.reading() as session:
            audit = session.get(AuditRow, audit_id)
            if audit is None:
                raise WebhookError(f"audit line {audit_id} is gone")
            case = session.get(CaseRow, audit.case_id)
            snapshot = None
            if case is not None:
                snapshot = {
                    "id": case.id,
                    "kind": case.kind,
                    "code": case.code,
                    "state": case.state,
                    "camera_id": case.camera_id,
                    "preset_id": case.preset_id,
                    "zone": case.zone,
                    "source": case.source,
                    "created_at": case.created_at.isoformat(),
                    "due_at": case.due_at.isoformat() if case.due_at else None,
                    "location": [case.latitude, case.longitude] if case.latitude is not None else None,
                }
            return {
                "id": key,
                "event": event,
                "sequence": audit.id,
                "occurred_at": audit.at.isoformat(),
                "audit": {
                    "actor": audit.actor,
                    "action": audit.action,
                    "from_state": audit.from_state,
                    "to_state": audit.to_state,
                    "comment": audit.comment,
                    "details": json.loads(audit.details or "{}"),
                },
                "case": snapshot,
            }

    def _record(self, delivery_id: int, status: int | None, error: str, duration_ms: float) -> None:
        now = self.store.now()
        with self.store.writing() as session:
            row = session.get(WebhookDeliveryRow, delivery_id, with_for_update=True)
            if row is None:
                return
            row.attempts += 1
            row.last_status = status
            row.last_error = error
            if not error:
                row.state, row.delivered_at = DELIVERED, now
            elif row.attempts >= self.policy.max_attempts:
                row.state = FAILED
            else:
                row.next_attempt_at = now + self.policy.backoff(row.attempts)
            session.add(
                WebhookAttemptRow(
                    delivery_id=delivery_id, at=now, status_code=status, error=error, duration_ms=duration_ms
                )
            )

    # -- the visible log -----------------------------------------------------------------------------------

    def deliveries(
        self, *, state: str | None = None, case_id: int | None = None, limit: int = 50, offset: int = 0
    ) -> list[DeliveryInfo]:
        query = sa.select(WebhookDeliveryRow).order_by(WebhookDeliveryRow.id.desc()).limit(limit).offset(offset)
        if state is not None:
            query = query.where(WebhookDeliveryRow.state == state)
        if case_id is not None:
            query = query.where(WebhookDeliveryRow.case_id == case_id)
        with self.store.reading() as session:
            return [_info(row, with_attempts=False) for row in session.scalars(query)]

    def delivery(self, delivery_id: int) -> DeliveryInfo:
        query = (
            sa.select(WebhookDeliveryRow)
            .where(WebhookDeliveryRow.id == delivery_id)
            .options(selectinload(WebhookDeliveryRow.attempt_log))
        )
        with self.store.reading() as session:
            row = session.scalars(query).one_or_none()
            if row is None:
                raise DeliveryNotFound(f"no webhook delivery {delivery_id}")
            return _info(row, with_attempts=True)

    def retry(self, delivery_id: int) -> DeliveryInfo:
        """Send a failed delivery again (same idempotency key), starting a fresh round of attempts."""
        with self.store.writing() as session:
            row = session.get(WebhookDeliveryRow, delivery_id, with_for_update=True)
            if row is None:
                raise DeliveryNotFound(f"no webhook delivery {delivery_id}")
            if row.state != FAILED:
                raise WebhookError(f"delivery {delivery_id} is {row.state}; only failed deliveries are retried")
            row.state, row.attempts, row.next_attempt_at = PENDING, 0, self.store.now()
        return self.delivery(delivery_id)


def _info(row: WebhookDeliveryRow, *, with_attempts: bool) -> DeliveryInfo:
    attempts = tuple(from_row(AttemptInfo, a) for a in row.attempt_log) if with_attempts else ()
    return from_row(DeliveryInfo, row, attempt_log=attempts)
