"""Writing an observation: a new case row, or attaching to an open one (of its kind or a related one), its audit
lines and evidence rows."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from citywatch.cases.db import AuditRow, CaseRow, EvidenceRow
from citywatch.cases.lifecycle import LifecyclePolicy, State
from citywatch.cases.queries import RelatedKinds
from citywatch.cases.records import EvidenceDraft, Observation, Sighting, field_values

AUTO_FILED = State.AUTO_FILED.value
FILE_ACTION = "file"
CORRECT_KIND = "correct_kind"
SYSTEM_ACTOR = "system:filing"
"""The audit log's actor for changes the filer makes by itself (a related kind taking precedence); the colon keeps
it apart from every username, as the filer's `<source>:<camera>` actors are."""
# What a case of a related kind takes from the sighting that outranks it (place and times stay the case's).
_WHAT_IT_IS = ("kind", "code", "rule", "class_name", "confidence", "box", "model_version")

KeyFor = Callable[[int, EvidenceDraft], str]


def problem_lock_key(observation: Observation, related: RelatedKinds) -> int:
    """A signed 64-bit advisory-lock key for one problem (camera, preset, zone, and the kind's related group)."""
    place = (observation.camera_id, observation.preset_id or "", observation.zone)
    name = "\x1f".join((*place, *related.group(observation.kind)))
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big", signed=True)


def new_case_row(observation: Observation, now: datetime, policy: LifecyclePolicy) -> CaseRow:
    return CaseRow(
        **field_values(observation, Sighting),
        first_box=observation.box,
        also_seen_kinds=(),
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


def attach_related(
    session: Session, row: CaseRow, observation: Observation, now: datetime, related: RelatedKinds
) -> AuditRow | None:
    """Attach a sighting of a kind related to the case's (one problem, see `RelatedKinds`).

    If the sighting's kind outranks the case's and no person has acted on the case yet, the case becomes the
    sighting's kind (its code, rule, class, zone, confidence and box with it) and keeps the old kind in
    `also_seen_kinds`: the returned audit line records the change as the system's `correct_kind`. Otherwise the
    case stays as it is and the sighting's kind is added to `also_seen_kinds`; its box does not move the case's.
    """
    kept, kept_code = row.kind, row.code
    promote = related.outranks(observation.kind, row.kind) and not _acted_on_by_a_person(session, row)
    if promote:
        for name in _WHAT_IT_IS:
            setattr(row, name, getattr(observation, name))
        row.first_box = observation.box
    other = kept if promote else observation.kind
    if other != row.kind and other not in row.also_seen_kinds:
        row.also_seen_kinds = (*row.also_seen_kinds, other)
    row.first_seen = min(row.first_seen, observation.first_seen)
    row.last_seen = max(row.last_seen, observation.last_seen)
    row.observations += 1
    row.updated_at = now
    if not promote:
        return None
    details = {"old_kind": kept, "old_code": kept_code, "kind": row.kind, "code": row.code}
    return AuditRow(
        case_id=row.id,
        at=now,
        actor=SYSTEM_ACTOR,
        action=CORRECT_KIND,
        from_state=row.state,
        to_state=row.state,
        comment=f"{row.kind} seen at the same place; it takes precedence over {kept} (filing → related_kinds)",
        details=json.dumps(details, ensure_ascii=False),
    )


def _acted_on_by_a_person(session: Session, row: CaseRow) -> bool:
    """Whether anyone but the filer has written on the case's audit log (reviewed, corrected, commented)."""
    query = sa.select(AuditRow.id).where(
        AuditRow.case_id == row.id, AuditRow.action != FILE_ACTION, AuditRow.actor != SYSTEM_ACTOR
    )
    return session.scalars(query.limit(1)).first() is not None


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
