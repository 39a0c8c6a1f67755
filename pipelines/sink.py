"""Where violations go: rendered into evidence and filed as cases (or attached to an open one)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from citywatch.cases.evidence import EvidenceStore
from citywatch.cases.filing import CaseFiler, FilingResult
from citywatch.cases.spool import EvidenceSpool
from citywatch.cases.store import CaseStore
from citywatch.pipelines.config import CityConfig
from citywatch.vision.evidence import render_evidence
from citywatch.vision.violation import Violation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseBackends:
    """Where a city's cases go: the case database, the evidence bucket, and the filer over both (with its spool)."""

    store: CaseStore
    evidence: EvidenceStore
    filer: CaseFiler

    @classmethod
    def from_config(cls, config: CityConfig) -> CaseBackends:
        """The backends an anchored city config names; the fleet and the API each open their own."""
        storage = config.storage
        store = CaseStore.from_url(storage.database, policy=config.lifecycle.policy())  # cooldowns, stage deadlines
        evidence = EvidenceStore.from_endpoint(
            storage.evidence.endpoint,
            storage.evidence.access_key,
            storage.evidence.secret_key,
            storage.evidence.bucket,
            secure=storage.evidence.secure,
        )
        filer = CaseFiler(store, evidence, EvidenceSpool(storage.spool_dir), related=config.filing.related())
        return cls(store, evidence, filer)


class CaseSink:
    """Renders a violation's evidence and files it; the blocking SQL and S3 work runs in a thread."""

    def __init__(self, filer: CaseFiler, *, jpeg_quality: int = 85) -> None:
        self.filer = filer
        self.jpeg_quality = jpeg_quality

    async def __call__(self, violation: Violation) -> None:
        await self.file(violation)

    async def file(self, violation: Violation) -> FilingResult:
        images = render_evidence(violation, jpeg_quality=self.jpeg_quality)
        result = await asyncio.to_thread(self.filer.file, violation, images)
        if result.created:
            where = f"on camera {violation.camera_id} zone {violation.zone}"
            log.info("case %d filed: %s (%s) %s", result.case_id, violation.kind, violation.code, where)
        return result
