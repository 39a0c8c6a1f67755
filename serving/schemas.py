"""Request and response bodies of the HTTP API (pydantic). Requests refuse unknown fields."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt

from citywatch.cases.accounts import MAX_PASSWORD, MIN_PASSWORD, USERNAME_PATTERN
from citywatch.cases.lifecycle import Role
from citywatch.cases.records import CaseRecord, EvidenceRecord
from citywatch.cases.workflow import AuditEntry


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _storable(value: datetime) -> datetime:
    """The database keeps UTC: a time whose UTC date falls outside years 1-9999 cannot be stored or compared."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("outside years 1-9999 once converted to UTC") from None
    return value


def _iso_8601(value: object) -> object:
    """Only an ISO 8601 text is a time here (pydantic alone would read `0.5` as seconds since 1970)."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("a date and time in ISO 8601 with a timezone, e.g. 2026-05-04T10:00:00+08:00")
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value[:40]!r} is not an ISO 8601 date and time") from None
    return value


UtcTime = Annotated[AwareDatetime, BeforeValidator(_iso_8601), AfterValidator(_storable)]
"""A time with a timezone that lies within years 1-9999 in UTC: every datetime the API takes is one."""

NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]*$"
"""Free text the API takes (search words) holds no control characters (a NUL matches everything on SQLite)."""


class Problem(BaseModel):
    loc: list[str | int]
    """Where: body, query, path or header, then the field."""
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error the API answers (4xx, 5xx): a message, and for invalid requests each problem found."""

    detail: str
    errors: list[Problem] = Field(description="Each invalid part of the request (422); empty otherwise")


# Responses are the case records (cases/records.py) themselves, or views that extend them with what the API
# adds: a record field is defined once, and one marked NOT_SHOWN stays out of the JSON.


@dataclass(frozen=True, kw_only=True)
class EvidenceView(EvidenceRecord):
    url: str | None = None
    """Presigned GET URL with a short expiry; None while the object waits in the spool."""


@dataclass(frozen=True, kw_only=True)
class CaseSummary(CaseRecord):
    """A listed case: its kind's names, whether it is past its time limit, and its location (the camera's when
    the case has none of its own)."""

    name_zh: str
    name_en: str
    overdue: bool


@dataclass(frozen=True, kw_only=True)
class CaseDetail(CaseSummary):
    evidence: tuple[EvidenceView, ...]  # shown here, with URLs
    audit: tuple[AuditEntry, ...]
    allowed_actions: tuple[str, ...]
    """What the caller may do next, from the lifecycle table."""


class CaseList(BaseModel):
    total: int
    limit: int
    offset: int
    cases: list[CaseSummary]


class ActionRequest(Request):
    comment: str = Field("", max_length=4000, description="Why; required to reject, re-dispatch or reopen")
    target: str = Field("", max_length=128, description="dispatch only: the grid or department it goes to")


MAX_BULK = 500


class BulkActionRequest(ActionRequest):
    ids: list[Annotated[StrictInt, Field(ge=1, le=2**31 - 1)]] = Field(
        min_length=1,
        max_length=MAX_BULK,
        description="Case ids, each at most once; each is acted on alone, in its own transaction",
        json_schema_extra={"uniqueItems": True},
    )


class BulkRefusal(BaseModel):
    id: int
    status: int
    """The status a single action on this case would have answered (404, 403, 409, 422)."""
    detail: str


class BulkActionResult(BaseModel):
    action: str
    done: list[int]
    """Cases the action was taken on, in the order given."""
    refused: list[BulkRefusal]


class KindCorrection(Request):
    kind: str = Field(min_length=1, max_length=64, description="The right kind (a taxonomy or device kind key)")
    comment: str = Field("", max_length=4000)


class CommentRequest(Request):
    text: str = Field(min_length=1, max_length=4000)


class LoginRequest(Request):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime
    role: Role


class Me(BaseModel):
    username: str
    role: Role
    via: str


# The schema says what `cases.accounts.check_password` enforces where JSON Schema can say it (length, not all
# whitespace, no control characters); a common password is refused with 422 by the account store.
_PASSWORD_SHAPE = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"


class NewUser(Request):
    username: str = Field(pattern=USERNAME_PATTERN, description="Lower case letters, digits and ._@-")
    role: Role
    password: str | None = Field(
        None,
        min_length=MIN_PASSWORD,
        max_length=MAX_PASSWORD,
        pattern=_PASSWORD_SHAPE,
        description=f"None: API keys only. At least {MIN_PASSWORD} characters, not all whitespace, no control "
        "characters, not a common password",
    )


class UserView(BaseModel):
    id: int
    username: str
    role: Role
    disabled: bool
    created_at: datetime
    api_keys: int


class UserChange(Request):
    disabled: StrictBool = Field(description="true: log the user out everywhere and refuse their keys; false: enable")


class ApiKeyView(BaseModel):
    key_id: str
    """The public half of the key (`cwk_<key_id>_…`)."""
    name: str
    created_at: datetime
    expires_at: datetime | None
    revoked: bool


class NewApiKey(Request):
    name: str = Field("", max_length=64)
    expires_in_days: int | None = Field(None, ge=1, le=3650)


class ApiKeyResponse(BaseModel):
    api_key: str
    """Shown once; only its hash is kept."""


Reading = float | int | bool | str


class DeviceEvent(Request):
    device_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
    kind: str = Field(min_length=1, max_length=64, description="A device kind under devices → kinds")
    observed_at: UtcTime = Field(description="When the device measured it (with a timezone)")
    readings: dict[str, Reading] = Field(default_factory=dict, max_length=32, description="e.g. tilt_deg: 14.5")
    message: str = Field("", max_length=500)


class EventFiled(BaseModel):
    case_id: int
    created: bool
    suppressed: bool
    evidence_pending: int
