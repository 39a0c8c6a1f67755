"""The API's background rounds: webhook deliveries, and draining the API's own evidence spool (device events).

Plain Python, no Ray: the `Api` deployment starts one `ApiBackground` thread and stops it when the replica
goes; `run_once` is one round, for tests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from citywatch.serving.context import ApiContext

log = logging.getLogger(__name__)


class ApiBackground:
    """Every `every_s`: deliver due webhooks; every `drain_every_s`: retry the spooled evidence uploads."""

    def __init__(
        self,
        context: ApiContext,
        every_s: float,
        *,
        drain_every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.context = context
        self.every_s = every_s
        self.drain_every_s = drain_every_s
        self.clock = clock
        self._last_drain: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="api-background", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def run_once(self) -> None:
        if self.context.outbox is not None:
            self.context.outbox.run_once()
        due = self._last_drain is None or self.clock() - self._last_drain >= self.drain_every_s
        if self.context.filer is not None and due:
            self._last_drain = self.clock()
            self.context.filer.drain_spool()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # report and go on: the next round retries
                log.exception("API background round failed")
            self._stop.wait(self.every_s)
