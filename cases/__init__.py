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
from citywatch.cases.observations import AUTO_FILED
from citywatch.cases.queries import CaseFilter
from citywatch.cases.records import CaseRecord, EvidenceRecord, Observation
from citywatch.cases.spool import EvidenceSpool, SpoolError
from citywatch.cases.store import CaseStore

__all__ = [
    "AUTO_FILED",
    "CLOSED_STATES",
    "CaseFiler",
    "CaseFilter",
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
    "Observation",
    "SpoolError",
    "StoredObject",
    "evidence_key",
]
