"""Where violations go: rendered into evidence and filed as cases (or attached to an open one)."""

from __future__ import annotations

import asyncio
import logging

from citywatch.cases.filing import CaseFiler, FilingResult
from citywatch.vision.evidence import render_evidence
from citywatch.vision.violation import Violation

log = logging.getLogger(__name__)


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
            log.info(
                "case %d filed: %s (%s) on camera %s zone %s",
                result.case_id, violation.kind, violation.code, violation.camera_id, violation.zone,
            )  # fmt: skip
        return result
