"""Device events (non-camera sensors file cases through the same filer) and the webhook delivery log."""

import json
from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from citywatch.cases.accounts import Principal
from citywatch.cases.records import Observation
from citywatch.cases.webhooks import DeliveryInfo, WebhookError
from citywatch.serving.auth import Permission
from citywatch.serving.context import ApiContext
from citywatch.serving.errors import DOMAIN_STATUSES, error_responses
from citywatch.serving.schemas import DeviceEvent, EventFiled

# A device event is a whole-picture observation: one box covering everything, so the next event of the same
# device and kind always matches the open case (IoU 1) and attaches to it.
_WHOLE = (0.0, 0.0, 1.0, 1.0)


def ops_router(context: ApiContext, require: Callable[[Permission], Callable[..., Principal]]) -> APIRouter:
    router = APIRouter()
    device = Annotated[Principal, Depends(require(Permission.FILE_EVENTS))]
    webhook_reader = Annotated[Principal, Depends(require(Permission.READ_WEBHOOKS))]
    webhook_admin = Annotated[Principal, Depends(require(Permission.RETRY_WEBHOOKS))]

    @router.post("/events", tags=["devices"], responses=error_responses(*sorted(DOMAIN_STATUSES | {404, 503})))
    def file_event(event: DeviceEvent, principal: device) -> EventFiled:
        """An event from a registered non-camera device (e.g. a manhole-cover sensor) files or updates a case."""
        if context.filer is None:
            raise HTTPException(503, detail="this API instance files no events (no evidence filer configured)")
        registered = context.devices.get(event.device_id)
        if registered is None:
            raise HTTPException(404, detail=f"unknown device {event.device_id!r}: register it under devices")
        if event.kind not in registered.kinds:
            raise HTTPException(
                422,
                detail=f"device {event.device_id!r} may report {', '.join(sorted(registered.kinds))}, "
                f"not {event.kind!r}",
            )
        kind = context.device_kinds[event.kind]
        record = {**event.model_dump(mode="json"), "reported_by": principal.username}
        observation = Observation(
            kind=event.kind,
            code=kind.code,
            camera_id=event.device_id,
            preset_id=None,
            zone="device",
            rule=f"device:{event.kind}",
            class_name="sensor",
            confidence=1.0,
            box=_WHOLE,
            first_seen=event.observed_at,
            last_seen=event.observed_at,
            source="device",
            location=registered.location,
            details={"readings": event.readings, "message": event.message},
        )
        body = json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8")
        result = context.filer.file_observation(observation, {"event": (body, "application/json")})
        return EventFiled(
            case_id=result.case_id,
            created=result.created,
            suppressed=result.suppressed,
            evidence_pending=result.evidence_pending,
        )

    def outbox_or_404() -> object:
        if context.outbox is None:
            raise HTTPException(404, detail="no webhook targets are configured")
        return context.outbox

    @router.get("/webhooks/deliveries", tags=["webhooks"], responses=error_responses(404))
    def deliveries(
        _: webhook_reader,
        state: Literal["pending", "delivered", "failed"] | None = None,
        case_id: Annotated[int | None, Query(ge=1)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> list[DeliveryInfo]:
        outbox_or_404()
        assert context.outbox is not None
        found = context.outbox.deliveries(state=state, case_id=case_id, limit=limit, offset=offset)
        return found

    @router.get("/webhooks/deliveries/{delivery_id}", tags=["webhooks"])
    def delivery(delivery_id: Annotated[int, Path(ge=1, le=2**31 - 1)], _: webhook_reader) -> DeliveryInfo:
        outbox_or_404()
        assert context.outbox is not None
        try:
            return context.outbox.delivery(delivery_id)
        except WebhookError as error:
            raise HTTPException(404, detail=str(error)) from None

    @router.post("/webhooks/deliveries/{delivery_id}/retry", tags=["webhooks"], responses=error_responses(409))
    def retry(delivery_id: Annotated[int, Path(ge=1, le=2**31 - 1)], _: webhook_admin) -> DeliveryInfo:
        outbox_or_404()
        assert context.outbox is not None
        return context.outbox.retry(delivery_id)

    return router
