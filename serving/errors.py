"""Domain errors → HTTP status, for the API's handlers and for the per-case results of bulk actions."""

from __future__ import annotations

from citywatch.cases.accounts import AccountError, AccountNotFound, AuthenticationFailed
from citywatch.cases.filing import FilingError
from citywatch.cases.lifecycle import CommentRequired, LifecycleError, NotPermitted, TransitionRefused
from citywatch.cases.store import CaseStoreError
from citywatch.cases.webhooks import DeliveryNotFound, WebhookError
from citywatch.cases.workflow import CaseNotFound

# Order matters: subclasses first.
ERROR_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (CaseNotFound, 404),
    (AccountNotFound, 404),
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


def status_of(error: Exception) -> int | None:
    """The HTTP status of a domain error; None for anything else (a bug: the caller lets it become a 500)."""
    return next((status for error_type, status in ERROR_STATUS if isinstance(error, error_type)), None)
