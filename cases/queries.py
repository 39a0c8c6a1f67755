"""Which cases: the list filter the API and the store share, and the open/recently-closed match of a sighting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from citywatch.cases.db import CaseRow
from citywatch.cases.lifecycle import CLOSED_STATES
from citywatch.cases.records import box_closeness
from citywatch.vision.boxes import Box, box_iou

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


@dataclass(frozen=True)
class RelatedKinds:
    """Kinds that are one problem when seen together at one place (a pile of garbage beside an overflowing bin).

    Each group lists its kinds by precedence, first highest. A sighting of a kind in a group also matches the open
    case of another kind of its group at the same camera, preset and zone when their boxes are together
    (`box_closeness` > 0 with the margin `near`): it is attached there instead of filed. If it outranks the
    case's kind, the case takes its kind (see `cases.observations.attach_related`); either way the other kind is
    kept in the case's `also_seen_kinds`.
    """

    groups: tuple[tuple[str, ...], ...] = ()
    near: float = 0.25
    """Margin, as a fraction of the smaller box's width and height, within which two boxes are together."""

    def __post_init__(self) -> None:
        seen: dict[str, int] = {}
        for number, group in enumerate(self.groups):
            if len(set(group)) != len(group) or len(group) < 2:
                raise ValueError(f"related kinds group {number} {list(group)}: name two or more different kinds")
            for kind in group:
                if kind in seen:
                    raise ValueError(f"kind {kind!r} is in related kinds groups {seen[kind]} and {number}; one only")
                seen[kind] = number
        if not 0 <= self.near <= 2:
            raise ValueError(f"near must be between 0 and 2 (a fraction of a box's size); got {self.near}")

    def group(self, kind: str) -> tuple[str, ...]:
        """The kinds one problem of `kind` may be filed as: its group, or the kind alone."""
        return next((group for group in self.groups if kind in group), (kind,))

    def outranks(self, kind: str, other: str) -> bool:
        """True when `kind` comes before `other` in their group (so a case of `other` takes `kind`)."""
        group = self.group(kind)
        return other in group and group.index(kind) < group.index(other)


NO_RELATED = RelatedKinds()
"""Every kind on its own: a case only ever matches sightings of its own kind."""


def _same_spot(sighting: Place) -> list[sa.ColumnElement[bool]]:
    """Cases of the sighting's camera, preset and zone."""
    preset = sighting.preset_id
    return [
        CaseRow.camera_id == sighting.camera_id,
        CaseRow.preset_id.is_(None) if preset is None else CaseRow.preset_id == preset,
        CaseRow.zone == sighting.zone,
    ]


def match_score(row: CaseRow, sighting: Place, min_iou: float, related: RelatedKinds) -> tuple[int, float] | None:
    """How well the sighting matches the case, or None if it does not; higher is better.

    A case is matched by its first box (where it was filed as its kind) and its last box (where it was seen
    last), the better of the two: the last box alone follows the sightings, and two cases of one place can
    drift into each other's way. The same kind matches by IoU >= `min_iou`; a related kind by `box_closeness`.
    A case of the sighting's own kind always ranks before a related one.
    """
    boxes = (row.first_box, row.box)
    if row.kind == sighting.kind:
        iou = max(box_iou(box, sighting.box) for box in boxes)
        return (1, iou) if iou >= min_iou else None
    if row.kind not in related.group(sighting.kind):
        return None
    closeness = max(box_closeness(box, sighting.box, related.near) for box in boxes)
    return (0, closeness) if closeness > 0 else None


def best_open_match(
    session: Session, sighting: Place, min_iou: float, related: RelatedKinds = NO_RELATED, *, lock: bool = False
) -> CaseRow | None:
    """The open case of the sighting's camera, preset and zone that it matches best (`match_score`), or None.

    `lock`: lock the candidate rows until the transaction ends (PostgreSQL `FOR UPDATE`; SQLite's write lock
    already serialises writers), so a reviewer's decision committed meanwhile is seen, not overwritten."""
    query = sa.select(CaseRow).where(
        *_same_spot(sighting), CaseRow.kind.in_(related.group(sighting.kind)), CaseRow.state.not_in(_CLOSED)
    )
    if lock:
        query = query.with_for_update()
    best: CaseRow | None = None
    best_score: tuple[int, float] | None = None
    # Few open cases share a camera, zone and kind group, so the overlap is scored here rather than in SQL.
    for row in session.scalars(query.order_by(CaseRow.id)):
        score = match_score(row, sighting, min_iou, related)
        if score is not None and (best_score is None or score > best_score):
            best, best_score = row, score
    return best


def recently_closed_match(
    session: Session,
    sighting: Place,
    min_iou: float,
    closed_after: datetime,
    related: RelatedKinds = NO_RELATED,
) -> CaseRow | None:
    """The same problem's case (its kind or a related one) closed or rejected after `closed_after`, if any (the
    re-filing cooldown)."""
    query = sa.select(CaseRow).where(
        *_same_spot(sighting),
        CaseRow.kind.in_(related.group(sighting.kind)),
        CaseRow.state.in_(_CLOSED),
        CaseRow.closed_at >= closed_after,
    )
    for row in session.scalars(query.order_by(CaseRow.closed_at.desc())):
        if match_score(row, sighting, min_iou, related) is not None:
            return row
    return None
