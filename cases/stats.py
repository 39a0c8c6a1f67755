"""What the review page's dashboard counts: cases filed in a period, cases by state, review outcomes (the field
precision of each kind and model), and each case's latest pictures.

Counting is done in Python over one query of the rows concerned: a city files hundreds of cases a day, not
millions, and it keeps SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from citywatch.cases.db import AuditRow, CaseRow, EvidenceRow
from citywatch.cases.lifecycle import Action
from citywatch.cases.store import CaseStore
from citywatch.cases.workflow import CORRECT_KIND

_DECISIONS = (Action.CONFIRM.value, Action.REJECT.value, Action.UNDO.value, CORRECT_KIND)


@dataclass(frozen=True)
class Filed:
    """One filed case, as the per-day charts count it."""

    created_at: datetime
    kind: str
    camera_id: str


@dataclass(frozen=True)
class Outcomes:
    """How the review decisions that stand turned out, for one kind or model version."""

    confirmed: int = 0
    """Confirmed as filed."""
    rejected: int = 0
    corrected: int = 0
    """Confirmed after its kind was corrected: counts against the detector, like a rejection."""

    @property
    def decided(self) -> int:
        return self.confirmed + self.rejected + self.corrected

    @property
    def confirmed_rate(self) -> float | None:
        return self.confirmed / self.decided if self.decided else None


@dataclass(frozen=True)
class ReviewOutcomes:
    by_kind: dict[str, Outcomes]
    """By the kind as filed (the detector's claim), not as corrected."""
    by_model: dict[str, Outcomes]
    """By model version; "(none)" for cases filed without one."""


class CaseStats:
    """Read-only counts over the cases of one store."""

    def __init__(self, store: CaseStore) -> None:
        self.store = store

    def filed_since(self, since: datetime) -> list[Filed]:
        query = sa.select(CaseRow.created_at, CaseRow.kind, CaseRow.camera_id).where(CaseRow.created_at >= since)
        with self.store.reading() as session:
            return [Filed(at, kind, camera) for at, kind, camera in session.execute(query)]

    def by_state(self) -> dict[str, int]:
        query = sa.select(CaseRow.state, sa.func.count()).group_by(CaseRow.state)
        with self.store.reading() as session:
            return {state: int(count) for state, count in session.execute(query)}

    def pending_uploads(self) -> int:
        """Evidence objects filed but not yet in the object store: what waits in the spools (every replica's)."""
        query = sa.select(sa.func.count()).select_from(EvidenceRow).where(EvidenceRow.uploaded.is_(False))
        with self.store.reading() as session:
            return int(session.scalar(query) or 0)

    def latest_evidence(self, case_ids: Collection[int], roles: Iterable[str]) -> dict[int, dict[str, str]]:
        """Per case, the key of each of `roles` in its newest uploaded evidence set that has that role."""
        query = (
            sa.select(EvidenceRow.case_id, EvidenceRow.role, EvidenceRow.key)
            .where(EvidenceRow.case_id.in_(case_ids), EvidenceRow.role.in_(list(roles)), EvidenceRow.uploaded)
            .order_by(EvidenceRow.captured_at, EvidenceRow.id)
        )
        latest: dict[int, dict[str, str]] = defaultdict(dict)
        with self.store.reading() as session:
            for case_id, role, key in session.execute(query):  # later sets overwrite earlier ones
                latest[case_id][role] = key
        return dict(latest)

    def review_outcomes(self) -> ReviewOutcomes:
        """Per case, the review decision that stands (an undo cancels the one before it) and whether its kind
        was corrected; counted by the kind as filed and by model version."""
        lines = sa.select(AuditRow.case_id, AuditRow.action, AuditRow.details).where(AuditRow.action.in_(_DECISIONS))
        with self.store.reading() as session:
            cases = {row.id: row for row in session.execute(sa.select(CaseRow.id, CaseRow.kind, CaseRow.model_version))}
            audit = session.execute(lines.order_by(AuditRow.id)).all()
        decision: dict[int, str | None] = {}
        filed_kind: dict[int, str] = {}
        corrected: set[int] = set()
        for case_id, action, details in audit:
            if action == CORRECT_KIND:
                corrected.add(case_id)
                filed_kind.setdefault(case_id, str(_json_object(details).get("old_kind", "")))
            elif action == Action.UNDO.value:
                decision[case_id] = None
            else:
                decision[case_id] = action
        by_kind: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        by_model: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for case_id, made in decision.items():
            if made is None or case_id not in cases:
                continue
            if made == Action.REJECT.value:
                outcome = "rejected"
            else:
                outcome = "corrected" if case_id in corrected else "confirmed"
            row = cases[case_id]
            by_kind[filed_kind.get(case_id) or row.kind][outcome] += 1
            by_model[row.model_version or "(none)"][outcome] += 1
        return ReviewOutcomes(
            by_kind={key: Outcomes(**counts) for key, counts in sorted(by_kind.items())},
            by_model={key: Outcomes(**counts) for key, counts in sorted(by_model.items())},
        )


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
