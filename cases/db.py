"""SQL tables for cases and their evidence (SQLAlchemy 2 ORM).

Tables are created with `create_all` for now; migrations (Alembic) come later, so a column change after the
first release needs a migration, not an edit here alone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on every backend.

    SQLite keeps no offset, so values are stored as naive UTC and the offset is re-attached on the way out;
    PostgreSQL gets `timestamptz`. A naive datetime on the way in is a bug in the caller, not a guess to make.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"timestamps must be timezone-aware; got naive {value!r}")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database; got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


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
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    observations: Mapped[int] = mapped_column(Integer, default=1)
    model_version: Mapped[str] = mapped_column(String(128), default="")

    evidence: Mapped[list[EvidenceRow]] = relationship(
        back_populates="case", order_by="EvidenceRow.id", cascade="all, delete-orphan"
    )

    __table_args__ = (
        # find_open_match's lookup: open cases of one camera/zone/kind.
        Index("ix_cases_match", "camera_id", "zone", "kind", "state"),
        Index("ix_cases_created_at", "created_at"),
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
