"""The case store: cases and their evidence rows in SQL (SQLite by default, any SQLAlchemy URL works).

Writes are serialised so that find-then-create in `record_observation` is atomic across processes: on SQLite
every write transaction takes the database's write lock at its start (`cases/engine.py`); on PostgreSQL
the same guarantee comes from a transaction-scoped advisory lock keyed on camera, preset, zone and kind.

The schema comes from the Alembic migrations (`cases/migrate.py`), run by `from_url`. Records are in
`cases/records.py`, which cases a query selects in `cases/queries.py`, and what a filing writes in
`cases/observations.py`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload, sessionmaker

from citywatch.cases import observations as filed
from citywatch.cases.db import CaseRow, EvidenceRow
from citywatch.cases.engine import WRITE_OPTION, configure_sqlite, create_engine
from citywatch.cases.lifecycle import LifecyclePolicy
from citywatch.cases.migrate import upgrade
from citywatch.cases.observations import AUTO_FILED, FILE_ACTION, KeyFor
from citywatch.cases.queries import (
    ANY_CASE,
    NO_RELATED,
    CaseFilter,
    CaseStoreError,
    RelatedKinds,
    best_open_match,
    recently_closed_match,
    require_aware,
)
from citywatch.cases.records import (
    CaseRecord,
    EvidenceDraft,
    EvidenceRecord,
    Observation,
    ObservationOutcome,
    from_row,
)
from citywatch.vision.boxes import Box, box_iou

__all__ = [
    "AUTO_FILED",
    "FILE_ACTION",
    "Box",
    "CaseFilter",
    "CaseRecord",
    "CaseStore",
    "CaseStoreError",
    "EvidenceDraft",
    "EvidenceRecord",
    "KeyFor",
    "Observation",
    "ObservationOutcome",
    "RelatedKinds",
    "box_iou",
]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Lookup:
    """`find_open_match`'s arguments as a place (see `cases.queries.Place`)."""

    camera_id: str
    preset_id: str | None
    zone: str
    kind: str
    box: Box


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
            configure_sqlite(engine)
        self.engine = engine
        self.policy = policy or LifecyclePolicy()
        self._clock = clock
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False)
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
        migrate: bool = True,
    ) -> CaseStore:
        """Open the database at `url` and migrate it to the newest schema; a SQLite file's folder is created.
        `migrate=False` opens it as it is, creating nothing (a dataset build only reads it)."""
        engine = create_engine(url, pool_size=pool_size, make_folder=migrate)
        store = cls(engine, clock=clock, policy=policy)
        if migrate:
            store.migrate()
        return store

    def migrate(self) -> None:
        """Upgrade the schema to head (see cases/migrate.py)."""
        # Through the write engine: on SQLite, BEGIN IMMEDIATE makes concurrent first starts take turns.
        with self._write_lock:
            upgrade(self.engine.execution_options(**{WRITE_OPTION: True}))

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
        self, where: CaseFilter = ANY_CASE, *, limit: int = 50, offset: int = 0, with_evidence: bool = True
    ) -> list[CaseRecord]:
        """Cases matching `where`, newest first (by creation), with their evidence unless `with_evidence` is
        False."""
        if limit < 0 or offset < 0:
            raise CaseStoreError(f"limit and offset must be >= 0; got limit={limit} offset={offset}")
        query = (
            sa.select(CaseRow)
            .where(*where.clauses(self._clock()))
            .order_by(CaseRow.id.desc())
            .limit(limit)
            .offset(offset)
        )
        if with_evidence:
            query = query.options(selectinload(CaseRow.evidence))
        with self._read() as session:
            return [_case_record(row, with_evidence=with_evidence) for row in session.scalars(query)]

    def count_cases(self, where: CaseFilter = ANY_CASE) -> int:
        query = sa.select(sa.func.count()).select_from(CaseRow).where(*where.clauses(self._clock()))
        with self._read() as session:
            return int(session.scalar(query) or 0)

    def get_case(self, case_id: int) -> CaseRecord | None:
        query = sa.select(CaseRow).where(CaseRow.id == case_id).options(selectinload(CaseRow.evidence))
        with self._read() as session:
            row = session.scalars(query).one_or_none()
            return None if row is None else _case_record(row)

    def find_open_match(
        self,
        *,
        camera_id: str,
        preset_id: str | None,
        zone: str,
        kind: str,
        box: Box,
        min_iou: float = 0.3,
        related: RelatedKinds = NO_RELATED,
    ) -> int | None:
        """The open case of this camera, preset and zone that a sighting of `kind` at `box` would be attached to
        (`cases.queries.match_score`), or None."""
        with self._read() as session:
            row = best_open_match(session, _Lookup(camera_id, preset_id, zone, kind, box), min_iou, related)
            return None if row is None else row.id

    def pending_evidence(self, *, limit: int = 1000) -> list[EvidenceRecord]:
        """Evidence rows not yet confirmed in the object store, oldest first."""
        query = sa.select(EvidenceRow).where(EvidenceRow.uploaded.is_(False)).order_by(EvidenceRow.id).limit(limit)
        with self._read() as session:
            return [from_row(EvidenceRecord, row) for row in session.scalars(query)]

    # -- writing ---------------------------------------------------------------------------------------------

    def record_observation(
        self,
        observation: Observation,
        evidence: Sequence[EvidenceDraft],
        *,
        key_for: KeyFor,
        min_iou: float = 0.3,
        evidence_every: timedelta = timedelta(minutes=10),
        related: RelatedKinds = NO_RELATED,
    ) -> ObservationOutcome:
        """Attach `observation` to the best-matching open case, or create a case for it, in one transaction.

        The match is `cases.queries.best_open_match`: a case of its kind by box IoU >= `min_iou`, else one of
        a kind `related` to it whose box is close (`observations.attach_related` then decides the case's kind).

        Evidence rows (uploaded=False) are written in the same transaction: all of `evidence` for a new case
        and for a case that has just taken the observation's kind; for a case of its kind only when its newest
        evidence set was captured at least `evidence_every` before this observation; none for a case that
        keeps another kind (its pictures stay those of its kind). `key_for(case_id, draft)` names each object.

        When no case is open but the same problem's case (of its kind or a related one) was closed or rejected
        less than the policy's cooldown ago, nothing is filed: the outcome is `suppressed` and names that case.

        On SQLite the transaction holds the database's write lock from its start; on PostgreSQL it first takes
        an advisory lock keyed on camera, preset, zone and the kind's related group. Either way two processes
        cannot both miss the match and create two cases for one problem. Other databases get only the
        in-process lock.
        """
        require_aware(observation.first_seen, observation.last_seen)
        now = self._clock()
        with self._write_lock, self._write.begin() as session:
            if session.get_bind().dialect.name == "postgresql":
                lock = filed.problem_lock_key(observation, related)
                session.execute(sa.select(sa.func.pg_advisory_xact_lock(lock)))
            row = best_open_match(session, observation, min_iou, related, lock=True)
            created = row is None
            if row is None:
                closed_after = now - self.policy.cooldown
                recent = recently_closed_match(session, observation, min_iou, closed_after, related)
                if recent is not None:
                    return ObservationOutcome(case_id=recent.id, created=False, evidence=(), suppressed=True)
                row = filed.new_case_row(observation, now, self.policy)
                session.add(row)
                session.flush()  # assigns row.id, which the evidence keys need
                session.add(filed.filed_audit_row(row, observation, now))
                wanted: Sequence[EvidenceDraft] = evidence
            elif row.kind == observation.kind:
                filed.attach(row, observation, now)
                wanted = evidence if filed.evidence_due(row, observation.last_seen, evidence_every) else ()
            else:
                change = filed.attach_related(session, row, observation, now, related)
                if change is not None:
                    session.add(change)
                wanted = evidence if row.kind == observation.kind else ()
            new_rows = filed.add_evidence_rows(session, row, wanted, key_for, observation.last_seen, now)
            session.flush()
            return ObservationOutcome(
                case_id=row.id, created=created, evidence=tuple(from_row(EvidenceRecord, e) for e in new_rows)
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


def _case_record(row: CaseRow, *, with_evidence: bool = True) -> CaseRecord:
    evidence = tuple(from_row(EvidenceRecord, e) for e in row.evidence) if with_evidence else ()
    return from_row(CaseRecord, row, evidence=evidence)
