"""The HTTP API (FastAPI): cases and health. Ray Serve mounts it as the ingress; tests can run it alone."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel

from citywatch.cases.evidence import EvidenceStore, EvidenceStoreDown
from citywatch.cases.store import CaseRecord, CaseStore
from citywatch.vision.taxonomy import KINDS

log = logging.getLogger(__name__)

HealthProbe = Callable[[], Awaitable[dict[str, Any]]]


class EvidenceView(BaseModel):
    role: str
    key: str
    sha256: str
    size: int
    content_type: str
    uploaded: bool
    url: str | None = None
    """Presigned GET URL with a short expiry; None while the object waits in the spool."""


class CaseSummary(BaseModel):
    id: int
    kind: str
    code: str
    name_zh: str
    name_en: str
    state: str
    camera_id: str
    preset_id: str | None
    zone: str
    rule: str
    class_name: str
    confidence: float
    box: tuple[float, float, float, float]
    first_seen: datetime
    last_seen: datetime
    created_at: datetime
    observations: int
    model_version: str


class CaseDetail(CaseSummary):
    evidence: list[EvidenceView]


class CaseList(BaseModel):
    total: int
    limit: int
    offset: int
    cases: list[CaseSummary]


def _summary_fields(case: CaseRecord) -> dict[str, Any]:
    entry = KINDS.get(case.kind)
    return {
        "id": case.id, "kind": case.kind, "code": case.code,
        "name_zh": entry.name_zh if entry else case.kind, "name_en": entry.name_en if entry else case.kind,
        "state": case.state, "camera_id": case.camera_id, "preset_id": case.preset_id, "zone": case.zone,
        "rule": case.rule, "class_name": case.class_name, "confidence": case.confidence, "box": case.box,
        "first_seen": case.first_seen, "last_seen": case.last_seen, "created_at": case.created_at,
        "observations": case.observations, "model_version": case.model_version,
    }  # fmt: skip


def build_api(store: CaseStore, evidence: EvidenceStore, health: HealthProbe) -> FastAPI:
    api = FastAPI(title="citywatch", summary="Automatically filed urban-management cases")

    @api.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness plus what is degraded: cameras offline, detectors that failed to load."""
        report = await health()
        cameras = report.get("cameras", [])
        detectors = report.get("detectors", {})
        degraded = any(not c.get("online") for c in cameras) or any(d.get("error") for d in detectors.values())
        return {"status": "degraded" if degraded else "ok", "cases": store.count_cases(), **report}

    @api.get("/cases")
    def list_cases(
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
        camera_id: str | None = None,
        kind: str | None = None,
        state: str | None = None,
    ) -> CaseList:
        cases = store.list_cases(limit=limit, offset=offset, camera_id=camera_id, kind=kind, state=state)
        return CaseList(
            total=store.count_cases(),
            limit=limit,
            offset=offset,
            cases=[CaseSummary(**_summary_fields(case)) for case in cases],
        )

    @api.get("/cases/{case_id}")
    def get_case(case_id: int) -> CaseDetail:
        case = store.get_case(case_id)
        if case is None:
            raise HTTPException(status_code=404, detail=f"no case {case_id}")
        views = []
        for item in case.evidence:
            url = None
            if item.uploaded:
                try:
                    url = evidence.presigned_get(item.key)
                except EvidenceStoreDown as error:  # the case is still worth showing without its picture
                    log.warning("case %d: cannot presign %s: %s", case_id, item.key, error)
            views.append(
                EvidenceView(
                    role=item.role,
                    key=item.key,
                    sha256=item.sha256,
                    size=item.size,
                    content_type=item.content_type,
                    uploaded=item.uploaded,
                    url=url,
                )
            )
        return CaseDetail(**_summary_fields(case), evidence=views)

    return api
