"""JSON the review page needs beyond the case API: evidence URLs for a queue, dashboard stats, camera views.

All of it is read-only and needs `read_cases` (every staff role). The counts come from `cases.stats`; here they
are grouped by the city's days and named from the taxonomy.
"""

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query

from citywatch.cases.accounts import Principal
from citywatch.cases.evidence import EvidenceStoreDown
from citywatch.cases.stats import CaseStats, Outcomes
from citywatch.serving.auth import Permission
from citywatch.serving.context import ApiContext
from citywatch.vision.taxonomy import KINDS

IMAGE_ROLES = ("annotated", "crop", "frame")
MAX_IDS = 500
MAX_CASE_ID = 2**31 - 1


def stats_router(context: ApiContext, require: Callable[[Permission], Callable[..., Principal]]) -> APIRouter:
    router = APIRouter(tags=["review page"])
    read = Annotated[Principal, Depends(require(Permission.READ_CASES))]
    stats = CaseStats(context.store)

    def presign(key: str) -> str | None:
        try:
            return context.evidence.presigned_get(key)
        except EvidenceStoreDown:  # the page shows the case without its picture
            return None

    @router.get("/review/evidence")
    def evidence_urls(
        _: read, ids: Annotated[str, Query(max_length=4000, description="Case ids, comma-separated")]
    ) -> dict[str, dict[str, str | None]]:
        """Presigned URLs of each case's latest evidence set (annotated, crop, frame), for thumbnails."""
        try:
            wanted = sorted({int(part) for part in ids.split(",") if part.strip()})
        except ValueError:
            raise HTTPException(422, detail=f"ids must be comma-separated case numbers; got {ids[:100]!r}") from None
        if len(wanted) > MAX_IDS:
            raise HTTPException(422, detail=f"at most {MAX_IDS} ids at once; got {len(wanted)}")
        if wanted and not (wanted[0] >= 1 and wanted[-1] <= MAX_CASE_ID):
            raise HTTPException(422, detail=f"case ids run from 1 to {MAX_CASE_ID}; got {ids[:100]!r}")
        latest = stats.latest_evidence(wanted, IMAGE_ROLES)
        return {str(case_id): {role: presign(key) for role, key in roles.items()} for case_id, roles in latest.items()}

    @router.get("/stats/overview")
    def overview(_: read, days: Annotated[int, Query(ge=1, le=90)] = 14) -> dict[str, Any]:
        """Cases per day (the city's days, `serving.timezone`) by kind and by camera; review outcomes (field
        precision) by kind and model version; cases by state. Camera health is /stats/fleet."""
        zone = ZoneInfo(context.timezone)
        now = context.store.now()
        today = now.astimezone(zone).date()
        first = today - timedelta(days=days - 1)
        since = datetime.combine(first, datetime.min.time(), zone)
        filed = stats.filed_since(since)
        outcomes = stats.review_outcomes()
        reviewed = {"by_kind": _rates(outcomes.by_kind, "kind"), "by_model": _rates(outcomes.by_model, "model_version")}
        labels = [first + timedelta(days=i) for i in range(days)]
        by_kind = _per_day(((f.created_at.astimezone(zone).date(), f.kind) for f in filed), labels)
        by_camera = _per_day(((f.created_at.astimezone(zone).date(), f.camera_id) for f in filed), labels)
        return {
            "days": [d.isoformat() for d in labels],
            "timezone": context.timezone,
            "by_kind": by_kind,
            "by_camera": by_camera,
            "kind_names": {k: _names(context, k) for k in {*by_kind, *(o["kind"] for o in reviewed["by_kind"])}},
            "outcomes": reviewed,
            "states": stats.by_state(),
        }

    @router.get("/stats/cameras")
    async def cameras(_: read) -> dict[str, Any]:
        """Each camera's health and, per preset, the zones it watches now and its latest frame (a presigned
        URL), from the fleet's report: what a supervisor needs to see what each preset watches."""
        report = await context.health()
        return {"cameras": [_camera_view(camera, context) for camera in report.get("cameras", [])]}

    @router.get("/stats/fleet")
    async def fleet(_: read) -> dict[str, Any]:
        """Cameras online and offline, and patrol visits done and missed, from the fleet's health report."""
        return _fleet_summary((await context.health()).get("cameras", []))

    return router


def _camera_view(camera: dict[str, Any], context: ApiContext) -> dict[str, Any]:
    """One camera of the fleet's report, for the cameras page: health, and its presets in patrol order."""
    patrol = camera.get("patrol") or {}
    zones: dict[str, Any] = patrol.get("zones") or {}
    shots: dict[str, Any] = camera.get("snapshots") or {}
    presets = []
    for preset_id in patrol.get("presets") or list(zones):
        shot = shots.get(preset_id)
        url = None
        if shot is not None and context.snapshots is not None:
            url = context.snapshots.presigned_get(str(shot["key"]))
        presets.append(
            {
                "preset_id": preset_id,
                "zones": zones.get(preset_id, {}),
                "picture": url,
                "captured_at": shot.get("captured_at") if shot else None,
                "width": shot.get("width") if shot else None,
                "height": shot.get("height") if shot else None,
                "current": preset_id == patrol.get("current_preset"),
                "next_due": (patrol.get("next_due") or {}).get(preset_id),
                "detector": (patrol.get("detectors") or {}).get(preset_id),
            }
        )
    health = {key: camera.get(key) for key in ("online", "offline_since", "last_frame_at", "url", "ptz", "stale")}
    health["visits"] = patrol.get("visits", 0)
    health["missed"] = patrol.get("missed", 0)
    health["last_error"] = patrol.get("last_error")
    return {"camera_id": camera.get("camera_id"), "health": health, "presets": presets}


def _per_day(items: Iterable[tuple[date, str]], labels: list[date]) -> dict[str, list[int]]:
    counts = Counter(items)
    series = sorted({name for _, name in counts})
    return {name: [counts[(day, name)] for day in labels] for name in series}


def _names(context: ApiContext, kind: str) -> dict[str, str]:
    known = KINDS.get(kind) or context.device_kinds.get(kind)
    if known is None:
        return {"code": "", "name_zh": kind, "name_en": kind}
    return {"code": known.code, "name_zh": known.name_zh, "name_en": known.name_en}


def _rates(groups: dict[str, Outcomes], name: str) -> list[dict[str, Any]]:
    return [
        {
            name: key,
            "confirmed": counts.confirmed,
            "rejected": counts.rejected,
            "corrected": counts.corrected,
            "decided": counts.decided,
            "confirmed_rate": counts.confirmed_rate,
        }
        for key, counts in groups.items()
    ]


def _fleet_summary(cameras: list[dict[str, Any]]) -> dict[str, Any]:
    patrols = [c.get("patrol") or {} for c in cameras]
    return {
        "online": sum(1 for c in cameras if c.get("online")),
        "offline": sum(1 for c in cameras if not c.get("online")),
        "visits_done": sum(int(p.get("visits", 0) or 0) for p in patrols),
        "visits_missed": sum(int(p.get("missed", 0) or 0) for p in patrols),
        "cameras": [
            {
                "camera_id": c.get("camera_id"),
                "online": bool(c.get("online")),
                "offline_since": c.get("offline_since"),
                "last_frame_at": c.get("last_frame_at"),
                "visits": int((c.get("patrol") or {}).get("visits", 0) or 0),
                "missed": int((c.get("patrol") or {}).get("missed", 0) or 0),
            }
            for c in cameras
        ],
    }
