"""JSON the review page needs beyond the case API: evidence URLs for a queue, dashboard stats, camera pictures.

All of it is read-only and needs `read_cases` (every staff role). Counting is done in Python over one query of
the period's rows: a city files hundreds of cases a day, not millions, and it keeps SQLite and PostgreSQL alike.
"""

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query

from citywatch.cases.accounts import Principal
from citywatch.cases.db import AuditRow, CaseRow, EvidenceRow
from citywatch.cases.evidence import EvidenceStoreDown
from citywatch.cases.lifecycle import Action
from citywatch.cases.workflow import CORRECT_KIND
from citywatch.serving.auth import Permission
from citywatch.serving.context import ApiContext
from citywatch.vision.taxonomy import KINDS

IMAGE_ROLES = ("annotated", "crop", "frame")
MAX_IDS = 500
_DECISIONS = (Action.CONFIRM.value, Action.REJECT.value, Action.UNDO.value, CORRECT_KIND)


def stats_router(context: ApiContext, require: Callable[[Permission], Callable[..., Principal]]) -> APIRouter:
    router = APIRouter(tags=["review page"])
    read = Annotated[Principal, Depends(require(Permission.READ_CASES))]

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
        query = (
            sa.select(EvidenceRow)
            .where(EvidenceRow.case_id.in_(wanted), EvidenceRow.role.in_(IMAGE_ROLES), EvidenceRow.uploaded)
            .order_by(EvidenceRow.captured_at, EvidenceRow.id)
        )
        latest: dict[int, dict[str, str]] = defaultdict(dict)
        with context.store.reading() as session:
            for row in session.scalars(query):  # later sets overwrite earlier ones
                latest[row.case_id][row.role] = row.key
        return {str(case_id): {role: presign(key) for role, key in roles.items()} for case_id, roles in latest.items()}

    @router.get("/stats/overview")
    def overview(_: read, days: Annotated[int, Query(ge=1, le=90)] = 14) -> dict[str, Any]:
        """Cases per UTC day by kind and by camera; review outcomes (field precision) by kind and model version;
        cases by state. Camera health is /stats/fleet."""
        today = context.store.now().date()
        first = today - timedelta(days=days - 1)
        since = context.store.now() - timedelta(days=days)
        with context.store.reading() as session:
            filed = session.execute(
                sa.select(CaseRow.created_at, CaseRow.kind, CaseRow.camera_id).where(CaseRow.created_at >= since)
            ).all()
            states = dict(session.execute(sa.select(CaseRow.state, sa.func.count()).group_by(CaseRow.state)).all())
            reviewed = _review_outcomes(session)
        labels = [first + timedelta(days=i) for i in range(days)]
        by_kind = _per_day(((at.date(), kind) for at, kind, _ in filed), labels)
        by_camera = _per_day(((at.date(), camera) for at, _, camera in filed), labels)
        return {
            "days": [d.isoformat() for d in labels],
            "by_kind": by_kind,
            "by_camera": by_camera,
            "kind_names": {k: _names(context, k) for k in {*by_kind, *(o["kind"] for o in reviewed["by_kind"])}},
            "outcomes": reviewed,
            "states": states,
        }

    @router.get("/stats/cameras")
    async def cameras(_: read) -> dict[str, Any]:
        """Each camera's health (from the fleet) and, per preset, its latest evidence pictures: the patrols keep
        no frames, so the newest annotated picture (zone and box drawn) and untouched frame stand in."""
        report = await context.health()
        return {"cameras": _camera_pictures(context, report.get("cameras", []), presign)}

    @router.get("/stats/fleet")
    async def fleet(_: read) -> dict[str, Any]:
        """Cameras online and offline, and patrol visits done and missed, from the fleet's health report."""
        return _fleet_summary((await context.health()).get("cameras", []))

    return router


def _camera_pictures(
    context: ApiContext, fleet: list[dict[str, Any]], presign: Callable[[str], str | None]
) -> list[dict[str, Any]]:
    health = {str(c.get("camera_id")): c for c in fleet}
    newest = (
        sa.select(CaseRow.camera_id, CaseRow.preset_id, EvidenceRow.role, EvidenceRow.key, EvidenceRow.captured_at)
        .join(EvidenceRow, EvidenceRow.case_id == CaseRow.id)
        .where(EvidenceRow.role.in_(("annotated", "frame")), EvidenceRow.uploaded, CaseRow.source == "camera")
        .order_by(EvidenceRow.captured_at, EvidenceRow.id)
    )
    presets: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    with context.store.reading() as session:
        for camera_id, preset_id, role, key, captured_at in session.execute(newest):
            entry = presets[camera_id].setdefault(preset_id or "-", {"preset_id": preset_id or "-"})
            entry[role] = key  # later rows overwrite: the newest picture of each role wins
            entry["captured_at"] = captured_at.isoformat()
    result: list[dict[str, Any]] = []
    for camera_id in sorted({*health, *presets}):
        views: list[dict[str, Any]] = []
        for entry in presets.get(camera_id, {}).values():
            urls: dict[str, str | None] = {r: presign(entry[r]) for r in ("annotated", "frame") if r in entry}
            views.append({**entry, **urls})
        result.append({"camera_id": camera_id, "health": health.get(camera_id), "presets": views})
    return result


def _per_day(items: Iterable[tuple[date, str]], labels: list[date]) -> dict[str, list[int]]:
    counts = Counter(items)
    series = sorted({name for _, name in counts})
    return {name: [counts[(day, name)] for day in labels] for name in series}


def _names(context: ApiContext, kind: str) -> dict[str, str]:
    known = KINDS.get(kind) or context.device_kinds.get(kind)
    if known is None:
        return {"code": "", "name_zh": kind, "name_en": kind}
    return {"code": known.code, "name_zh": known.name_zh, "name_en": known.name_en}


def _review_outcomes(session: Any) -> dict[str, list[dict[str, Any]]]:
    """Per case, the review decision that stands (an undo cancels the one before it) and whether its kind was
    corrected; then counts by the kind as filed (the detector's claim) and by model version.

    Confirmed rate = confirmed as filed / decided: a confirmed case whose kind had to be corrected counts
    against the detector, like a rejected one.
    """
    cases = {row.id: row for row in session.execute(sa.select(CaseRow.id, CaseRow.kind, CaseRow.model_version))}
    decision: dict[int, str | None] = {}
    filed_kind: dict[int, str] = {}
    corrected: set[int] = set()
    lines = sa.select(AuditRow).where(AuditRow.action.in_(_DECISIONS)).order_by(AuditRow.id)
    for line in session.scalars(lines):
        if line.action == CORRECT_KIND:
            corrected.add(line.case_id)
            if line.case_id not in filed_kind:
                details = _json_object(line.details)
                filed_kind[line.case_id] = str(details.get("old_kind", ""))
        elif line.action == Action.UNDO.value:
            decision[line.case_id] = None
        else:
            decision[line.case_id] = line.action
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    by_model: dict[str, Counter[str]] = defaultdict(Counter)
    for case_id, made in decision.items():
        if made is None or case_id not in cases:
            continue
        outcome = "rejected" if made == Action.REJECT.value else "corrected" if case_id in corrected else "confirmed"
        row = cases[case_id]
        by_kind[filed_kind.get(case_id) or row.kind][outcome] += 1
        by_model[row.model_version or "(none)"][outcome] += 1
    return {"by_kind": _rates(by_kind, "kind"), "by_model": _rates(by_model, "model_version")}


def _rates(groups: dict[str, Counter[str]], name: str) -> list[dict[str, Any]]:
    rows = []
    for key, counts in sorted(groups.items()):
        decided = counts["confirmed"] + counts["rejected"] + counts["corrected"]
        rows.append({name: key, "confirmed": counts["confirmed"], "rejected": counts["rejected"],
                     "corrected": counts["corrected"], "decided": decided,
                     "confirmed_rate": counts["confirmed"] / decided if decided else None})  # fmt: skip
    return rows


def _fleet_summary(cameras: list[dict[str, Any]]) -> dict[str, Any]:
    patrols = [c.get("patrol") or {} for c in cameras]
    return {
        "online": sum(1 for c in cameras if c.get("online")),
        "offline": sum(1 for c in cameras if not c.get("online")),
        "visits_done": sum(int(p.get("visits", 0) or 0) for p in patrols),
        "visits_missed": sum(int(p.get("missed", 0) or 0) for p in patrols),
        "cameras": [
            {"camera_id": c.get("camera_id"), "online": bool(c.get("online")), "offline_since": c.get("offline_since"),
             "last_frame_at": c.get("last_frame_at"), "visits": int((c.get("patrol") or {}).get("visits", 0) or 0),
             "missed": int((c.get("patrol") or {}).get("missed", 0) or 0)}
            for c in cameras
        ],
    }  # fmt: skip


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
