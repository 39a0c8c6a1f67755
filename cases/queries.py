"""Which cases: the list filter the API and the store share, and the open/recently-closed match of a sighting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from citywatch.cases.db import CaseRow
from citywatch.cases.lifecycle import CLOSED_STATES
from citywatch.cases.records import Box, box_iou

# Plain strings for SQL parameters (the enum members are str subclasses some drivers would not adapt).
_CLOSED = tuple(sorted(state.value for state in CLOSED_STATES))
# The columns a text search looks in.
_TEXT_COLUMNS = (CaseRow.kind, CaseRow.code, CaseRow.camera_id, CaseRow.zone, CaseRow.rule, CaseRow.class_name)


class CaseStoreError(RuntimeError):
    """The case store was used wrongly (for example a naive timestamp); database errors pass through."""


def require_aware(*values: datetime) -> None:
    for value in values:
        if value.tzinfo is None or value.utcoffset() is None:
            raise CaseStoreError(f"timestamps must be timezone-aware UTC; got naive {value!r}")


@dataclass(frozen=True, kw_only=True)
class CaseFilter:
    """Which cases to list or count; None (or empty text) leaves a criterion out."""

    camera_id: str | None = None
    kind: str | None = None
    state: str | None = None
    since: datetime | None = None
    """Created at or after (timezone-aware)."""
    until: datetime | None = None
    """Created before (timezone-aware)."""
    text: str | None = None
    """A case-insensitive substring of the kind, code, camera, zone, rule or class."""
    overdue: bool | None = None
    """True: only cases past (or at) their stage's time limit; False: only the others."""
    department: str | None = None
    """Only cases last dispatched to this grid or department."""

    def __post_init__(self) -> None:
        require_aware(*(t for t in (self.since, self.until) if t is not None))
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise CaseStoreError(f"since ({self.since.isoformat()}) must be before until ({self.until.isoformat()})")

    def clauses(self, now: datetime) -> list[sa.ColumnElement[bool]]:
        """SQL conditions on `CaseRow`; `now` decides what is overdue."""
        equal = {
            CaseRow.camera_id: self.camera_id,
            CaseRow.kind: self.kind,
            CaseRow.state: self.state,
            CaseRow.department: self.department,
        }
        clauses = [column == value for column, value in equal.items() if value is not None]
        if self.since is not None:
            clauses.append(CaseRow.created_at >= self.since)
        if self.until is not None:
            clauses.append(CaseRow.created_at < self.until)
        if self.text:
            pattern = "%" + self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            clauses.append(sa.or_(*(column.ilike(pattern, escape="\\") for column in _TEXT_COLUMNS)))
        if self.overdue is not None:
            late = sa.and_(CaseRow.due_at.is_not(None), CaseRow.due_at <= now)
            clauses.append(late if self.overdue else sa.not_(late))
        return clauses


class Place(Protocol):
    """Where a problem was seen: a `Sighting` (an observation, a case record) or a lookup's arguments."""

    @property
    def camera_id(self) -> str: ...
    @property
    def preset_id(self) -> str | None: ...
    @property
    def zone(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def box(self) -> Box: ...


ANY_CASE = CaseFilter()


def _same_place(sighting: Place) -> list[sa.ColumnElement[bool]]:
    """Cases of the sighting's camera, preset, zone and kind."""
    preset = sighting.preset_id
    return [
        CaseRow.camera_id == sighting.camera_id,
        CaseRow.preset_id.is_(None) if preset is None else CaseRow.preset_id == preset,
        CaseRow.zone == sighting.zone,
        CaseRow.kind == sighting.kind,
    ]


def best_open_match(session: Session, sighting: Place, min_iou: float) -> CaseRow | None:
    """The open case of the sighting's camera, preset, zone and kind whose last box overlaps its box most
    (IoU >= `min_iou`), or None."""
    query = sa.select(CaseRow).where(*_same_place(sighting), CaseRow.state.not_in(_CLOSED))
    best: CaseRow | None = None
    best_iou = min_iou
    # Few open cases share a camera, zone and kind, so the overlap is scored here rather than in SQL.
    for row in session.scalars(query):
        iou = box_iou(row.box, sighting.box)
        if iou >= best_iou and (best is None or iou > best_iou):
            best, best_iou = row, iou
    return best


def recently_closed_match(session: Session, sighting: Place, min_iou: float, closed_after: datetime) -> CaseRow | None:
    """The same problem's case closed or rejected after `closed_after`, if any (the re-filing cooldown)."""
    query = sa.select(CaseRow).where(
        *_same_place(sighting), CaseRow.state.in_(_CLOSED), CaseRow.closed_at >= closed_after
    )
    for row in session.scalars(query.order_by(CaseRow.closed_at.desc())):
        if box_iou(row.box, sighting.box) >= min_iou:
            return row
    return None
