"""A clock a test moves by hand: inject it where code asks for the time, then set or advance ``clock.now``."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

T = TypeVar("T", datetime, float)


class FakeClock(Generic[T]):
    """Calling it gives ``now``: a tz-aware datetime (a wall clock) or seconds (a monotonic clock)."""

    def __init__(self, now: T) -> None:
        self.now: T = now

    def __call__(self) -> T:
        return self.now
