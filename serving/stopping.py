"""How `citywatch serve` and `citywatch demo` stop: SIGTERM (systemd, Docker, Kubernetes) and SIGINT (Ctrl-C) both
raise KeyboardInterrupt in the main thread, so every stop takes the one clean path (stop the Serve app, Ray, then
the services the demo started).

Installed explicitly: a program started in the background from a shell script inherits SIGINT as *ignored*, and
`ray.init` replaces the SIGTERM handler with its own (which exits at once, leaving the demo's services running):
`running_city(..., stop_signals=True)` installs them again once Ray is up.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_stopping = threading.Event()


def install_stop_handlers() -> None:
    """SIGINT and SIGTERM stop the program like Ctrl-C; a second signal while stopping is logged, not obeyed.

    Call from the main thread (Python delivers signals there only).
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, _stop)


def _stop(signum: int, _frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    if _stopping.is_set():
        log.warning("%s: already stopping (each part has a deadline, then it is killed)", name)
        return
    _stopping.set()
    log.warning("%s: stopping", name)
    raise KeyboardInterrupt(name)
