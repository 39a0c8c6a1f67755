"""Filing: a violation becomes a new case or one more observation of an open case, with its evidence in S3.

Order of work for one violation:
1. hash the evidence (cheap) so the database rows can name each object before anything is uploaded;
2. one short database transaction finds the open case or creates one and writes the evidence rows
   (uploaded=False) with the case;
3. upload outside the transaction; evidence the store will not take goes to the durable spool, and
   `drain_spool` uploads it later and flips the rows to uploaded.
The database never waits on the network, and a case is filed even while the object store is down.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from citywatch.cases.evidence import EvidenceStore, EvidenceStoreDown, StoredObject, sha256_hex
from citywatch.cases.spool import EvidenceSpool
from citywatch.cases.store import CaseStore, EvidenceDraft, EvidenceRecord, Observation
from citywatch.vision.violation import Violation

log = logging.getLogger(__name__)

_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "application/json": "json",
    "video/mp4": "mp4",
}
# Roles become part of object keys: keep them to one plain path segment.
_ROLE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class FilingError(ValueError):
    """The violation or its evidence cannot be filed as given."""


@dataclass(frozen=True)
class FilingResult:
    case_id: int
    created: bool
    """False: the violation was attached to an open case."""
    evidence_pending: int
    """Evidence objects of this filing left in the spool because the object store was down."""


def evidence_key(case_id: int, captured_at: datetime, role: str, sha256: str, content_type: str) -> str:
    """`cases/YYYY/MM/DD/<case_id>/<role>-<sha256[:12]>.<ext>`, dated by the frame's UTC day.

    The hash prefix makes the key change with the bytes, so a later evidence set never collides with an
    earlier one, while re-filing the same bytes lands on the same key.
    """
    day = captured_at.astimezone(UTC)
    extension = _EXTENSIONS.get(content_type, "bin")
    return f"cases/{day:%Y/%m/%d}/{case_id}/{role}-{sha256[:12]}.{extension}"


def observation_from(violation: Violation) -> Observation:
    x1, y1, x2, y2 = violation.box
    return Observation(
        kind=violation.kind,
        code=violation.code,
        camera_id=violation.camera_id,
        preset_id=violation.preset_id,
        zone=violation.zone,
        rule=violation.rule,
        class_name=violation.class_name,
        # Rules may hand numpy scalars; the database wants plain floats.
        confidence=float(violation.confidence),
        box=(float(x1), float(y1), float(x2), float(y2)),
        first_seen=violation.first_seen,
        last_seen=violation.last_seen,
        model_version=violation.model_version,
    )


class CaseFiler:
    def __init__(
        self,
        store: CaseStore,
        evidence: EvidenceStore,
        spool: EvidenceSpool,
        *,
        evidence_every: timedelta = timedelta(minutes=10),
        min_iou: float = 0.3,
        retry_store_after: timedelta = timedelta(seconds=30),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`evidence_every`: an attached case gets a new evidence set at most this often (frame time).
        `retry_store_after`: once an upload fails, filings spool directly for this long instead of each
        waiting for a dead store to time out; `drain_spool` always tries the store."""
        self._store = store
        self._evidence = evidence
        self._spool = spool
        self._evidence_every = evidence_every
        self._min_iou = min_iou
        self._retry_after = retry_store_after.total_seconds()
        self._monotonic = monotonic
        self._store_down_until = float("-inf")

    def file(self, violation: Violation, images: Mapping[str, tuple[bytes, str]]) -> FilingResult:
        """File `violation` with its evidence by role, e.g. {"annotated": (jpeg, "image/jpeg"), ...}."""
        payloads: dict[str, bytes] = {}
        drafts: list[EvidenceDraft] = []
        for role, (data, content_type) in images.items():
            if not _ROLE.match(role):
                raise FilingError(f"evidence role {role!r} must match {_ROLE.pattern}")
            payloads[role] = data
            drafts.append(EvidenceDraft(role=role, sha256=sha256_hex(data), size=len(data), content_type=content_type))

        captured_at = violation.last_seen

        def key_for(case_id: int, draft: EvidenceDraft) -> str:
            return evidence_key(case_id, captured_at, draft.role, draft.sha256, draft.content_type)

        outcome = self._store.record_observation(
            observation_from(violation),
            drafts,
            key_for=key_for,
            min_iou=self._min_iou,
            evidence_every=self._evidence_every,
        )
        pending = self._upload(outcome.case_id, violation, outcome.evidence, payloads)
        return FilingResult(case_id=outcome.case_id, created=outcome.created, evidence_pending=pending)

    def drain_spool(self) -> int:
        """Upload spooled evidence and mark it uploaded; returns how many objects went up."""

        def mark(stored: StoredObject) -> None:
            self._store.mark_uploaded(stored.key)

        uploaded = self._spool.drain(self._evidence, on_uploaded=mark)
        if uploaded:
            self._store_down_until = float("-inf")
        return uploaded

    def _upload(
        self,
        case_id: int,
        violation: Violation,
        records: tuple[EvidenceRecord, ...],
        payloads: Mapping[str, bytes],
    ) -> int:
        uploaded: list[str] = []
        spooled = 0
        try:
            for record in records:
                if self._try_upload(case_id, violation, record, payloads[record.role]):
                    uploaded.append(record.key)
                else:
                    spooled += 1
        finally:
            # Even if spooling failed part-way (disk full), record what did reach the store.
            self._store.mark_uploaded_many(uploaded)
        return spooled

    def _try_upload(self, case_id: int, violation: Violation, record: EvidenceRecord, data: bytes) -> bool:
        """Upload one object, or spool it if the store is (or recently was) down; True if uploaded."""
        metadata = {
            "case-id": str(case_id),
            "camera": violation.camera_id,
            "kind": violation.kind,
            "role": record.role,
            "captured-at": record.captured_at.isoformat(),
        }
        if self._monotonic() >= self._store_down_until:
            try:
                self._evidence.put(record.key, data, content_type=record.content_type, metadata=metadata)
            except EvidenceStoreDown as error:
                log.warning("case %d: evidence goes to the spool: %s", case_id, error)
                self._store_down_until = self._monotonic() + self._retry_after
            else:
                return True
        self._spool.add(record.key, data, record.content_type, metadata)
        return False
