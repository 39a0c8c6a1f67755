"""The case store: cases and their evidence rows in SQL (SQLite by default, any SQLAlchemy URL works).

Several processes (Ray replicas) may write one SQLite file. Each connection runs in WAL mode with a busy
timeout, and every write transaction starts with `BEGIN IMMEDIATE`, which takes SQLite's single write lock
up front: a write then waits its turn (up to the busy timeout) instead of failing when it upgrades a read
lock, and find-then-create in `record_observation` is atomic across processes. On PostgreSQL the same
guarantee comes from a transaction-scoped advisory lock keyed on camera, preset, zone and kind.

The schema comes from the Alembic migrations (`cases/migrate.py`), run by `from_url`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, selectinload, sessionmaker

from citywatch.cases.db import AuditRow, CaseRow, EvidenceRow
from citywatch.cases.lifecycle import CLOSED_STATES, LifecyclePolicy, State
from citywatch.cases.migrate import upgrade

Box = tuple[float, float, float, float]

AUTO_FILED = State.AUTO_FILED.value
FILE_ACTION = "file"
# Plain strings for SQL parameters (the enum members are str subclasses some drivers would not adapt).
_CLOSED = tuple(sorted(state.value for state in CLOSED_STATES))

_BUSY_TIMEOUT_MS = 15_000
_WRITE_OPTION = "citywatch_write"


@dataclass(frozen=True)
class EvidenceRecord:
    role: str
    key: str
    sha256: str
    size: int
    content_type: str
    uploaded: bool
    created_at: datetime
    captured_at: datetime
    """When the pictured frame was taken; the roles of one evidence set share it."""
    case_id: int | None = None


@dataclass(frozen=True)
class CaseRecord:
    id: int
    kind: str
    code: str
    state: str
    camera_id: str
    preset_id: str | None
    zone: str
    rule: str
    class_name: str
    confidence: float
    box: Box
    first_seen: datetime
    last_seen: datetime
    created_at: datetime
    observations: int
    model_version: str
    evidence: tuple[EvidenceRecord, ...]
    updated_at: datetime | None = None
    state_changed_at: datetime | None = None
    due_at: datetime | None = None
    """When the current stage's time limit runs out; None if it has none."""
    closed_at: datetime | None = None
    source: str = "camera"
    """camera, or device (camera_id then holds the device id)."""
    location: tuple[float, float] | None = None
    """[latitude, longitude] recorded with the case (device events); camera cases take the camera's."""
    department: str | None = None
    """The grid or department the case was last dispatched to."""


@dataclass(frozen=True)
class Observation:
    """One sighting of a problem, as the store needs it (the filer builds it from a Violation)."""

    kind: str
    code: str
    camera_id: str
    preset_id: str | None
    zone: str
    rule: str
    class_name: str
    confidence: float
    box: Box
    first_seen: datetime
    last_seen: datetime
    model_version: str = ""
    source: str = "camera"
    location: tuple[float, float] | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    """Recorded in the audit log's "file" line when this observation creates a case (a device's reading)."""


@dataclass(frozen=True)
class EvidenceDraft:
    """An evidence object about to be stored: everything but its key, which needs the case id."""

    role: str
    sha256: str
    size: int
    content_type: str


@dataclass(frozen=True)
class ObservationOutcome:
    case_id: int
    created: bool
    evidence: tuple[EvidenceRecord, ...]
    """The evidence rows written by this call (empty when an attach kept the case's existing evidence)."""
    suppressed: bool = False
    """True: no case was filed because the same problem's case was closed within the cooldown (case_id is
    that closed case)."""


KeyFor = Callable[[int, EvidenceDraft], str]


class CaseStoreError(RuntimeError):
    """The case store was used wrongly (for example a naive timestamp); database errors pass through."""


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two xyxy boxes; 0 when they do not overlap."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else 0.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class CaseStore:
    def __init__(
        self,
        engine: sa.Engine,
        *,
        clock: Callable[[], datetime] = _utc_now,
        policy: LifecyclePolicy | None = None,
    ) -> None:
        """Wrap `engine`. SQLite engines get WAL, a busy timeout and BEGIN IMMEDIATE for writes: pass an
        engine with no open connections (as `create_engine` returns it) so every pooled connection is set up.
        """
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine)
        self.engine = engine
        self.policy = policy or LifecyclePolicy()
        self._clock = clock
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(engine.execution_options(**{_WRITE_OPTION: True}), expire_on_commit=False)
        # One writer at a time per process: threads wait here rather than spinning on SQLite's busy handler.
        self._write_lock = threading.Lock()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        clock: Callable[[], datetime] = _utc_now,
        policy: LifecyclePolicy | None = None,
        pool_size: int = 10,
    ) -> CaseStore:
        """Open the database at `url` and migrate it to the newest schema; a SQLite file's folder is created."""
        parsed = sa.make_url(url)
        folder = _sqlite_folder(parsed)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {}
        if parsed.get_backend_name() == "postgresql":
            # pre_ping: a server restart must not hand out dead connections to the next request.
            options = {"pool_size": pool_size, "max_overflow": pool_size, "pool_pre_ping": True}
        store = cls(sa.create_engine(parsed, **options), clock=clock, policy=policy)
        store.migrate()
        return store

    def migrate(self) -> None:
        """Upgrade the schema to head (see cases/migrate.py)."""
        # Through the write engine: on SQLite, BEGIN IMMEDIATE makes concurrent first starts take turns.
        with self._write_lock:
            upgrade(self.engine.execution_options(**{_WRITE_OPTION: True}))

    def now(self) -> datetime:
        return self._clock()

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """One write transaction (committed on exit): SQLite's write lock is taken at its start."""
        with self._write_lock, self._write.begin() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    # -- reading ---------------------------------------------------------------------------------------------

    def list_cases(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        camera_id: str | None = None,
        kind: str | None = None,
        state: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        text: str | None = None,
        overdue: bool | None = None,
        department: str | None = None,
        with_evidence: bool = True,
    ) -> list[CaseRecord]:
        """Cases newest first (by creation), with their evidence unless `with_evidence` is False.

        `since`/`until`: creation time range [since, until). `text`: a case-insensitive substring of the kind,
        code, camera, zone, rule or class. `overdue`: only cases past (or within) their stage's time limit.
        `department`: only cases last dispatched there.
        """
        if limit < 0 or offset < 0:
            raise CaseStoreError(f"limit and offset must be >= 0; got limit={limit} offset={offset}")
        clauses = _filters(
            camera_id=camera_id, kind=kind, state=state, since=since, until=until, text=text,
            overdue=overdue, department=department, now=self._clock(),
        )  # fmt: skip
        query = sa.select(CaseRow).where(*clauses).order_by(CaseRow.id.desc()).limit(limit).offset(offset)
        if with_evidence:
            query = query.options(selectinload(CaseRow.evidence))
        with self._read() as session:
            return [_case_record(row, with_evidence=with_evidence) for row in session.scalars(query)]

    def get_case(self, case_id: int) -> CaseRecord | None:
        query = sa.select(CaseRow).where(CaseRow.id == case_id).options(selectinload(CaseRow.evidence))
        with self._read() as session:
            row = session.scalars(query).one_or_none()
            return None if row is None else _case_record(row)

    def count_cases(
        self,
        *,
        camera_id: str | None = None,
        kind: str | None = None,
        state: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        text: str | None = None,
        overdue: bool | None = None,
        department: str | None = None,
    ) -> int:
        clauses = _filters(
            camera_id=camera_id, kind=kind, state=state, since=since, until=until, text=text,
            overdue=overdue, department=department, now=self._clock(),
        )  # fmt: skip
        query = sa.select(sa.func.count()).select_from(CaseRow).where(*clauses)
        with self._read() as session:
            return int(session.scalar(query) or 0)

    def find_open_match(
        self,
        *,
        camera_id: str,
        preset_id: str | None,
        zone: str,
        kind: str,
        box: Box,
        min_iou: float = 0.3,
    ) -> int | None:
        """The open case of this camera, preset, zone and kind whose last box overlaps `box` most (IoU >=
        `min_iou`), or None."""
        with self._read() as session:
            row = _best_open_match(
                session,
                camera_id=camera_id,
                preset_id=preset_id,
                zone=zone,
                kind=kind,
                box=box,
                min_iou=min_iou,
            )
            return None if row is None else row.id

    def pending_evidence(self, *, limit: int = 1000) -> list[EvidenceRecord]:
        """Evidence rows not yet confirmed in the object store, oldest first."""
        query = sa.select(EvidenceRow).where(EvidenceRow.uploaded.is_(False)).order_by(EvidenceRow.id).limit(limit)
        with self._read() as session:
            return [_evidence_record(row) for row in session.scalars(query)]

    # -- writing ---------------------------------------------------------------------------------------------

    def record_observation(
        self,
        observation: Observation,
        evidence: Sequence[EvidenceDraft],
        *,
        key_for: KeyFor,
        min_iou: float = 0.3,
        evidence_every: timedelta = timedelta(minutes=10),
    ) -> ObservationOutcome:
        """Attach `observation` to the best-matching open case, or create a case for it, in one transaction.

        Evidence rows (uploaded=False) are written in the same transaction: all of `evidence` for a new case;
        for an attached case only when its newest evidence set was captured at least `evidence_every` before
        this observation. `key_for(case_id, draft)` names each object.

        When no case is open but the same problem's case was closed or rejected less than the policy's
        cooldown ago, nothing is filed: the outcome is `suppressed` and names that case.

        On SQLite the transaction holds the database's write lock from its start; on PostgreSQL it first takes
        an advisory lock keyed on camera, preset, zone and kind. Either way two processes cannot both miss the
        match and create two cases for one problem. Other databases get only the in-process lock.
        """
        _require_aware(observation.first_seen, observation.last_seen)
        now = self._clock()
        with self._write_lock, self._write.begin() as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(sa.select(sa.func.pg_advisory_xact_lock(_problem_lock_key(observation))))
            row = _best_open_match(
                session,
                camera_id=observation.camera_id,
                preset_id=observation.preset_id,
                zone=observation.zone,
                kind=observation.kind,
                box=observation.box,
                min_iou=min_iou,
            )
            created = row is None
            if row is None:
                recent = _recently_closed_match(session, observation, min_iou, now - self.policy.cooldown)
                if recent is not None:
                    return ObservationOutcome(case_id=recent.id, created=False, evidence=(), suppressed=True)
                row = _new_case_row(observation, now, self.policy)
                session.add(row)
                session.flush()  # assigns row.id, which the evidence keys need
                session.add(_filed_audit_row(row, observation, now))
                wanted: Sequence[EvidenceDraft] = evidence
            else:
                _attach(row, observation, now)
                wanted = evidence if _evidence_due(row, observation.last_seen, evidence_every) else ()
            new_rows = _add_evidence_rows(session, row, wanted, key_for, observation.last_seen, now)
            session.flush()
            return ObservationOutcome(
                case_id=row.id, created=created, evidence=tuple(_evidence_record(e) for e in new_rows)
            )

    def mark_uploaded(self, key: str) -> None:
        """Record that the object under `key` is in the object store (no-op for an unknown key)."""
        self.mark_uploaded_many([key])

    def mark_uploaded_many(self, keys: Iterable[str]) -> int:
        """Mark several keys uploaded in one transaction; returns how many rows changed."""
        key_list = list(keys)
        if not key_list:
            return 0
        statement = (
            sa.update(EvidenceRow)
            .where(EvidenceRow.key.in_(key_list), EvidenceRow.uploaded.is_(False))
            .values(uploaded=True)
        )
        with self._write_lock, self._write.begin() as session:
            result = session.execute(statement)
            return int(getattr(result, "rowcount", 0) or 0)


# -- helpers -------------------------------------------------------------------------------------------------


def _sqlite_folder(url: sa.URL) -> Path | None:
    """The folder of a SQLite database file; None for other databases, in-memory and "file:" URIs."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in {"", ":memory:"} or database.startswith("file:"):
        return None
    return Path(database).parent


def _configure_sqlite(engine: sa.Engine) -> None:
    if not event.contains(engine, "connect", _on_sqlite_connect):
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _on_sqlite_begin)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN itself (see _on_sqlite_begin); sqlite3's own transaction handling only
    # ever emits a deferred BEGIN, and only before DML.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout first: switching to WAL needs a lock another process may hold.
        cursor.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        # Enforcement records: FULL syncs the WAL on every commit, so a power cut loses no filed case.
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _on_sqlite_begin(connection: sa.Connection) -> None:
    mode = "IMMEDIATE" if connection.get_execution_options().get(_WRITE_OPTION) else "DEFERRED"
    connection.exec_driver_sql(f"BEGIN {mode}")


def _require_aware(*values: datetime) -> None:
    for value in values:
        if value.tzinfo is None or value.utcoffset() is None:
            raise CaseStoreError(f"timestamps must be timezone-aware UTC; got naive {value!r}")


def _filters(
    *,
    camera_id: str | None,
    kind: str | None,
    state: str | None,
    since: datetime | None = None,
    until: datetime | None = None,
    text: str | None = None,
    overdue: bool | None = None,
    department: str | None = None,
    now: datetime | None = None,
) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = []
    if camera_id is not None:
        clauses.append(CaseRow.camera_id == camera_id)
    if kind is not None:
        clauses.append(CaseRow.kind == kind)
    if state is not None:
        clauses.append(CaseRow.state == state)
    if department is not None:
        clauses.append(CaseRow.department == department)
    if since is not None:
        _require_aware(since)
        clauses.append(CaseRow.created_at >= since)
    if until is not None:
        _require_aware(until)
        clauses.append(CaseRow.created_at < until)
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        columns = (CaseRow.kind, CaseRow.code, CaseRow.camera_id, CaseRow.zone, CaseRow.rule, CaseRow.class_name)
        clauses.append(sa.or_(*(column.ilike(pattern, escape="\\") for column in columns)))
    if overdue is not None and now is not None:
        late = sa.and_(CaseRow.due_at.is_not(None), CaseRow.due_at <= now)
        clauses.append(late if overdue else sa.not_(late))
    return clauses


def _problem_lock_key(observation: Observation) -> int:
    """A signed 64-bit advisory-lock key for one problem (camera, preset, zone, kind)."""
    name = "\x1f".join((observation.camera_id, observation.preset_id or "", observation.zone, observation.kind))
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big", signed=True)


def _recently_closed_match(
    session: Session, observation: Observation, min_iou: float, closed_after: datetime
) -> CaseRow | None:
    """The same problem's case closed or rejected after `closed_after`, if any (the re-filing cooldown)."""
    preset = observation.preset_id
    query = sa.select(CaseRow).where(
        CaseRow.camera_id == observation.camera_id,
        CaseRow.preset_id.is_(None) if preset is None else CaseRow.preset_id == preset,
        CaseRow.zone == observation.zone,
        CaseRow.kind == observation.kind,
        CaseRow.state.in_(_CLOSED),
        CaseRow.closed_at >= closed_after,
    )
    for row in session.scalars(query.order_by(CaseRow.closed_at.desc())):
        if box_iou(_row_box(row), observation.box) >= min_iou:
            return row
    return None


def _filed_audit_row(row: CaseRow, observation: Observation, now: datetime) -> AuditRow:
    return AuditRow(
        case_id=row.id,
        at=now,
        actor=f"{observation.source}:{observation.camera_id}",
        action=FILE_ACTION,
        from_state=None,
        to_state=row.state,
        comment="",
        details=json.dumps(
            {"rule": observation.rule, "kind": observation.kind, "code": observation.code, **observation.details},
            ensure_ascii=False,
            default=str,
        ),
    )


def _best_open_match(
    session: Session, *, camera_id: str, preset_id: str | None, zone: str, kind: str, box: Box, min_iou: float
) -> CaseRow | None:
    preset_clause = CaseRow.preset_id.is_(None) if preset_id is None else CaseRow.preset_id == preset_id
    query = sa.select(CaseRow).where(
        CaseRow.camera_id == camera_id,
        preset_clause,
        CaseRow.zone == zone,
        CaseRow.kind == kind,
        CaseRow.state.not_in(_CLOSED),
    )
    best: CaseRow | None = None
    best_iou = min_iou
    # Few open cases share a camera, zone and kind, so the overlap is scored here rather than in SQL.
    for row in session.scalars(query):
        iou = box_iou(_row_box(row), box)
        if iou >= best_iou and (best is None or iou > best_iou):
            best, best_iou = row, iou
    return best


def _new_case_row(observation: Observation, now: datetime, policy: LifecyclePolicy) -> CaseRow:
    x1, y1, x2, y2 = observation.box
    latitude, longitude = observation.location if observation.location is not None else (None, None)
    return CaseRow(
        kind=observation.kind,
        code=observation.code,
        state=AUTO_FILED,
        camera_id=observation.camera_id,
        preset_id=observation.preset_id,
        zone=observation.zone,
        rule=observation.rule,
        class_name=observation.class_name,
        confidence=observation.confidence,
        box_x1=x1,
        box_y1=y1,
        box_x2=x2,
        box_y2=y2,
        first_seen=observation.first_seen,
        last_seen=observation.last_seen,
        created_at=now,
        updated_at=now,
        observations=1,
        model_version=observation.model_version,
        source=observation.source,
        state_changed_at=now,
        due_at=policy.due_at(AUTO_FILED, now),
        closed_at=None,
        latitude=latitude,
        longitude=longitude,
    )


def _attach(row: CaseRow, observation: Observation, now: datetime) -> None:
    # Replicas may file out of order: the box follows the latest sighting, the times only widen.
    if observation.last_seen >= row.last_seen:
        row.box_x1, row.box_y1, row.box_x2, row.box_y2 = observation.box
        row.last_seen = observation.last_seen
    row.first_seen = min(row.first_seen, observation.first_seen)
    row.confidence = max(row.confidence, observation.confidence)
    row.observations += 1
    row.updated_at = now


def _evidence_due(row: CaseRow, seen: datetime, every: timedelta) -> bool:
    if not row.evidence:
        return True
    newest = max(e.captured_at for e in row.evidence)
    return seen - newest >= every


def _add_evidence_rows(
    session: Session,
    case: CaseRow,
    drafts: Sequence[EvidenceDraft],
    key_for: KeyFor,
    captured_at: datetime,
    now: datetime,
) -> list[EvidenceRow]:
    known = {e.key for e in case.evidence}
    rows: list[EvidenceRow] = []
    for draft in drafts:
        key = key_for(case.id, draft)
        if key in known:
            continue  # the same bytes for the same role are already recorded for this case
        known.add(key)
        row = EvidenceRow(
            role=draft.role,
            key=key,
            sha256=draft.sha256,
            size=draft.size,
            content_type=draft.content_type,
            uploaded=False,
            captured_at=captured_at,
            created_at=now,
        )
        case.evidence.append(row)
        rows.append(row)
    session.flush()
    return rows


def _row_box(row: CaseRow) -> Box:
    return (row.box_x1, row.box_y1, row.box_x2, row.box_y2)


def _evidence_record(row: EvidenceRow) -> EvidenceRecord:
    return EvidenceRecord(
        role=row.role,
        key=row.key,
        sha256=row.sha256,
        size=row.size,
        content_type=row.content_type,
        uploaded=row.uploaded,
        created_at=row.created_at,
        captured_at=row.captured_at,
        case_id=row.case_id,
    )


def _case_record(row: CaseRow, *, with_evidence: bool = True) -> CaseRecord:
    location = None
    if row.latitude is not None and row.longitude is not None:
        location = (row.latitude, row.longitude)
    return CaseRecord(
        id=row.id,
        kind=row.kind,
        code=row.code,
        state=row.state,
        camera_id=row.camera_id,
        preset_id=row.preset_id,
        zone=row.zone,
        rule=row.rule,
        class_name=row.class_name,
        confidence=row.confidence,
        box=_row_box(row),
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        created_at=row.created_at,
        observations=row.observations,
        model_version=row.model_version,
        evidence=tuple(_evidence_record(e) for e in row.evidence) if with_evidence else (),
        updated_at=row.updated_at,
        state_changed_at=row.state_changed_at,
        due_at=row.due_at,
        closed_at=row.closed_at,
        source=row.source,
        location=location,
        department=row.department,
    )
