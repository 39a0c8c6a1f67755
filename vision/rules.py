"""Rules: when do objects in a zone become a violation.

A rule is a frozen pydantic model whose fields are its parameters, described and defaulted here once: the YAML
config (`pipelines.config`) uses these models as its `rules:` entries. Its state for one zone of one preset lives
beside it. The family, and what the scene asks of each branch:

| rule | fires when | judged | state |
|---|---|---|---|
| `FrameRule` | | per frame: `fires_after`, `misses_allowed`, `follows_tracks` | |
| ├ `DwellRule` (track) | a ByteTrack track stays `min_dwell` | per frame, in a visit | `dwell.DwellState` |
| ├ `DwellRule` (overlap) | a box stays where it was first seen | per frame, across visits | `dwell.OverlapState` |
| └ `PresenceRule` | a confident detection is in the zone | per frame | `dwell.OverlapState` |
| `VisitRule` | | at visit end: `visits` of the last `of` | |
| ├ `PersistenceRule` | an object is seen in k of the last n visits | at visit end | `persistence.VisitState` |
| └ `GroupRule` | different classes stand together in k of n visits | at visit end | `persistence.VisitState` |

Which detector classes count is configuration (`classes`), so a fine-tuned model with new classes plugs in
without code changes. A rule's classes are one physical thing to it (`merge_iou`): boxes of them on one object
are one detection, and the violation names the label seen most often for the object. Boxes whose size or shape
no real object has (`min_area` … `max_aspect`) are dropped before any rule judges them. Time always comes
from the frame, so a recorded sequence replays to the same violations.
"""

from __future__ import annotations

from abc import abstractmethod
from datetime import datetime, time, timedelta
from typing import Annotated, Any, Literal, cast, get_args
from zoneinfo import ZoneInfo

import numpy as np
import supervision as sv
from pydantic import BeforeValidator, ConfigDict, Field, field_serializer, field_validator, model_validator
from pydantic.dataclasses import dataclass

from citywatch.vision.boxes import nms
from citywatch.vision.detections import CLASS_NAME, confidence_or_ones
from citywatch.vision.params import DEFAULT_TIMEZONE, Duration, PositiveDuration, Strict, TimezoneName
from citywatch.vision.taxonomy import KINDS

__all__ = [
    "ActiveWindow",
    "DwellRule",
    "FrameRule",
    "GroupRule",
    "PersistenceRule",
    "PresenceRule",
    "Rule",
    "VisitRule",
]

Identity = Literal["track", "overlap"]


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class ActiveWindow:
    """Daily local-time window [start, end) in which a rule may fire; `start > end` wraps past midnight."""

    start: Annotated[time, Field(description="Local time the rule starts, e.g. 07:00")]
    end: Annotated[time, Field(description="Local time the rule stops (not included), e.g. 21:00")]
    timezone: Annotated[
        TimezoneName | None, Field(description="Timezone of start and end (default: serving.timezone)")
    ] = None

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(ZoneInfo(self.timezone or DEFAULT_TIMEZONE)).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


def _window_from_pair(value: Any) -> Any:
    """The config writes a window as ["07:00", "21:00"]."""
    if isinstance(value, list | tuple):
        if len(value) != 2:
            raise ValueError(f'a window is [start, end], e.g. ["07:00", "21:00"]; got {list(value)!r}')
        return {"start": value[0], "end": value[1]}
    return value


class Rule(Strict):
    """What every rule has: a name, the kind it files, the classes it looks at, when it runs and re-reports."""

    name: str = Field(description="The rule's name, on every case it files (in the config: its key under `rules:`)")
    kind: str = Field(description="Violation kind filed (a key of the taxonomy, see docs/taxonomy.md)")
    classes: frozenset[str] = Field(
        description="Detector class names that count (a fine-tuned model's own names plug in here)"
    )
    min_confidence: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Detections below this are ignored; with identity track also the score that starts a track. "
        "At least the detector's conf (the detector drops everything below it; the config refuses less)",
    )
    # Plausibility. Defaults from `bench/box_stats.py` (training labels and field set), beyond every class's
    # 0.5th-99.5th percentiles with margin: area 0.0005 (an empty parking space) to 0.81 (a bin photographed
    # close; handheld garbage piles reach 0.78), aspect 0.20 (a bin) to 8.1 (a parking space; garbage 5.3,
    # piles 6.0). They drop only boxes no labelled object ever had: a fixed camera's rule should set its own.
    min_area: float = Field(
        0.0002, ge=0.0, le=1.0, description="Smallest plausible box, as a fraction of the frame's area"
    )
    max_area: float = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="Largest plausible box, as a fraction of the frame's area (a CCTV view of a pavement: "
        "set it from what an object there can cover)",
    )
    min_aspect: float = Field(0.1, gt=0.0, description="Narrowest plausible box: width / height in pixels")
    max_aspect: float = Field(
        10.0, gt=0.0, description="Widest plausible box: width / height in pixels (a pavement-wide strip is wider)"
    )
    merge_iou: float | None = Field(
        0.7,
        gt=0.0,
        le=1.0,
        description="Boxes of the rule's classes overlapping more than this (IoU) are one object whatever their "
        "labels (class-agnostic NMS; the detector suppresses only within a class): a vehicle called both car and "
        "truck is one detection. None: labels are kept apart",
    )
    active: Annotated[ActiveWindow | None, BeforeValidator(_window_from_pair)] = Field(
        None, description='Local daily window [start, end) the rule runs, e.g. ["07:00", "21:00"]; may wrap midnight'
    )
    repeat_every: Duration
    """Re-report a staying object at most this often; each kind of rule sets its own default."""

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}")
        return kind

    @field_validator("classes")
    @classmethod
    def _some_classes(cls, classes: frozenset[str]) -> frozenset[str]:
        if not classes:
            raise ValueError("classes must not be empty")
        return classes

    @field_validator("repeat_every")
    @classmethod
    def _not_negative(cls, repeat_every: timedelta) -> timedelta:
        if repeat_every < timedelta(0):
            raise ValueError(f"must be >= 0, got {repeat_every}")
        return repeat_every

    @model_validator(mode="after")
    def _limits_in_order(self) -> Rule:
        if self.min_area >= self.max_area:
            raise ValueError(f"min_area: {self.min_area} must be below max_area ({self.max_area})")
        if self.min_aspect >= self.max_aspect:
            raise ValueError(f"min_aspect: {self.min_aspect} must be below max_aspect ({self.max_aspect})")
        return self

    @field_serializer("classes")
    def _sorted_classes(self, classes: frozenset[str]) -> list[str]:
        return sorted(classes)  # a set's order changes between processes; a dump must not

    def is_active(self, moment: datetime) -> bool:
        return self.active is None or self.active.contains(moment)

    def plausible(self, xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
        """Boolean mask of the (N, 4) pixel boxes whose area and aspect lie within this rule's limits."""
        boxes = np.asarray(xyxy, dtype=float).reshape(-1, 4)
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        area = w * h / float(width * height)
        aspect = np.divide(w, h, out=np.full(len(boxes), np.inf), where=h > 0)
        mask: np.ndarray = (
            (area >= self.min_area)
            & (area <= self.max_area)
            & (aspect >= self.min_aspect)
            & (aspect <= self.max_aspect)
        )
        return mask

    def candidates(self, detections: sv.Detections, width: int, height: int) -> sv.Detections:
        """What this rule looks at in a `width`×`height` frame, before `min_confidence`: boxes of its classes that
        are plausible, one per object (class-agnostic NMS at `merge_iou`: the best-scoring label stays)."""
        names = detections.data.get(CLASS_NAME)
        if names is None or len(detections) == 0:
            return cast(sv.Detections, detections[np.zeros(len(detections), dtype=bool)])
        keep = np.isin(np.asarray(names), list(self.classes))
        keep &= self.plausible(detections.xyxy, width, height)
        chosen = cast(sv.Detections, detections[keep])
        if self.merge_iou is None or len(chosen) < 2:
            return chosen
        kept = nms(chosen.xyxy, confidence_or_ones(chosen), self.merge_iou)
        return cast(sv.Detections, chosen[np.sort(kept)])

    def select(self, detections: sv.Detections) -> np.ndarray:
        """Boolean mask of the detections this rule looks at (class and confidence)."""
        names = detections.data.get(CLASS_NAME)
        if names is None or len(detections) == 0:
            return np.zeros(len(detections), dtype=bool)
        wanted = np.isin(np.asarray(names), list(self.classes))
        confidence = detections.confidence
        if confidence is None:
            return wanted
        return wanted & (confidence >= self.min_confidence)


class FrameRule(Rule):
    """Judged frame by frame: an object's stay in the zone, from the first sample that shows it to the last.

    A stay ends when the object is unseen for longer than `max_gap` (or missed in more than `misses_allowed()`
    samples in a row); it is reported once it lasted `fires_after()`, then again every `repeat_every`.
    """

    max_gap: PositiveDuration
    min_overlap: float

    def follows_tracks(self) -> bool:
        """Whether the same object is recognised by tracker ids (else by its box overlapping its first box)."""
        return False

    @abstractmethod
    def fires_after(self) -> timedelta:
        """How long an object must stay before it is reported."""

    @abstractmethod
    def misses_allowed(self) -> int | None:
        """Consecutive samples without the object that its stay survives (None: only `max_gap` ends it)."""


class DwellRule(FrameRule):
    """An object of one of `classes` stays in the zone for at least `min_dwell`.

    `identity` says how "the same object" is recognised from one sample to the next:
    - ``track``: ByteTrack ids. Right at video-like rates within one visit; the tracker restarts with every
      visit (the camera was elsewhere), so a dwell never spans visits.
    - ``overlap``: the object's box overlaps the box where it was first seen by at least `min_overlap` (IoU).
      No motion model, so it holds at patrol rates (seconds between samples) and across visits of a PTZ
      preset, which comes back to the same view: set `max_gap` longer than the patrol interval and a car
      parked through every visit is one ongoing violation. A car creeping in a queue drifts off its first box
      and starts again, so it never "dwells"; a spot that cars of a moving lane pass one after another is
      missed in the samples between them, and more than `max_missed` misses in a row end the stay. It cannot
      tell two look-alike objects that trade the same spot between two samples.

    The tracker of identity ``track`` has no thresholds of its own: each such rule gets its own ByteTrack
    (`scene.rule_tracker`), fed the rule's `candidates` (its classes, one box per object whatever the label,
    so a vehicle flickering car/truck keeps its id). A track starts from a detection scoring at least
    `min_confidence` and is confirmed when the next sample shows it again within `max_gap`; a detection between
    the detector's `conf` (below it nothing reaches the scene) and `min_confidence` only carries a track through
    a dip and never counts toward the dwell. So lowering `min_confidence`
    lets fainter vehicles start tracks, and the config refuses settings that can never confirm one.
    """

    type: Literal["dwell"] = Field("dwell", description="dwell: an object stays in the zone for min_dwell")
    min_dwell: Duration = Field(ge=timedelta(0), description="How long the object must stay, e.g. 5m")
    max_gap: PositiveDuration = Field(
        timedelta(seconds=30), description="Unseen longer than this means it left; back later, its dwell restarts"
    )
    repeat_every: Duration = Field(
        timedelta(minutes=1), description="Re-report a staying object this often, so its case keeps its last-seen time"
    )
    identity: Identity = Field(
        "track",
        description="How the same object is recognised: track (ByteTrack ids, within a visit) or overlap (its box "
        "stays where it was first seen; for patrol rates and across visits, with max_gap > the patrol interval)",
    )
    min_overlap: float = Field(
        0.5, gt=0.0, le=1.0, description="IoU with the first box that is the same object (identity overlap only)"
    )
    max_missed: int | None = Field(
        3,
        ge=0,
        description="Consecutive samples without the object that end its stay (identity overlap only; none: only "
        "max_gap). Occlusion by passing traffic lasts a few samples; a free spot stays free",
    )

    @field_validator("identity", mode="before")
    @classmethod
    def _known_identity(cls, identity: Any) -> Any:
        if identity not in get_args(Identity):
            raise ValueError(f"identity must be 'track' or 'overlap'; got {identity!r}")
        return identity

    def follows_tracks(self) -> bool:
        return self.identity == "track"

    def fires_after(self) -> timedelta:
        return self.min_dwell

    def misses_allowed(self) -> int | None:
        return self.max_missed


class PresenceRule(FrameRule):
    """A confident detection of one of `classes` in the zone is a violation at once (garbage, overflow).

    The same object (box overlapping where it was first seen) is reported again only every `repeat_every`,
    and is remembered for `max_gap` after it was last seen, so a pile seen in every visit is one ongoing
    violation.
    """

    type: Literal["presence"] = Field(
        "presence", description="presence: a confident detection in the zone is a violation"
    )
    repeat_every: Duration = Field(timedelta(minutes=10), description="Re-report the same object this often")
    max_gap: PositiveDuration = Field(timedelta(hours=1), description="Unseen longer than this means it is gone")
    min_overlap: float = Field(
        0.3, gt=0.0, le=1.0, description="IoU with the first box that is the same object (piles change shape a little)"
    )

    def fires_after(self) -> timedelta:
        return timedelta(0)

    def misses_allowed(self) -> int | None:
        return None  # a pile hidden behind a parked van for a while is still the same pile: only max_gap ends it


class VisitRule(Rule):
    """Judged at the end of each visit of the preset (see `PresetScene.begin_visit`): a place seen in at least
    `visits` of the last `of` visits fires, with the best frame of this visit as evidence.

    Garbage piles and stalls are judged across visits minutes apart, not frame to frame. "The same place" is a
    box overlapping (IoU ≥ `min_overlap`) the place's last box; classes are interchangeable within the rule. A
    visit counts as "seen" when any of its frames shows the place.
    """

    visits: int = Field(description="Visits (k) of the last `of` that must show the object, 1 to `of`")
    of: int = Field(ge=1, description="Number of recent visits (n) of the preset that are counted")
    min_overlap: float = Field(0.3, gt=0.0, le=1.0, description="IoU between visits that is the same place")
    repeat_every: Duration = Field(
        timedelta(0), description="Re-report a persisting object at most this often (0: at every visit that shows it)"
    )

    @model_validator(mode="after")
    def _visits_within_of(self) -> VisitRule:
        if not 1 <= self.visits <= self.of:
            raise ValueError(f"visits: {self.visits} must lie between 1 and of ({self.of}): need 1 <= visits <= of")
        return self


class PersistenceRule(VisitRule):
    """An object of one of `classes` is seen at the same place in at least `visits` of the last `of` visits."""

    type: Literal["persistence"] = Field(
        "persistence", description="persistence: the object is at the same place in `visits` of the last `of` visits"
    )


class GroupRule(VisitRule):
    """Combination evidence: objects of `classes` standing together persist across visits.

    For kinds the COCO model cannot see directly: a street stall is umbrellas, tables and chairs that stay
    together on a sidewalk. Two detections are neighbours when the gap between their boxes is at most
    `group_distance` × the taller box's height (a perspective-independent distance); a group is a connected
    set of neighbours with at least `min_members` boxes of at least `min_classes` different classes. The
    group's union box then has to persist like a `PersistenceRule` object.
    """

    type: Literal["group"] = Field(
        "group", description="group: objects of different classes stand together, persisting like `persistence`"
    )
    group_distance: float = Field(
        1.0, ge=0.0, description="Largest gap between neighbouring boxes, in heights of the taller box"
    )
    min_members: int = Field(2, ge=2, description="Fewest boxes in a group")
    min_classes: int = Field(2, ge=1, description="Fewest different classes in a group")
    merge_iou: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="IoU above which boxes of the rule's classes are one object whatever their labels; none (the "
        "default here): a group's classes are different things, an umbrella over a table is two",
    )

    @model_validator(mode="after")
    def _group_fits_classes(self) -> GroupRule:
        if self.min_classes > len(self.classes):
            raise ValueError(f"min_classes: {self.min_classes} is more than the {len(self.classes)} classes")
        if self.min_members < self.min_classes:
            raise ValueError(f"min_members: {self.min_members} must be at least min_classes ({self.min_classes})")
        return self
