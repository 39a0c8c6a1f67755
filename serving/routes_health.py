"""Health: `/healthz` (status only, no login: what a load balancer or orchestrator asks) and `/healthz/detail`
(cameras with their stream addresses, detectors, fleet replicas, the evidence store, the upload backlog: for staff).

Every remote part is asked with a time limit, so the answer comes in bounded time and a part that does not answer
shows as unreachable (and the status as degraded) instead of holding the request.
"""

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from citywatch.cases.accounts import Principal
from citywatch.cases.evidence import EvidenceStoreDown
from citywatch.cases.stats import CaseStats
from citywatch.serving.auth import Permission
from citywatch.serving.context import ApiContext

PROBE_TIMEOUT_S = 3.0
"""How long one health look waits for the object store, and for the fleet's and detectors' report."""


class Health(BaseModel):
    status: Literal["ok", "degraded"]


def health_router(context: ApiContext, require: Callable[[Permission], Callable[..., Principal]]) -> APIRouter:
    router = APIRouter(tags=["health"])
    read = Annotated[Principal, Depends(require(Permission.READ_CASES))]
    stats = CaseStats(context.store)

    async def detail() -> dict[str, Any]:
        report, store = await asyncio.gather(_fleet_report(context), _evidence_store(context))
        cameras = report.get("cameras", [])
        detectors = report.get("detectors", {})
        degraded = (
            any(not c.get("online") for c in cameras)
            or any(d.get("error") for d in detectors.values())
            or bool(report.get("unreachable"))
            or not store["reachable"]
        )
        return {
            "status": "degraded" if degraded else "ok",
            "cases": context.store.count_cases(),
            "evidence_store": store,
            "evidence_pending": stats.pending_uploads(),
            **report,
        }

    @router.get("/healthz")
    async def healthz() -> Health:
        """Alive, and whether anything is degraded (a camera offline, a detector or replica not answering, the
        evidence store unreachable). No login needed; the detail is /healthz/detail."""
        return Health(status=(await detail())["status"])

    @router.get("/healthz/detail")
    async def healthz_detail(_: read) -> dict[str, Any]:
        """The health report: cameras (stream, patrol, latest frames), detectors, fleet replicas, `unreachable`
        (replicas that did not answer in time), the evidence store's reachability and `evidence_pending`
        (evidence objects filed but waiting in a spool for the store)."""
        return await detail()

    return router


async def _fleet_report(context: ApiContext) -> dict[str, Any]:
    try:
        return await asyncio.wait_for(context.health(), PROBE_TIMEOUT_S + 1)
    except TimeoutError:
        return {"cameras": [], "detectors": {}, "unreachable": [f"health report: no answer in {PROBE_TIMEOUT_S} s"]}


async def _evidence_store(context: ApiContext) -> dict[str, Any]:
    """Whether the evidence store answers (one object lookup)."""
    try:
        await asyncio.wait_for(asyncio.to_thread(context.evidence.head, "healthz/probe"), PROBE_TIMEOUT_S)
    except TimeoutError:
        return {"reachable": False, "error": f"no answer within {PROBE_TIMEOUT_S} s"}
    except EvidenceStoreDown as error:
        return {"reachable": False, "error": str(error)}
    return {"reachable": True, "error": None}
