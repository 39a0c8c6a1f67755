"""Child processes the project starts itself (S3 server, RTSP server, ffmpeg publishers).

Every child runs in its own process group, so stopping it also stops anything it spawned, and an
``atexit`` hook stops whatever is still running when the interpreter exits normally. When the parent dies
without running it (SIGKILL, a crash), Linux's parent-death signal stops each child (`_die_with_parent`).
No Python code runs between fork and exec (no `preexec_fn`): in a parent with other threads, a child forked
while one of them held a lock deadlocked there (seen in the camera-fault tests), so util-linux's `setpriv`
arms the signal and then execs the command.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Self

LOOPBACK = "127.0.0.1"
_SETPRIV = shutil.which("setpriv")

# Children still running; atexit stops them. A plain set under a lock: the hook must see every
# live child, and ManagedProcess removes itself on stop().
_LIVE: set[ManagedProcess] = set()
_LIVE_LOCK = threading.Lock()


class StackError(RuntimeError):
    """A component of the local stack failed to start or stopped unexpectedly."""


class Component(abc.ABC):
    """A server of the local stack: runs from start() until stop(); `with component:` does both."""

    @abc.abstractmethod
    def start(self, timeout: float = 30.0) -> object:
        """Start, and return once the component serves (what it returns says where)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop every child process. Safe to call twice."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int, *, kind: int = socket.SOCK_STREAM) -> list[int]:
    """``count`` distinct free ports on 127.0.0.1 (TCP by default, ``socket.SOCK_DGRAM`` for UDP).

    All sockets stay bound until every port is chosen, so one call never returns a port twice.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, kind)
            sockets.append(sock)
            sock.bind((LOOPBACK, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port_pairs(
    count: int, offset: int, *, kind: int = socket.SOCK_STREAM, step: int = 1, first: int | None = None
) -> list[int]:
    """``count`` distinct ports p on 127.0.0.1 with p and p + ``offset`` both free, p a multiple of ``step``.

    ``first``, when given, is used as the first port as it is (its partner is not checked: the caller asked
    for that port, and the program that binds it will say if the partner is taken).
    """
    rng = random.Random()
    held: list[socket.socket] = []
    ports: list[int] = [] if first is None else [first]
    taken = {p + shift for p in ports for shift in (0, offset)}
    try:
        for _ in range(2_000):
            if len(ports) == count:
                return ports
            port = rng.randrange(20_000, min(60_000, 65_535 - offset), step)
            if {port, port + offset} & taken:
                continue
            pair = [socket.socket(socket.AF_INET, kind) for _ in range(2)]
            try:
                pair[0].bind((LOOPBACK, port))
                pair[1].bind((LOOPBACK, port + offset))
            except OSError:
                for sock in pair:
                    sock.close()
                continue
            held += pair
            ports.append(port)
            taken |= {port, port + offset}
    finally:
        for sock in held:
            sock.close()
    raise StackError(f"could not find {count} free port pairs (p, p+{offset}) on {LOOPBACK}")


def port_is_listening(port: int, host: str = LOOPBACK) -> bool:
    """True when a TCP connect to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def check_port_free(port: int, what: str) -> None:
    """Raise StackError if something listens on 127.0.0.1:port already.

    SO_REUSEADDR like the servers themselves, so connections in TIME_WAIT from a previous run
    do not count as taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            raise StackError(f"{what} port {LOOPBACK}:{port} is already in use: {exc}") from exc


def tail(path: Path | None, lines: int = 20) -> str:
    """The last lines of a log file ("" if there is none)."""
    if path is None or not path.exists():
        return ""
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 16_384))
        text = fh.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def processes_in_groups(pgids: set[int]) -> list[str]:
    """'PID CMDLINE' of every live (non-zombie) process in one of the process groups ``pgids``.

    Reads /proc, so Linux only; used to check that a stop() left nothing behind.
    """
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
            state, _ppid, pgrp = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:3]
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue  # exited while we looked
        # A zombie is dead already; only its parent's wait() (maybe init's) removes it.
        if int(pgrp) in pgids and state != "Z":
            found.append(f"{proc.name} {cmdline.strip()}")
    return found


class ManagedProcess:
    """One child process we own: started in its own process group, logged to a file, stopped for sure."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        if not argv:
            raise ValueError(f"{name}: argv is empty")
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self.pid}, running={self.running()})"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def start(self) -> None:
        """Start the child in a new session (its own process group); output goes to ``log_path``."""
        if self.running():
            raise StackError(f"{self.name} is already running (pid {self.pid})")
        self._close_log()
        out: IO[bytes] | int = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
            out = self._log
        try:
            self._proc = subprocess.Popen(
                [*_die_with_parent(), *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        except OSError as exc:
            self._close_log()
            raise StackError(f"{self.name}: cannot run {self.argv[0]!r}: {exc}") from exc
        with _LIVE_LOCK:
            _LIVE.add(self)

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM to the whole group, wait up to ``timeout``, then SIGKILL. Safe to call twice."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(proc.pid, signal.SIGKILL)
                    proc.wait()
            # The leader is gone; grandchildren that ignored SIGTERM may still hold the group.
            _signal_group(proc.pid, signal.SIGKILL)
        with _LIVE_LOCK:
            _LIVE.discard(self)
        self._close_log()

    def kill(self) -> None:
        """SIGKILL the group at once (a crash, for tests)."""
        self.stop(timeout=0)

    def wait_for_port(self, port: int, timeout: float) -> None:
        """Return once 127.0.0.1:port accepts TCP connections.

        Raises StackError naming this process, with the tail of its log, if it exits first or the
        port stays closed for ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                raise self.error(f"exited with code {self.returncode} before listening on {LOOPBACK}:{port}")
            if port_is_listening(port):
                return
            if time.monotonic() > deadline:
                raise self.error(f"not listening on {LOOPBACK}:{port} after {timeout:.0f} s")
            time.sleep(0.1)

    def error(self, what: str) -> StackError:
        """A StackError that names this process and quotes the end of its log."""
        message = f"{self.name} {what}"
        if self.log_path is not None:
            message += f"\n--- last lines of {self.log_path} ---\n{tail(self.log_path) or '(empty)'}"
        return StackError(message)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _die_with_parent() -> list[str]:
    """The command prefix that has the kernel send the child SIGTERM when its parent dies (none without setpriv).

    The signal fires when the *thread* that forked the child ends, not the process: set it only for children
    started from the main thread, which lives as long as the interpreter. SIGTERM, not SIGKILL, so weed
    flushes and ffmpeg closes its output as on a normal stop. setpriv execs the command, so the child's pid is
    the command's.
    """
    if _SETPRIV is None or threading.current_thread() is not threading.main_thread():
        return []
    return [_SETPRIV, "--pdeathsig", "TERM", "--"]


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # ProcessLookupError: the group is already empty. PermissionError cannot happen for our own
    # children, but a stop must never raise on cleanup paths.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def child_env(extra: Mapping[str, str] | None = None, *, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """A copy of our environment with ``extra`` set and the names in ``drop`` removed."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra or {})
    return env


@atexit.register
def _stop_all() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for proc in live:
        proc.stop(timeout=3.0)
