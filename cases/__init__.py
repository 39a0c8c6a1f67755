"""Enforcement cases: the SQL case store, evidence in S3, the durable evidence spool and the filer."""

from citywatch.cases.evidence import (
    EvidenceConflict,
    EvidenceError,
    EvidenceNotFound,
    EvidenceStore,
    EvidenceStoreDown,
    StoredObject,
)
from citywatch.cases.filing import CaseFiler, FilingError, FilingResult, evidence_key
from citywatch.cases.lifecycle import CLOSED_STATES
from citywatch.cases.spool import EvidenceSpool, SpoolError
from citywatch.cases.store import AUTO_FILED, CaseRecord, CaseStore, EvidenceRecord

__all__ = [
    "AUTO_FILED",
    "CLOSED_STATES",
    "CaseFiler",
    "CaseRecord",
    "CaseStore",
    "EvidenceConflict",
    "EvidenceError",
    "EvidenceNotFound",
    "EvidenceRecord",
    "EvidenceSpool",
    "EvidenceStore",
    "EvidenceStoreDown",
    "FilingError",
    "FilingResult",
    "SpoolError",
    "StoredObject",
    "evidence_key",
]
