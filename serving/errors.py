"""Domain errors → HTTP status, for the API's handlers, the per-case results of bulk actions and the OpenAPI spec.

Every error the API answers has one body, `schemas.ErrorBody`; `error_responses(...)` declares the statuses a
route may answer in its `responses=`, and `DOMAIN_STATUSES` are those the domain errors below can raise.
"""

from __future__ import annotations

from typing import Any

from citywatch.cases.accounts import AccountError, AccountNotFound, AuthenticationFailed, InvalidAccount
from citywatch.cases.filing import FilingError
from citywatch.cases.lifecycle import CommentRequired, LifecycleError, NotPermitted, TransitionRefused
from citywatch.cases.store import CaseStoreError
from citywatch.cases.webhooks import DeliveryNotFound, WebhookError
from citywatch.cases.workflow import CaseNotFound
from citywatch.serving.schemas import ErrorBody

# Order matters: subclasses first.
ERROR_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (CaseNotFound, 404),
    (AccountNotFound, 404),
    (InvalidAccount, 422),
    (DeliveryNotFound, 404),
    (NotPermitted, 403),
    (CommentRequired, 422),
    (TransitionRefused, 409),
    (LifecycleError, 409),
    (AccountError, 409),
    (WebhookError, 409),
    (FilingError, 422),
    (CaseStoreError, 422),
    (AuthenticationFailed, 401),
)
DOMAIN_STATUSES = frozenset(status for _, status in ERROR_STATUS)

# What each error status means in this API (the spec's descriptions).
ERROR_MEANING: dict[int, str] = {
    400: "The body is not JSON, or the request names something that cannot exist (not an evidence key)",
    401: "No valid credential: send Authorization: Bearer <token or API key>",
    403: "The caller's role may not do this",
    404: "No such case, user, key, device or delivery",
    409: "Refused in the current state (a workflow step not possible now, a duplicate, evidence still spooled)",
    413: "Request body over the size limit",
    422: "Invalid request: the message and `errors` say which part",
    429: "Too many failed logins: wait Retry-After seconds",
    503: "A backing service (the object store, the event filer) is not available",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entries of a route for these error statuses, all with the one error body."""
    return {status: {"model": ErrorBody, "description": ERROR_MEANING[status]} for status in statuses}


def status_of(error: Exception) -> int | None:
    """The HTTP status of a domain error; None for anything else (a bug: the caller lets it become a 500)."""
    return next((status for error_type, status in ERROR_STATUS if isinstance(error, error_type)), None)
