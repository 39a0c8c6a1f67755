"""SQL tables (SQLAlchemy 2 ORM): cases, evidence, the audit log, accounts and webhook deliveries.

The schema is owned by the Alembic migrations in `cases/migrations/versions/`: a change here needs a new
migration too (`tests/cases/test_migrations.py` fails while the two disagree).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on every backend.

    SQLite keeps no offset, so values are stored as naive UTC and the offset is re-attached on the way out;
    PostgreSQL gets `timestamptz`. A naive datetime on the way in is a bug in the caller, not a guess to make;
    so is one whose UTC date falls outside years 1-9999 (a ValueError naming it, not an OverflowError).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"timestamps must be timezone-aware; got naive {value!r}")
        try:
            utc = value.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"timestamp {value.isoformat()} lies outside years 1-9999 in UTC") from None
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database; got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class KindList(TypeDecorator[tuple[str, ...]]):
    """A tuple of kind keys, kept as a JSON array in a text column (the same on every backend)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: tuple[str, ...] | None, dialect: Dialect) -> str:
        return json.dumps(list(value or ()))

    def process_result_value(self, value: Any, dialect: Dialect) -> tuple[str, ...]:
        return tuple(str(kind) for kind in json.loads(value or "[]"))


class Base(DeclarativeBase):
    pass


class CaseRow(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(16))
    # A plain string, not an enum: the lifecycle (review, dispatch, close) adds states later.
    state: Mapped[str] = mapped_column(String(32))
    camera_id: Mapped[str] = mapped_column(String(128))
    preset_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    zone: Mapped[str] = mapped_column(String(128))
    rule: Mapped[str] = mapped_column(String(128))
    class_name: Mapped[str] = mapped_column(String(64))
    confidence: Mapped[float] = mapped_column(Float)
    # The last observed box (xyxy, pixels of the preset's picture): what the next observation is matched to.
    box_x1: Mapped[float] = mapped_column(Float)
    box_y1: Mapped[float] = mapped_column(Float)
    box_x2: Mapped[float] = mapped_column(Float)
    box_y2: Mapped[float] = mapped_column(Float)
    # The first box of the case's kind (where it was filed, or re-kinded): matched too, so a case whose last box
    # drifted with its sightings still holds its place (cases/queries.py).
    first_box_x1: Mapped[float] = mapped_column(Float, server_default="0")
    first_box_y1: Mapped[float] = mapped_column(Float, server_default="0")
    first_box_x2: Mapped[float] = mapped_column(Float, server_default="0")
    first_box_y2: Mapped[float] = mapped_column(Float, server_default="0")
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    observations: Mapped[int] = mapped_column(Integer, default=1)
    model_version: Mapped[str] = mapped_column(String(128), default="")
    # "camera" or "device" (a non-camera sensor event; camera_id then holds the device id).
    source: Mapped[str] = mapped_column(String(16), default="camera", server_default="camera")
    state_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The current stage's time limit runs out at due_at (None: the stage has no limit).
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Set when the case enters a closed state (closed, rejected): the re-filing cooldown counts from it.
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The grid or department the case was last dispatched to (None: never dispatched).
    department: Mapped[str | None] = mapped_column(String(128), nullable=True)
    latitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    longitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Related kinds merged into this case (see cases/queries.py RelatedKinds), in the order first seen.
    also_seen_kinds: Mapped[tuple[str, ...]] = mapped_column(KindList, default=(), server_default="[]")

    evidence: Mapped[list[EvidenceRow]] = relationship(
        back_populates="case", order_by="EvidenceRow.id", cascade="all, delete-orphan"
    )

    # The record's view of the box and location columns (cases/records.py reads and writes fields by name).
    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.box_x1, self.box_y1, self.box_x2, self.box_y2)

    @box.setter
    def box(self, value: tuple[float, float, float, float]) -> None:
        self.box_x1, self.box_y1, self.box_x2, self.box_y2 = value

    @property
    def first_box(self) -> tuple[float, float, float, float]:
        return (self.first_box_x1, self.first_box_y1, self.first_box_x2, self.first_box_y2)

    @first_box.setter
    def first_box(self, value: tuple[float, float, float, float]) -> None:
        self.first_box_x1, self.first_box_y1, self.first_box_x2, self.first_box_y2 = value

    @property
    def location(self) -> tuple[float, float] | None:
        if self.latitude is None or self.longitude is None:
            return None
        return (self.latitude, self.longitude)

    @location.setter
    def location(self, value: tuple[float, float] | None) -> None:
        self.latitude, self.longitude = value if value is not None else (None, None)

    __table_args__ = (
        # find_open_match's lookup: open cases of one camera/zone/kind.
        Index("ix_cases_match", "camera_id", "zone", "kind", "state"),
        Index("ix_cases_created_at", "created_at"),
        # The API's common filters, newest first.
        Index("ix_cases_state_id", "state", "id"),
        Index("ix_cases_camera_id_id", "camera_id", "id"),
        Index("ix_cases_kind_id", "kind", "id"),
        Index("ix_cases_due_at", "due_at"),
        Index("ix_cases_department_id", "department", "id"),
    )


class EvidenceRow(Base):
    __tablename__ = "evidence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(512), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(128))
    uploaded: Mapped[bool] = mapped_column(Boolean, default=False)
    # When the pictured frame was taken (the violation's last_seen): groups roles into one evidence set and
    # paces new sets on an attached case.
    captured_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    case: Mapped[CaseRow] = relationship(back_populates="evidence")

    __table_args__ = (Index("ix_evidence_pending", "uploaded"),)


class AuditRow(Base):
    """One line of a case's history. Append-only: triggers in the migration refuse UPDATE and DELETE."""

    __tablename__ = "case_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(128))
    # file, a lifecycle action (review, confirm, ...), correct_kind or comment.
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    to_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    comment: Mapped[str] = mapped_column(Text, default="")
    # JSON object: what changed beyond the state (old and new kind, device reading, ...).
    details: Mapped[str] = mapped_column(Text, default="{}")

    __table_args__ = (Index("ix_case_audit_case_id", "case_id", "id"),)


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    # None for accounts that only use API keys (cameras, devices, outside systems).
    password_hash: Mapped[str | None] = mapped_column(String(256), nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint("role IN ('viewer', 'inspector', 'supervisor', 'admin', 'service')", name="ck_users_role"),
    )


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # The public half of the key (`cwk_<key_id>_<secret>`): finds the row without scanning hashes.
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class TokenRow(Base):
    """A bearer token issued at login; only its sha256 is kept."""

    __tablename__ = "auth_tokens"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class WebhookCursorRow(Base):
    """How far into the audit log each webhook target has been queued."""

    __tablename__ = "webhook_cursors"

    target: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_audit_id: Mapped[int] = mapped_column(Integer)


class WebhookDeliveryRow(Base):
    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    target: Mapped[str] = mapped_column(String(64))
    audit_id: Mapped[int] = mapped_column(ForeignKey("case_audit.id"))
    case_id: Mapped[int] = mapped_column(Integer, index=True)
    event: Mapped[str] = mapped_column(String(48))
    # Sent with every attempt: the receiver drops a delivery it has already applied.
    idempotency_key: Mapped[str] = mapped_column(String(96), unique=True)
    # pending, delivered, failed (gave up after the last attempt).
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")

    attempt_log: Mapped[list[WebhookAttemptRow]] = relationship(
        back_populates="delivery", order_by="WebhookAttemptRow.id"
    )

    __table_args__ = (
        UniqueConstraint("target", "audit_id", name="uq_webhook_deliveries_target_audit"),
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
    )


class WebhookAttemptRow(Base):
    """One HTTP attempt of a delivery: the visible delivery log."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    duration_ms: Mapped[float] = mapped_column(Float)

    delivery: Mapped[WebhookDeliveryRow] = relationship(back_populates="attempt_log")
