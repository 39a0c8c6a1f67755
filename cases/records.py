"""The case store's records: one definition each, read from SQL rows by field name and shown by the HTTP API.

Records are frozen dataclasses. A record field named like a row attribute is filled from it by `from_row`
(the case row also offers `box` and `location` as attributes), so a new field is added in the table, here
and in the migration. The HTTP API returns these records (or views that extend them) as they are: a field
marked `NotShown` stays out of their JSON.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import ConfigDict, Field

from citywatch.vision.boxes import Box

NOT_SHOWN = Field(exclude=True)
"""`Annotated[T, NOT_SHOWN]`: kept in the record, left out of its JSON form (the API's responses)."""

R = TypeVar("R")


def from_row(record: type[R], row: object, **given: Any) -> R:
    """`record` with each field read from the row attribute of the same name, except those `given`."""
    assert dataclasses.is_dataclass(record)
    names = (f.name for f in dataclasses.fields(record) if f.init and f.name not in given)
    return record(**{name: getattr(row, name) for name in names}, **given)


def field_values(record: object, of: type | None = None) -> dict[str, Any]:
    """The record's fields (only those of the dataclass `of`, when given) by name, not copied."""
    assert dataclasses.is_dataclass(record)
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(of or record)}


@dataclass(frozen=True, kw_only=True)
class EvidenceRecord:
    # Its own (default) config: inside a case it would take the case's, and its optional fields would turn
    # required in the API's schema.
    __pydantic_config__ = ConfigDict()

    role: str
    key: str
    sha256: str
    size: int
    content_type: str
    uploaded: bool
    created_at: Annotated[datetime, NOT_SHOWN]
    captured_at: datetime
    """When the pictured frame was taken; the roles of one evidence set share it."""
    case_id: Annotated[int | None, NOT_SHOWN] = None


@dataclass(frozen=True, kw_only=True)
class Sighting:
    """What was seen where: the fields an observation brings and a case keeps (the case keeps the latest)."""

    # A case in a response always holds every field: its schema says so, defaults or not.
    __pydantic_config__ = ConfigDict(json_schema_serialization_defaults_required=True)

    kind: str
    code: str
    camera_id: str
    preset_id: str | None
    zone: str
    rule: str
    class_name: str
    confidence: float
    box: Box
    first_seen: datetime
    last_seen: datetime
    model_version: str = ""
    source: str = "camera"
    """camera, or device (camera_id then holds the device id)."""
    location: tuple[float, float] | None = None
    """[latitude, longitude] recorded with the case (device events); camera cases take the camera's."""


@dataclass(frozen=True, kw_only=True)
class Observation(Sighting):
    """One sighting of a problem, as the store needs it (the filer builds it from a Violation)."""

    details: Mapping[str, Any] = field(default_factory=dict)
    """Recorded in the audit log's "file" line when this observation creates a case (a device's reading)."""


@dataclass(frozen=True, kw_only=True)
class CaseRecord(Sighting):
    id: int
    state: str
    created_at: datetime
    observations: int
    evidence: Annotated[tuple[EvidenceRecord, ...], NOT_SHOWN] = ()
    """Empty when listed without evidence; the API's case detail shows it with URLs."""
    updated_at: Annotated[datetime | None, NOT_SHOWN] = None
    state_changed_at: datetime | None = None
    due_at: datetime | None = None
    """When the current stage's time limit runs out; None if it has none."""
    closed_at: Annotated[datetime | None, NOT_SHOWN] = None
    department: str | None = None
    """The grid or department the case was last dispatched to."""
    also_seen_kinds: tuple[str, ...] = ()
    """Related kinds seen at the same place while the case was open (see `cases.queries.RelatedKinds`): one
    problem, filed once as this case's kind, in the order they were first seen."""


@dataclass(frozen=True)
class EvidenceDraft:
    """An evidence object about to be stored: everything but its key, which needs the case id."""

    role: str
    sha256: str
    size: int
    content_type: str


@dataclass(frozen=True)
class ObservationOutcome:
    case_id: int
    created: bool
    evidence: tuple[EvidenceRecord, ...]
    """The evidence rows written by this call (empty when an attach kept the case's existing evidence)."""
    suppressed: bool = False
    """True: no case was filed because the same problem's case was closed within the cooldown (case_id is
    that closed case)."""


def box_closeness(a: Box, b: Box, near: float) -> float:
    """How much two xyxy boxes of one picture are together, for related kinds (a pile beside a bin).

    The smaller box is grown by `near` of its width and height on each side; the result is the fraction of
    the grown box that the other box covers: 0 when they are further apart than that margin, up to 1 when
    the smaller box lies inside the other. A pile at the foot of a bin overlaps it only a little (IoU 0.06
    to 0.12 in the demo's garbage clip), so IoU cannot tell "beside" from "elsewhere"; this can.
    """
    small, other = (a, b) if _area(a) <= _area(b) else (b, a)
    dx, dy = near * (small[2] - small[0]), near * (small[3] - small[1])
    grown = (small[0] - dx, small[1] - dy, small[2] + dx, small[3] + dy)
    width = min(grown[2], other[2]) - max(grown[0], other[0])
    height = min(grown[3], other[3]) - max(grown[1], other[1])
    if width <= 0 or height <= 0:
        return 0.0
    area = _area(grown)
    return width * height / area if area > 0 else 0.0


def _area(box: Box) -> float:
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)
