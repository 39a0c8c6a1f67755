"""Rules: when do objects in a zone become a violation.

A rule is a frozen description; its state for one zone of one preset lives beside it:

| rule | fires when | judged | state |
|---|---|---|---|
| `DwellRule` (track) | a ByteTrack track stays `min_dwell` | per frame, in a visit | `dwell.DwellState` |
| `DwellRule` (overlap) | a box stays where it was first seen | per frame, across visits | `dwell.OverlapState` |
| `PresenceRule` | a confident detection is in the zone | per frame | `dwell.OverlapState` |
| `PersistenceRule` | an object is seen in k of the last n visits | at visit end | `persistence.VisitState` |
| `GroupRule` | different classes stand together in k of n visits | at visit end | `persistence.VisitState` |

Which detector classes count is configuration (`classes`), so a fine-tuned model with new classes plugs in
without code changes. Time always comes from the frame, so a recorded sequence replays to the same violations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import supervision as sv

from citywatch.vision.taxonomy import kind as taxonomy_kind

__all__ = [
    "ActiveWindow",
    "DwellRule",
    "GroupRule",
    "PersistenceRule",
    "PresenceRule",
    "Rule",
    "VisitRule",
]

Identity = Literal["track", "overlap"]


@dataclass(frozen=True)
class ActiveWindow:
    """Daily local-time window in which a rule may fire; `start > end` wraps past midnight."""

    start: time
    end: time
    timezone: str = "Asia/Shanghai"

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(ZoneInfo(self.timezone)).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@dataclass(frozen=True, kw_only=True)
class _RuleBase:
    """What every rule has: a name, the kind it files, the classes it looks at, and when it runs."""

    name: str
    kind: str
    """Taxonomy key of the violation this rule files."""
    classes: frozenset[str]
    """Detector class names that count (configuration: a fine-tuned model's own names plug in here)."""
    min_confidence: float = 0.25
    active: ActiveWindow | None = None

    def __post_init__(self) -> None:
        taxonomy_kind(self.kind)  # raises with the list of known kinds
        if not self.classes:
            raise ValueError(f"rule {self.name!r}: classes must not be empty")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"rule {self.name!r}: min_confidence must be in [0, 1]; got {self.min_confidence}")

    def is_active(self, moment: datetime) -> bool:
        return self.active is None or self.active.contains(moment)

    def select(self, detections: sv.Detections) -> np.ndarray:
        """Boolean mask of the detections this rule looks at (class and confidence)."""
        names = detections.data.get("class_name")
        if names is None or len(detections) == 0:
            return np.zeros(len(detections), dtype=bool)
        wanted = np.isin(np.asarray(names), list(self.classes))
        confidence = detections.confidence
        if confidence is None:
            return wanted
        return wanted & (confidence >= self.min_confidence)


def _check_overlap(name: str, min_overlap: float) -> None:
    if not 0.0 < min_overlap <= 1.0:
        raise ValueError(f"rule {name!r}: min_overlap must be in (0, 1]; got {min_overlap}")


@dataclass(frozen=True, kw_only=True)
class DwellRule(_RuleBase):
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
    """

    min_dwell: timedelta
    max_gap: timedelta = timedelta(seconds=30)
    """An object unseen for longer than this has left; if it comes back, its dwell starts again."""
    repeat_every: timedelta = timedelta(minutes=1)
    """While the object stays, report it again this often, so its open case keeps its last-seen time."""
    identity: Identity = "track"
    min_overlap: float = 0.5
    """IoU with the first box that still counts as the same object (identity ``overlap`` only)."""
    max_missed: int | None = 3
    """Consecutive samples without the object that end its stay (identity ``overlap`` only; None: only max_gap).
    Occlusion by passing traffic lasts a few samples; a free spot stays free."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_missed is not None and self.max_missed < 0:
            raise ValueError(f"rule {self.name!r}: max_missed must be >= 0 or None; got {self.max_missed}")
        if self.min_dwell < timedelta(0) or self.max_gap <= timedelta(0):
            raise ValueError(f"rule {self.name!r}: min_dwell must be >= 0 and max_gap > 0")
        if self.identity not in ("track", "overlap"):
            raise ValueError(f"rule {self.name!r}: identity must be 'track' or 'overlap'; got {self.identity!r}")
        _check_overlap(self.name, self.min_overlap)


@dataclass(frozen=True, kw_only=True)
class PresenceRule(_RuleBase):
    """A confident detection of one of `classes` in the zone is a violation at once (garbage, overflow).

    The same object (box overlapping where it was first seen) is reported again only every `repeat_every`,
    and is remembered for `max_gap` after it was last seen, so a pile seen in every visit is one ongoing
    violation.
    """

    repeat_every: timedelta = timedelta(minutes=10)
    max_gap: timedelta = timedelta(hours=1)
    min_overlap: float = 0.3
    """IoU with the first box that still counts as the same object (piles change shape a little)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_gap <= timedelta(0) or self.repeat_every < timedelta(0):
            raise ValueError(f"rule {self.name!r}: max_gap must be > 0 and repeat_every >= 0")
        _check_overlap(self.name, self.min_overlap)

    @property
    def min_dwell(self) -> timedelta:
        return timedelta(0)

    @property
    def max_missed(self) -> int | None:
        """A pile hidden behind a parked van for a while is still the same pile: only `max_gap` ends it."""
        return None


@dataclass(frozen=True, kw_only=True)
class PersistenceRule(_RuleBase):
    """An object of one of `classes` is seen at the same place in at least `visits` of the last `of` visits.

    Judged at the end of each visit of the preset (see `PresetScene.begin_visit`), because garbage piles and
    stalls are judged across visits minutes apart, not frame to frame. "The same place" is a box overlapping
    (IoU ≥ `min_overlap`) the object's last box; classes are interchangeable within the rule. A visit counts
    as "seen" when any of its frames shows the object; it fires on a visit that shows it.
    """

    visits: int
    of: int
    min_overlap: float = 0.3
    repeat_every: timedelta = timedelta(0)
    """Report a persisting object at most this often (0: at every visit that still shows it)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.visits <= self.of:
            raise ValueError(f"rule {self.name!r}: need 1 <= visits <= of; got visits={self.visits}, of={self.of}")
        if self.repeat_every < timedelta(0):
            raise ValueError(f"rule {self.name!r}: repeat_every must be >= 0; got {self.repeat_every}")
        _check_overlap(self.name, self.min_overlap)


@dataclass(frozen=True, kw_only=True)
class GroupRule(PersistenceRule):
    """Combination evidence: objects of `classes` standing together persist across visits.

    For kinds the COCO model cannot see directly: a street stall is umbrellas, tables and chairs that stay
    together on a sidewalk. Two detections are neighbours when the gap between their boxes is at most
    `group_distance` × the taller box's height (a perspective-independent distance); a group is a connected
    set of neighbours with at least `min_members` boxes of at least `min_classes` different classes. The
    group's union box then has to persist like a `PersistenceRule` object.
    """

    group_distance: float = 1.0
    min_members: int = 2
    min_classes: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.group_distance < 0:
            raise ValueError(f"rule {self.name!r}: group_distance must be >= 0; got {self.group_distance}")
        if not 1 <= self.min_classes <= len(self.classes):
            raise ValueError(
                f"rule {self.name!r}: min_classes must be in [1, {len(self.classes)}] (the number of classes); "
                f"got {self.min_classes}"
            )
        if self.min_members < max(2, self.min_classes):
            raise ValueError(
                f"rule {self.name!r}: min_members must be >= 2 and >= min_classes ({self.min_classes}); "
                f"got {self.min_members}"
            )


VisitRule = PersistenceRule | GroupRule
"""Rules decided at the end of a visit."""
Rule = DwellRule | PresenceRule | PersistenceRule | GroupRule
