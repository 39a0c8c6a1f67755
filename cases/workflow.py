"""Moving cases through the workflow in SQL: lifecycle actions, kind corrections and comments, each audited.

Every change and its audit line are written in one transaction, and the case row is locked first (SQLite's
write lock, `SELECT ... FOR UPDATE` on PostgreSQL), so two inspectors acting at once are serialised and the
second one is checked against the state the first one left.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from citywatch.cases.db import AuditRow, CaseRow
from citywatch.cases.lifecycle import (
    CLOSED_STATES,
    INSPECTORS,
    UNDO_WINDOW,
    Action,
    LifecycleError,
    NotPermitted,
    Role,
    State,
    UndoRefused,
    transition_for,
)
from citywatch.cases.observations import CORRECT_KIND
from citywatch.cases.records import NOT_SHOWN, CaseRecord, from_row
from citywatch.cases.store import CaseStore

COMMENT = "comment"
_MAX_COMMENT = 4000


class CaseNotFound(LookupError):
    """No case with this id."""


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    id: int
    case_id: Annotated[int, NOT_SHOWN]
    at: datetime
    actor: str
    action: str
    from_state: str | None
    to_state: str | None
    comment: str
    details: dict[str, Any]


class CaseWorkflow:
    """Lifecycle actions on the cases of one store."""

    def __init__(self, store: CaseStore) -> None:
        self.store = store

    def act(
        self,
        case_id: int,
        action: Action,
        *,
        actor: str,
        role: Role,
        comment: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> CaseRecord:
        """Take `action` on the case; raises CaseNotFound or a LifecycleError saying why not.

        `details` go into the audit line (a dispatch's target department). `undo` is checked against the case's
        last audit line: the caller's own confirm or reject, at most `UNDO_WINDOW` old.
        """
        comment = _clean_comment(comment)
        with self.store.writing() as session:
            row = _locked_case(session, case_id)
            transition = transition_for(row.state, action, role, comment)
            now = self.store.now()
            recorded = dict(details or {})
            if action is Action.UNDO:
                recorded["undoes"] = _undoable_line(session, row, actor, now)
            source = row.state
            row.state = transition.target.value
            row.state_changed_at = now
            row.updated_at = now
            row.due_at = self.store.policy.due_at(transition.target, now)
            row.closed_at = now if transition.target in CLOSED_STATES else None
            if action is Action.DISPATCH and recorded.get("target"):
                row.department = str(recorded["target"])
            session.add(_audit(row.id, now, actor, action.value, source, row.state, comment, recorded))
        return self._get(case_id)

    def correct_kind(
        self, case_id: int, *, kind: str, code: str, actor: str, role: Role, comment: str = ""
    ) -> CaseRecord:
        """Change what the case is about (the detector saw a truck, it was a stall). Not on closed cases."""
        comment = _clean_comment(comment)
        _require(role, "correct the kind of")
        with self.store.writing() as session:
            row = _locked_case(session, case_id)
            if row.state in CLOSED_STATES:
                raise LifecycleError(f"case {case_id} is {row.state}: reopen it before correcting its kind")
            if row.kind == kind:
                raise LifecycleError(f"case {case_id} already has kind {kind!r}")
            details = {"old_kind": row.kind, "old_code": row.code, "kind": kind, "code": code}
            row.kind, row.code = kind, code
            row.updated_at = self.store.now()
            session.add(_audit(row.id, row.updated_at, actor, CORRECT_KIND, row.state, row.state, comment, details))
        return self._get(case_id)

    def comment(self, case_id: int, *, text: str, actor: str, role: Role) -> AuditEntry:
        text = _clean_comment(text)
        if not text:
            raise LifecycleError("a comment needs some text")
        _require(role, "comment on")
        with self.store.writing() as session:
            row = _locked_case(session, case_id)
            entry = _audit(row.id, self.store.now(), actor, COMMENT, row.state, row.state, text)
            session.add(entry)
            session.flush()
            return _entry(entry)

    def audit_log(self, case_id: int) -> list[AuditEntry]:
        """The case's history, oldest first."""
        query = sa.select(AuditRow).where(AuditRow.case_id == case_id).order_by(AuditRow.id)
        with self.store.reading() as session:
            return [_entry(row) for row in session.scalars(query)]

    def _get(self, case_id: int) -> CaseRecord:
        case = self.store.get_case(case_id)
        if case is None:  # cases are never deleted; only a broken database gets here
            raise CaseNotFound(f"no case {case_id}")
        return case


def _require(role: Role, what: str) -> None:
    if role not in INSPECTORS:
        raise NotPermitted(f"role {role} may not {what} a case (roles that may: {', '.join(sorted(INSPECTORS))})")


class _Line(Protocol):
    """An audit line as a row or an `AuditEntry`: what an undo is checked against."""

    @property
    def at(self) -> datetime: ...

    @property
    def actor(self) -> str: ...

    @property
    def action(self) -> str: ...

    @property
    def to_state(self) -> str | None: ...


def undo_refusal(case_id: int, state: str, last: _Line | None, actor: str, now: datetime) -> str | None:
    """Why `actor` may not undo on the case now (its last audit line is `last`), or None if they may."""
    reviewed = (Action.CONFIRM.value, Action.REJECT.value)
    if last is None or last.action not in reviewed or last.to_state != state:
        return f"case {case_id}: its last change is not a confirm or reject, so there is nothing to undo"
    if last.actor != actor:
        return f"case {case_id} was {last.to_state} by {last.actor}; only they may undo it"
    if now - last.at > UNDO_WINDOW:
        return f"case {case_id} was {last.to_state} more than {UNDO_WINDOW} ago; a supervisor can reopen it instead"
    return None


def _undoable_line(session: Session, row: CaseRow, actor: str, now: datetime) -> int:
    """The id of the audit line an undo takes back, or UndoRefused saying why there is none."""
    last = session.scalars(
        sa.select(AuditRow).where(AuditRow.case_id == row.id).order_by(AuditRow.id.desc()).limit(1)
    ).one_or_none()
    refusal = undo_refusal(row.id, row.state, last, actor, now)
    if refusal is not None or last is None:
        raise UndoRefused(refusal)
    return last.id


def _clean_comment(text: str) -> str:
    text = text.strip()
    if len(text) > _MAX_COMMENT:
        raise LifecycleError(f"comment is {len(text)} characters; at most {_MAX_COMMENT}")
    return text


def _locked_case(session: Session, case_id: int) -> CaseRow:
    row = session.scalars(sa.select(CaseRow).where(CaseRow.id == case_id).with_for_update()).one_or_none()
    if row is None:
        raise CaseNotFound(f"no case {case_id}")
    return row


def _audit(
    case_id: int,
    at: datetime,
    actor: str,
    action: str,
    from_state: str | None,
    to_state: str | None,
    comment: str,
    details: dict[str, Any] | None = None,
) -> AuditRow:
    return AuditRow(
        case_id=case_id,
        at=at,
        actor=actor,
        action=action,
        from_state=from_state,
        to_state=to_state,
        comment=comment,
        details=json.dumps(details or {}, ensure_ascii=False),
    )


def _entry(row: AuditRow) -> AuditEntry:
    try:
        details = json.loads(row.details or "{}")
    except ValueError:
        details = {"raw": row.details}
    return from_row(AuditEntry, row, details=details if isinstance(details, dict) else {"value": details})


__all__ = ["COMMENT", "CORRECT_KIND", "AuditEntry", "CaseNotFound", "CaseWorkflow", "State"]
