"""Case routes: list and filter, detail with evidence URLs and audit log, workflow actions, CSV/GeoJSON export."""

import csv
import io
import logging
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import TypeAdapter

from citywatch.cases.accounts import Principal
from citywatch.cases.evidence import EvidenceStoreDown
from citywatch.cases.lifecycle import Action, allowed_actions
from citywatch.cases.queries import CaseFilter, CaseStoreError
from citywatch.cases.records import CaseRecord, field_values
from citywatch.cases.workflow import AuditEntry, CaseNotFound, undo_refusal
from citywatch.serving.auth import Permission
from citywatch.serving.context import ApiContext
from citywatch.serving.errors import DOMAIN_STATUSES, error_responses, status_of
from citywatch.serving.schemas import (
    NO_CONTROL_CHARACTERS,
    ActionRequest,
    BulkActionRequest,
    BulkActionResult,
    BulkRefusal,
    CaseDetail,
    CaseList,
    CaseSummary,
    CommentRequest,
    EvidenceView,
    KindCorrection,
    UtcTime,
)
from citywatch.vision.taxonomy import KINDS

log = logging.getLogger(__name__)

MAX_PAGE = 500
MAX_EXPORT = 10_000
MAX_OFFSET = 1_000_000
CaseId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Case id")]
# An evidence key as the filer writes it: cases/YYYY/MM/DD/<case>/<role>-<hash>.<ext>. Nothing else is served.
_EVIDENCE_KEY = re.compile(r"^cases/\d{4}/\d{2}/\d{2}/\d+/[a-z0-9][a-z0-9_-]{0,31}-[0-9a-f]{12}\.[a-z0-9]{1,5}$")
_SUMMARY_FIELDS = TypeAdapter(CaseSummary)
# Spreadsheet programs run cells starting with these as formulas (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CSV = "text/csv"
_DOMAIN_ERRORS = error_responses(*sorted(DOMAIN_STATUSES))


def _filters(
    camera_id: Annotated[str | None, Query(max_length=128)] = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    state: Annotated[str | None, Query(max_length=32)] = None,
    since: Annotated[UtcTime | None, Query(description="Filed at or after (with a timezone)")] = None,
    until: Annotated[UtcTime | None, Query(description="Filed before (with a timezone)")] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=100,
            pattern=NO_CONTROL_CHARACTERS,
            description="Text in kind, code, camera, zone, rule, class (no control characters)",
        ),
    ] = None,
    overdue: Annotated[
        bool | None, Query(description="Only cases past (true) or within (false) their time limit")
    ] = None,
    department: Annotated[
        str | None, Query(max_length=128, description="Only cases last dispatched to this grid or department")
    ] = None,
) -> CaseFilter:
    try:
        return CaseFilter(
            camera_id=camera_id,
            kind=kind,
            state=state,
            since=since,
            until=until,
            text=q,
            overdue=overdue,
            department=department,
        )
    except CaseStoreError as error:
        raise HTTPException(422, detail=str(error)) from None


Filters = Annotated[CaseFilter, Depends(_filters)]


def cases_router(context: ApiContext, require: Callable[[Permission], Callable[..., Principal]]) -> APIRouter:
    router = APIRouter(tags=["cases"])
    views = _CaseViews(context)
    _add_read_routes(router, views, Depends(require(Permission.READ_CASES)))
    _add_export_routes(router, views, Depends(require(Permission.EXPORT_CASES)))
    _add_action_routes(router, views, Depends(require(Permission.ACT_ON_CASES)))
    return router


class _CaseViews:
    """Turns case records into API bodies: names from the taxonomy, locations from the config, URLs from S3."""

    def __init__(self, context: ApiContext) -> None:
        self.context = context

    def summary(self, case: CaseRecord) -> CaseSummary:
        context = self.context
        name = KINDS.get(case.kind) or context.device_kinds.get(case.kind)
        return CaseSummary(
            **{**field_values(case), "location": case.location or context.camera_locations.get(case.camera_id)},
            name_zh=name.name_zh if name else case.kind,
            name_en=name.name_en if name else case.kind,
            overdue=case.due_at is not None and case.due_at <= context.store.now(),
        )

    def detail(self, case: CaseRecord, principal: Principal) -> CaseDetail:
        views = []
        for item in case.evidence:
            url = None
            if item.uploaded:
                try:
                    url = self.context.evidence.presigned_get(item.key)
                except EvidenceStoreDown as error:  # the case is still worth showing without its picture
                    log.warning("case %d: cannot presign %s: %s", case.id, item.key, error)
            views.append(EvidenceView(**field_values(item), url=url))
        entries = self.context.workflow.audit_log(case.id)
        actions = [a.value for a in allowed_actions(case.state, principal.role)]
        last = entries[-1] if entries else None
        if undo_refusal(case.id, case.state, last, principal.username, self.context.store.now()) is not None:
            actions = [a for a in actions if a != Action.UNDO.value]  # listed only when it would be taken
        return CaseDetail(
            **{**field_values(self.summary(case)), "evidence": tuple(views)},
            audit=tuple(entries),
            allowed_actions=tuple(actions),
        )

    def exported(self, case: CaseRecord) -> dict[str, Any]:
        """A case's summary as the CSV and GeoJSON exports show it: its JSON fields, times as datetimes."""
        fields: dict[str, Any] = _SUMMARY_FIELDS.dump_python(self.summary(case))
        return fields

    def load(self, case_id: int) -> CaseRecord:
        case = self.context.store.get_case(case_id)
        if case is None:
            raise CaseNotFound(f"no case {case_id}")
        return case


def _add_read_routes(router: APIRouter, views: _CaseViews, read: Any) -> None:
    context = views.context

    @router.get("/cases")
    def list_cases(
        _: Annotated[Principal, read],
        filters: Filters,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> CaseList:
        cases = context.store.list_cases(filters, limit=limit, offset=offset, with_evidence=False)
        return CaseList(
            total=context.store.count_cases(filters),
            limit=limit,
            offset=offset,
            cases=[views.summary(case) for case in cases],
        )

    @router.get("/cases/{case_id}")
    def get_case(case_id: CaseId, principal: Annotated[Principal, read]) -> CaseDetail:
        return views.detail(views.load(case_id), principal)

    @router.get("/cases/{case_id}/audit")
    def audit_log(case_id: CaseId, _: Annotated[Principal, read]) -> list[AuditEntry]:
        views.load(case_id)
        return context.workflow.audit_log(case_id)

    @router.get(
        "/cases/{case_id}/evidence/{key:path}",
        response_class=RedirectResponse,
        status_code=307,
        responses={307: {"description": "To a presigned URL of the object"}, **error_responses(400, 409, 503)},
    )
    def evidence_object(case_id: CaseId, key: str, _: Annotated[Principal, read]) -> RedirectResponse:
        """Redirect to a short-lived presigned URL of one of this case's evidence objects."""
        if not _EVIDENCE_KEY.match(key) or key.split("/")[4] != str(case_id):
            raise HTTPException(400, detail=f"not an evidence key of case {case_id}: {key[:200]!r}")
        record = next((e for e in views.load(case_id).evidence if e.key == key), None)
        if record is None:
            raise HTTPException(404, detail=f"case {case_id} has no evidence {key!r}")
        if not record.uploaded:
            raise HTTPException(409, detail=f"evidence {key!r} waits in the spool; the object store has it later")
        try:
            url = context.evidence.presigned_get(key)
        except EvidenceStoreDown as error:
            raise HTTPException(503, detail=f"object store unavailable: {error}") from None
        return RedirectResponse(url, status_code=307)


def _add_export_routes(router: APIRouter, views: _CaseViews, export: Any) -> None:
    store = views.context.store

    @router.get(
        "/cases.csv",
        tags=["export"],
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "The cases as CSV (UTF-8 with a BOM)",
                "content": {_CSV: {"schema": {"type": "string"}}},
            }
        },
    )
    def export_csv(
        _: Annotated[Principal, export], filters: Filters, limit: Annotated[int, Query(ge=1, le=MAX_EXPORT)] = 1000
    ) -> StreamingResponse:
        cases = store.list_cases(filters, limit=limit, with_evidence=False)
        return StreamingResponse(
            _csv_rows([views.exported(case) for case in cases]),
            media_type=f"{_CSV}; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="citywatch-cases.csv"'},
        )

    @router.get("/cases.geojson", tags=["export"])
    def export_geojson(
        _: Annotated[Principal, export], filters: Filters, limit: Annotated[int, Query(ge=1, le=MAX_EXPORT)] = 1000
    ) -> dict[str, Any]:
        """A FeatureCollection of cases with a location (camera or device coordinates); others are counted."""
        features, unplaced = [], 0
        for case in store.list_cases(filters, limit=limit, with_evidence=False):
            fields = views.exported(case)
            location = fields.pop("location")
            if location is None:
                unplaced += 1
                continue
            latitude, longitude = location
            properties = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in fields.items()}
            features.append(
                {
                    "type": "Feature",
                    "id": case.id,
                    "properties": properties,
                    "geometry": {"type": "Point", "coordinates": [longitude, latitude]},
                }  # GeoJSON is lon, lat
            )
        return {"type": "FeatureCollection", "features": features, "without_location": unplaced}


def _action_details(action: Action, body: ActionRequest) -> dict[str, str] | None:
    """What goes into the audit line beyond the state: a dispatch's target department."""
    target = body.target.strip()
    if target and action is not Action.DISPATCH:
        raise HTTPException(422, detail=f"target names where a case is dispatched; {action} takes none")
    return {"target": target} if target else None


def _add_action_routes(router: APIRouter, views: _CaseViews, act_dependency: Any) -> None:
    context = views.context

    @router.post("/cases/{case_id}/actions/{action}", responses=_DOMAIN_ERRORS)
    def act(
        case_id: CaseId, action: Action, body: ActionRequest, principal: Annotated[Principal, act_dependency]
    ) -> CaseDetail:
        """Move the case through the workflow: review, confirm, reject (reason required), dispatch (with an
        optional target department), handle, verify, close, reopen, undo (one's own recent confirm/reject)."""
        case = context.workflow.act(
            case_id,
            action,
            actor=principal.username,
            role=principal.role,
            comment=body.comment,
            details=_action_details(action, body),
        )
        return views.detail(case, principal)

    @router.post("/cases/actions/{action}", responses=_DOMAIN_ERRORS)
    def act_on_many(
        action: Action, body: BulkActionRequest, principal: Annotated[Principal, act_dependency]
    ) -> BulkActionResult:
        """The same action on many cases (the review page's bulk confirm, reject and undo) in one request.

        Each case is acted on alone: one that is refused (gone, in another state, not yours to undo) is listed
        in `refused` with the status a single action would have answered, and the others go ahead."""
        if len(set(body.ids)) != len(body.ids):
            raise HTTPException(422, detail="ids: each case at most once")
        details = _action_details(action, body)
        done: list[int] = []
        refused: list[BulkRefusal] = []
        for case_id in body.ids:
            try:
                context.workflow.act(
                    case_id,
                    action,
                    actor=principal.username,
                    role=principal.role,
                    comment=body.comment,
                    details=details,
                )
            except Exception as error:
                status = status_of(error)
                if status is None:
                    raise  # a bug, not a refusal: a logged 500
                refused.append(BulkRefusal(id=case_id, status=status, detail=str(error)))
            else:
                done.append(case_id)
        return BulkActionResult(action=action.value, done=done, refused=refused)

    @router.post("/cases/{case_id}/kind", responses=_DOMAIN_ERRORS)
    def correct_kind(
        case_id: CaseId, body: KindCorrection, principal: Annotated[Principal, act_dependency]
    ) -> CaseDetail:
        known = KINDS.get(body.kind) or context.device_kinds.get(body.kind)
        if known is None:
            names = sorted([*KINDS, *context.device_kinds])
            raise HTTPException(422, detail=f"unknown kind {body.kind!r}; known: {', '.join(names)}")
        case = context.workflow.correct_kind(
            case_id,
            kind=body.kind,
            code=known.code,
            actor=principal.username,
            role=principal.role,
            comment=body.comment,
        )
        return views.detail(case, principal)

    @router.post("/cases/{case_id}/comments", status_code=201, responses=_DOMAIN_ERRORS)
    def comment(case_id: CaseId, body: CommentRequest, principal: Annotated[Principal, act_dependency]) -> AuditEntry:
        return context.workflow.comment(case_id, text=body.text, actor=principal.username, role=principal.role)


_CSV_COLUMNS = (
    "id",
    "code",
    "kind",
    "name_zh",
    "name_en",
    "state",
    "source",
    "camera_id",
    "preset_id",
    "zone",
    "class_name",
    "confidence",
    "first_seen",
    "last_seen",
    "created_at",
    "due_at",
    "overdue",
    "observations",
    "department",
    "latitude",
    "longitude",
)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_rows(rows: list[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")  # a BOM, so spreadsheet programs read the Chinese names as UTF-8
    writer.writerow(_CSV_COLUMNS)
    for row in rows:
        location = row.get("location") or (None, None)
        values = {**row, "latitude": location[0], "longitude": location[1]}
        writer.writerow([_csv_cell(values.get(column)) for column in _CSV_COLUMNS])
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
