"""Writing an observation: a new case row, or attaching to an open one, its audit "file" line and evidence rows."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from citywatch.cases.db import AuditRow, CaseRow, EvidenceRow
from citywatch.cases.lifecycle import LifecyclePolicy, State
from citywatch.cases.records import EvidenceDraft, Observation, Sighting, field_values

AUTO_FILED = State.AUTO_FILED.value
FILE_ACTION = "file"

KeyFor = Callable[[int, EvidenceDraft], str]


def problem_lock_key(observation: Observation) -> int:
    """A signed 64-bit advisory-lock key for one problem (camera, preset, zone, kind)."""
    name = "\x1f".join((observation.camera_id, observation.preset_id or "", observation.zone, observation.kind))
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big", signed=True)


def new_case_row(observation: Observation, now: datetime, policy: LifecyclePolicy) -> CaseRow:
    return CaseRow(
        **field_values(observation, Sighting),
        state=AUTO_FILED,
        created_at=now,
        updated_at=now,
        observations=1,
        state_changed_at=now,
        due_at=policy.due_at(AUTO_FILED, now),
        closed_at=None,
    )


def filed_audit_row(row: CaseRow, observation: Observation, now: datetime) -> AuditRow:
    details = {"rule": observation.rule, "kind": observation.kind, "code": observation.code, **observation.details}
    return AuditRow(
        case_id=row.id,
        at=now,
        actor=f"{observation.source}:{observation.camera_id}",
        action=FILE_ACTION,
        from_state=None,
        to_state=row.state,
        comment="",
        details=json.dumps(details, ensure_ascii=False, default=str),
    )


def attach(row: CaseRow, observation: Observation, now: datetime) -> None:
    # Replicas may file out of order: the box follows the latest sighting, the times only widen.
    if observation.last_seen >= row.last_seen:
        row.box = observation.box
        row.last_seen = observation.last_seen
    row.first_seen = min(row.first_seen, observation.first_seen)
    row.confidence = max(row.confidence, observation.confidence)
    row.observations += 1
    row.updated_at = now


def evidence_due(row: CaseRow, seen: datetime, every: timedelta) -> bool:
    if not row.evidence:
        return True
    newest = max(e.captured_at for e in row.evidence)
    return seen - newest >= every


def add_evidence_rows(
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
        row = EvidenceRow(**field_values(draft), key=key, uploaded=False, captured_at=captured_at, created_at=now)
        case.evidence.append(row)
        rows.append(row)
    session.flush()
    return rows
