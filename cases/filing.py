"""Filing: a violation becomes a new case or one more observation of an open case, with its evidence in S3.

Order of work for one violation:
1. hash the evidence (cheap) so the database rows can name each object before anything is uploaded, and
   stage the bytes on disk under their hash (fsynced): from here on a crash loses nothing;
2. one short database transaction finds the open case or creates one and writes the evidence rows
   (uploaded=False) with the case;
3. upload outside the transaction; evidence the store will not take goes to the durable spool, and
   `drain_spool` uploads it later and flips the rows to uploaded. Then the staged copy is dropped.
The database never waits on the network, and a case is filed even while the object store is down.

After a crash, `recover` (run by the first `drain_spool` of a process) settles every row still marked not
uploaded: re-spooled from staging, or found in the object store and marked, or reported lost.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from citywatch.cases.evidence import EvidenceStore, EvidenceStoreDown, StoredObject, sha256_hex
from citywatch.cases.queries import NO_RELATED, RelatedKinds
from citywatch.cases.records import CaseRecord, EvidenceDraft, EvidenceRecord, Observation
from citywatch.cases.spool import EvidenceSpool
from citywatch.cases.store import CaseStore
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
    suppressed: bool = False
    """Nothing was filed: the same problem's case was closed within the cooldown (case_id names it)."""


@dataclass(frozen=True)
class RecoveryReport:
    """What `CaseFiler.recover` found among evidence rows not marked uploaded."""

    respooled: tuple[str, ...] = ()
    """Keys whose bytes were still staged from a filing cut short: now in the spool."""
    already_stored: tuple[str, ...] = ()
    """Keys found in the object store with the recorded sha256 (uploaded, then the process died): marked."""
    unchecked: tuple[str, ...] = ()
    """Keys that could not be checked because the object store is down: looked at again next time."""
    lost: tuple[str, ...] = ()
    """Keys whose bytes are in neither the spool, staging nor the object store."""


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
        related: RelatedKinds = NO_RELATED,
        retry_store_after: timedelta = timedelta(seconds=30),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`evidence_every`: an attached case gets a new evidence set at most this often (frame time).
        `min_iou`: a sighting is attached to an open case of its kind whose first or last box overlaps it by
        this IoU at least. `related`: kinds that are one problem at one place (the config's
        `filing → related_kinds`), filed as one case of the kind that takes precedence.
        `retry_store_after`: once an upload fails, filings spool directly for this long instead of each
        waiting for a dead store to time out; `drain_spool` always tries the store."""
        self._store = store
        self._evidence = evidence
        self._spool = spool
        self._evidence_every = evidence_every
        self._min_iou = min_iou
        self._related = related
        self._retry_after = retry_store_after.total_seconds()
        self._monotonic = monotonic
        self._store_down_until = float("-inf")
        self._recovered = False

    def file(self, violation: Violation, images: Mapping[str, tuple[bytes, str]]) -> FilingResult:
        """File `violation` with its evidence by role, e.g. {"annotated": (jpeg, "image/jpeg"), ...}."""
        return self.file_observation(observation_from(violation), images)

    def file_observation(self, observation: Observation, images: Mapping[str, tuple[bytes, str]]) -> FilingResult:
        """File one observation (from a camera's violation or a device's event) with its evidence by role."""
        payloads: dict[str, bytes] = {}
        drafts: list[EvidenceDraft] = []
        for role, (data, content_type) in images.items():
            if not _ROLE.match(role):
                raise FilingError(f"evidence role {role!r} must match {_ROLE.pattern}")
            payloads[role] = data
            drafts.append(EvidenceDraft(role=role, sha256=sha256_hex(data), size=len(data), content_type=content_type))

        captured_at = observation.last_seen

        def key_for(case_id: int, draft: EvidenceDraft) -> str:
            return evidence_key(case_id, captured_at, draft.role, draft.sha256, draft.content_type)

        staged = {self._spool.stage(data) for data in payloads.values()}
        outcome = self._store.record_observation(
            observation,
            drafts,
            key_for=key_for,
            min_iou=self._min_iou,
            evidence_every=self._evidence_every,
            related=self._related,
        )
        meta = {"camera": observation.camera_id, "kind": observation.kind, "source": observation.source}
        pending = self._upload(outcome.case_id, meta, outcome.evidence, payloads)
        # Only now: if anything above failed, the rows may be committed and `recover` needs the staged bytes
        # (unneeded ones are removed by its stale-staging sweep).
        for digest in staged:
            self._spool.unstage(digest)
        return FilingResult(
            case_id=outcome.case_id,
            created=outcome.created,
            evidence_pending=pending,
            suppressed=outcome.suppressed,
        )

    def drain_spool(self) -> int:
        """Upload spooled evidence and mark it uploaded; returns how many objects went up.

        The first call in a process runs `recover` first, so a restart after a crash settles what the crash
        left (the fleet calls this every 10 s)."""
        if not self._recovered:
            report = self.recover()
            self._recovered = not report.unchecked

        def mark(stored: StoredObject) -> None:
            self._store.mark_uploaded(stored.key)

        uploaded = self._spool.drain(self._evidence, on_uploaded=mark)
        if uploaded:
            self._store_down_until = float("-inf")
        return uploaded

    def recover(self, *, stale_staging_after: timedelta = timedelta(hours=1)) -> RecoveryReport:
        """Settle evidence rows not marked uploaded whose bytes are not waiting in the spool.

        Looks in staging (a filing cut short between its commit and its spool write: re-spooled), then in the
        object store (uploaded, not yet marked: marked). Anything else is lost and logged as an error. Staging
        is checked before the store so that a filing finishing concurrently is at worst spooled twice, which
        the idempotent put absorbs. Safe to run while other processes file.
        """
        respooled: list[str] = []
        stored: list[str] = []
        unchecked: list[str] = []
        lost: list[str] = []
        cases: dict[int, CaseRecord | None] = {}
        pending = self._store.pending_evidence(limit=100_000)
        for record in pending:
            if self._spool.has(record.key):
                continue
            data = self._spool.staged(record.sha256)
            if data is not None:
                case_id = record.case_id or 0
                if case_id not in cases:
                    cases[case_id] = self._store.get_case(case_id)
                case = cases[case_id]
                meta = {} if case is None else {"camera": case.camera_id, "kind": case.kind, "source": case.source}
                self._spool.add(record.key, data, record.content_type, _metadata(case_id, meta, record))
                respooled.append(record.key)
                continue
            if self._spool.has(record.key):  # spooled by a filing that finished meanwhile
                continue
            try:
                head = self._evidence.head(record.key)
            except EvidenceStoreDown:
                unchecked.append(record.key)
                continue
            if head is not None and head.sha256 == record.sha256:
                self._store.mark_uploaded(record.key)
                stored.append(record.key)
            else:
                lost.append(record.key)
        self._spool.remove_stale_staging({r.sha256 for r in pending}, older_than=stale_staging_after.total_seconds())
        report = RecoveryReport(tuple(respooled), tuple(stored), tuple(unchecked), tuple(lost))
        if respooled or stored:
            log.warning(
                "evidence recovery: %d object(s) re-spooled from staging, %d found already stored",
                len(respooled),
                len(stored),
            )
        if lost:
            log.error(
                "evidence LOST for %d row(s) (in neither spool, staging nor %s): %s",
                len(lost),
                self._evidence.bucket,
                ", ".join(lost[:20]),
            )
        return report

    def _upload(
        self,
        case_id: int,
        meta: Mapping[str, str],
        records: tuple[EvidenceRecord, ...],
        payloads: Mapping[str, bytes],
    ) -> int:
        uploaded: list[str] = []
        spooled = 0
        try:
            for record in records:
                if self._try_upload(case_id, meta, record, payloads[record.role]):
                    uploaded.append(record.key)
                else:
                    spooled += 1
        finally:
            # Even if spooling failed part-way (disk full), record what did reach the store.
            self._store.mark_uploaded_many(uploaded)
        return spooled

    def _try_upload(self, case_id: int, meta: Mapping[str, str], record: EvidenceRecord, data: bytes) -> bool:
        """Upload one object, or spool it if the store is (or recently was) down; True if uploaded."""
        metadata = _metadata(case_id, meta, record)
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


def _metadata(case_id: int, meta: Mapping[str, str], record: EvidenceRecord) -> dict[str, str]:
    """Object metadata: the case id and what the object shows (the store adds the sha256)."""
    return {
        "case-id": str(case_id),
        **meta,
        "role": record.role,
        "captured-at": record.captured_at.isoformat(),
    }
