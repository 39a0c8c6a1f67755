"""Slows password guessing at `POST /auth/token`.

After `per_user` failed logins for one username, or `per_address` from one client address, within `window`,
further attempts are refused (429, with Retry-After) until the oldest failure leaves the window, even with the
right password. A success clears the username's failures. The address limit is higher because an office's
inspectors share one address behind its NAT.

The counts live in the API process: each Api replica counts its own, so a guesser spread over N replicas gets
N times the limit. Shared counts (in the database) would cost a write per login for every replica.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta

_SWEEP_ABOVE = 10_000


class LoginThrottle:
    def __init__(
        self,
        clock: Callable[[], datetime],
        *,
        per_user: int = 5,
        per_address: int = 20,
        window: timedelta = timedelta(minutes=15),
    ) -> None:
        self.clock = clock
        self.limits = {"user": per_user, "address": per_address}
        self.window = window
        self._failures: dict[tuple[str, str], deque[datetime]] = {}
        self._lock = threading.Lock()

    def retry_after(self, username: str, address: str) -> int | None:
        """Seconds until this username and address may try again; None if they may now."""
        now = self.clock()
        wait = 0.0
        with self._lock:
            for key in (("user", username), ("address", address)):
                failures = self._recent(key, now)
                if len(failures) >= self.limits[key[0]]:
                    wait = max(wait, (failures[0] + self.window - now).total_seconds())
        return math.ceil(wait) if wait > 0 else None

    def failed(self, username: str, address: str) -> None:
        now = self.clock()
        with self._lock:
            for key in (("user", username), ("address", address)):
                self._recent(key, now).append(now)
            if len(self._failures) > _SWEEP_ABOVE:  # many names tried once: forget the ones out of the window
                for stale in [k for k in self._failures if not self._recent(k, now)]:
                    del self._failures[stale]

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(("user", username), None)

    def _recent(self, key: tuple[str, str], now: datetime) -> deque[datetime]:
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures
