"""When each preset is visited: intervals, daily windows, timezones, and one camera's patrol plan.

A preset's visits fall on a grid, `phase + k * every` from the Unix epoch, kept inside its daily window. The
phase comes from a stable hash of the camera id, and a camera's presets are interleaved through the interval,
so a city's visits spread evenly over time (a flat detector load) and the same config gives the same times on
every replica and after every restart.

A `PatrolPlan` holds the next slot of each of one camera's presets and says which to visit now: the earliest
due, ties in the configured preset order. A slot whose successor fell due before it could run is missed ("the
camera was busy"); the patrol records other misses (camera offline, PTZ failure) with their reasons.
Time comes from a `Clock`, so tests and simulations run a day in milliseconds with a `ManualClock`.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

DEFAULT_TIMEZONE = "Asia/Shanghai"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, tz-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that moves only when told: `sleep` advances it at once (then yields to the event loop)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a tz-aware start")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=max(0.0, seconds))

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)


def stable_fraction(*parts: str) -> float:
    """A number in [0, 1) fixed by `parts` (the same on every machine and run, unlike hash())."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True)
class Schedule:
    """Visit every `every` (None: again as soon as the camera is free), only inside `between` local time."""

    every: timedelta | None = None
    between: tuple[time, time] | None = None
    timezone: str = DEFAULT_TIMEZONE

    def __post_init__(self) -> None:
        if self.every is not None and self.every <= timedelta(0):
            raise ValueError(f"every must be positive, got {self.every}")
        if self.between is not None and self.between[0] == self.between[1]:
            raise ValueError(f"between {self.between}: start and end are equal (an empty window)")
        ZoneInfo(self.timezone)

    def in_window(self, at: datetime) -> bool:
        if self.between is None:
            return True
        start, end = self.between
        local = at.astimezone(ZoneInfo(self.timezone)).time()
        return start <= local < end if start < end else (local >= start or local < end)

    def next_window_start(self, after: datetime) -> datetime:
        """The first opening of the window at or after `after` (UTC)."""
        assert self.between is not None
        zone = ZoneInfo(self.timezone)
        local = after.astimezone(zone)
        for days in range(3):
            opening = datetime.combine(local.date() + timedelta(days=days), self.between[0], zone)
            if opening >= local:
                return opening.astimezone(UTC)
        raise AssertionError("unreachable: a window opens every day")

    def next_slot(self, at_or_after: datetime, phase: timedelta = timedelta(0)) -> datetime:
        """The first visit time >= `at_or_after` on this schedule's grid, inside its window."""
        at = at_or_after.astimezone(UTC)
        for _ in range(8):  # each turn lands in the window or jumps to its next opening
            slot = at if self.every is None else _grid_ceil(at, self.every, phase)
            if self.in_window(slot):
                return slot
            at = self.next_window_start(slot)
        raise ValueError(f"schedule {self} has no slot after {at_or_after.isoformat()}")


def _grid_ceil(at: datetime, every: timedelta, phase: timedelta) -> datetime:
    """The first grid point `phase + k * every` (from the epoch) at or after `at`; exact integer microseconds."""
    micro = timedelta(microseconds=1)
    step = every // micro
    shift = (phase // micro) % step
    k = -(-((at - EPOCH) // micro - shift) // step)  # ceil
    return EPOCH + timedelta(microseconds=k * step + shift)


@dataclass(frozen=True)
class Slot:
    camera_id: str
    preset_id: str
    due: datetime


@dataclass(frozen=True)
class Missed:
    slot: Slot
    reason: str
    noticed_at: datetime


class PatrolPlan:
    """The next slot of each of one camera's presets; visits them in order, one at a time."""

    def __init__(self, camera_id: str, presets: Sequence[tuple[str, Schedule]], *, start: datetime) -> None:
        if not presets:
            raise ValueError(f"camera {camera_id!r}: a patrol plan needs at least one preset")
        self.camera_id = camera_id
        self.schedules = dict(presets)
        self.order = [preset_id for preset_id, _ in presets]
        base = stable_fraction(camera_id)
        self.phases: dict[str, timedelta] = {}
        for index, (preset_id, schedule) in enumerate(presets):
            fraction = (base + index / len(presets)) % 1.0  # presets interleaved through the interval
            self.phases[preset_id] = (schedule.every or timedelta(0)) * fraction
        self.pending: dict[str, Slot] = {p: self._slot(p, start) for p in self.order}

    def _slot(self, preset_id: str, at_or_after: datetime) -> Slot:
        due = self.schedules[preset_id].next_slot(at_or_after, self.phases[preset_id])
        return Slot(self.camera_id, preset_id, due)

    def next_due(self) -> datetime:
        return min(slot.due for slot in self.pending.values())

    def take(self, now: datetime) -> tuple[Slot | None, list[Missed]]:
        """The slot to visit now (None: nothing due yet), and the slots missed because a later one is due."""
        missed: list[Missed] = []
        for preset_id in self.order:
            slot = self.pending[preset_id]
            while slot.due <= now and self.schedules[preset_id].every is not None:
                following = self._slot(preset_id, slot.due + timedelta(microseconds=1))
                if following.due > now:
                    break
                reason = f"late: the camera was busy until {now.isoformat(timespec='seconds')}"
                missed.append(Missed(slot, reason, now))
                slot = following
            self.pending[preset_id] = slot
        due = [self.pending[p] for p in self.order if self.pending[p].due <= now]
        if not due:
            return None, missed
        return min(due, key=lambda s: (s.due, self.order.index(s.preset_id))), missed

    def finish(self, slot: Slot, now: datetime) -> None:
        """The slot ran (or was recorded missed): its preset's next slot comes after it."""
        if self.schedules[slot.preset_id].every is None:
            self.pending[slot.preset_id] = self._slot(slot.preset_id, now)
        else:
            self.pending[slot.preset_id] = self._slot(slot.preset_id, slot.due + timedelta(microseconds=1))


class CameraBusy(RuntimeError):
    """A second patrol tried to drive a camera that a patrol already drives."""


class CameraLeases:
    """One patrol per camera at a time, within a process (across replicas, sharding gives each camera one)."""

    def __init__(self) -> None:
        self._holders: dict[str, str] = {}
        self._lock = threading.Lock()

    def holder(self, camera_id: str) -> str | None:
        with self._lock:
            return self._holders.get(camera_id)

    @contextmanager
    def hold(self, camera_id: str, holder: str) -> Iterator[None]:
        with self._lock:
            current = self._holders.get(camera_id)
            if current is not None:
                raise CameraBusy(f"camera {camera_id!r} is already driven by {current}; {holder} may not drive it")
            self._holders[camera_id] = holder
        try:
            yield
        finally:
            with self._lock:
                if self._holders.get(camera_id) == holder:
                    del self._holders[camera_id]
