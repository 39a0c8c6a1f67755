"""A real PostgreSQL server for tests and benchmarks: Debian's `postgresql` package, one throw-away cluster.

initdb and postgres refuse to run as root, so under root both run as the `postgres` user through `runuser`
and the data directory (a fresh folder in the system temp dir, which that user can reach) is handed to it.
The server listens on 127.0.0.1 and on a unix socket inside its data directory, trusts local connections and
runs with fsync off: it holds test data only.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from citywatch.stack.processes import LOOPBACK, Component, ManagedProcess, StackError, free_port

_SUPERUSER = "postgres"
# A fast shutdown (SIGINT) rolls back open sessions and exits in well under a second; SIGTERM would wait
# for every pooled client connection to close.
_STOP_TIMEOUT = 10.0
# A throwaway server for tests and the demo: durability off for speed, enough connections for pooled clients.
_SETTINGS = {
    "listen_addresses": LOOPBACK,
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": 200,
}


def _run_as(as_postgres: bool) -> list[str]:
    """The prefix that runs a server command as the postgres user (PostgreSQL refuses to run as root)."""
    return ["runuser", "-u", _SUPERUSER, "--"] if as_postgres else []


def find_postgres_bin() -> Path:
    """The folder holding initdb and postgres: $CITYWATCH_PG_BIN, else the newest /usr/lib/postgresql/*/bin."""
    if override := os.environ.get("CITYWATCH_PG_BIN"):
        candidates = [Path(override)]
    else:
        candidates = sorted((Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")), reverse=True)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    raise StackError(
        "PostgreSQL not found: `apt-get install -y postgresql`, or set CITYWATCH_PG_BIN to the folder with initdb"
    )


def postgres_available() -> str | None:
    """None when a server can be started here, else why not (for a test skip)."""
    try:
        find_postgres_bin()
    except StackError as error:
        return str(error)
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root needs `runuser` to start PostgreSQL as the postgres user"
    return None


@dataclass(frozen=True)
class PostgresEndpoint:
    host: str
    port: int
    user: str

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL (psycopg 3 driver) for `database`."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"


class PostgresServer(Component):
    """One PostgreSQL cluster on a free port; `create_database` gives each test a database of its own."""

    def __init__(self, *, base_dir: Path | None = None, log_path: Path | None = None, port: int | None = None) -> None:
        """`base_dir`: where the data directory is made (default: the system temp dir). Under root it must be
        reachable by the postgres user, which rules out pytest's 0700 tmp_path."""
        self.base_dir = base_dir
        self.log_path = log_path
        self.port = port
        self.data_dir: Path | None = None
        self._proc: ManagedProcess | None = None
        self._endpoint: PostgresEndpoint | None = None

    @property
    def endpoint(self) -> PostgresEndpoint:
        if self._endpoint is None:
            raise StackError("PostgresServer is not started")
        return self._endpoint

    def start(self, timeout: float = 30.0) -> PostgresEndpoint:
        if self._proc is not None and self._proc.running():
            return self.endpoint
        bin_dir = find_postgres_bin()
        as_postgres = self._as_postgres()
        self.data_dir = Path(tempfile.mkdtemp(prefix="cw-pg-", dir=self.base_dir))
        try:
            if as_postgres:
                shutil.chown(self.data_dir, user=_SUPERUSER, group=_SUPERUSER)
            self._initdb(bin_dir, as_postgres)
            port = self.port or free_port()
            argv = [*_run_as(as_postgres), str(bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(port)]
            argv += ["-k", str(self.data_dir)]
            argv += [arg for name, value in _SETTINGS.items() for arg in ("-c", f"{name}={value}")]
            log_path = self.log_path or Path(tempfile.gettempdir()) / f"{self.data_dir.name}.log"
            self._proc = ManagedProcess(f"postgres (on {LOOPBACK}:{port})", argv, log_path=log_path)
            self._proc.start()
            self._proc.wait_for_port(port, timeout)
            endpoint = PostgresEndpoint(LOOPBACK, port, _SUPERUSER)
            self._wait_until_accepting(endpoint, time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise
        self._endpoint = endpoint
        return endpoint

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        import psycopg

        name = name or f"cw_{uuid.uuid4().hex[:16]}"
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name {name!r}: letters, digits and _ only")
        with psycopg.connect(self._dsn(self.endpoint), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')  # a checked identifier; DDL takes no parameters
        return self.endpoint.url(name)

    def drop_database(self, name: str) -> None:
        """Disconnect everyone from `name` and drop it (a test's leftover pooled connections included)."""
        import psycopg

        with psycopg.connect(self._dsn(self.endpoint), autocommit=True) as connection:
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            connection.execute(f'DROP DATABASE IF EXISTS "{name}"')  # names come from create_database

    def stop(self) -> None:
        """Fast shutdown, then SIGKILL after 10 s; the data directory is deleted. Safe to call twice."""
        proc = self._proc
        if proc is not None and proc.pid is not None and proc.running():
            # The whole group: under root the leader is runuser, which does not pass SIGINT on.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            deadline = time.monotonic() + _STOP_TIMEOUT
            while proc.running() and time.monotonic() < deadline:
                time.sleep(0.05)
        if proc is not None:
            proc.stop(timeout=1.0)
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
        self._endpoint = None

    def running(self) -> bool:
        return self._proc is not None and self._proc.running()

    @staticmethod
    def _as_postgres() -> bool:
        return os.geteuid() == 0

    def _initdb(self, bin_dir: Path, as_postgres: bool) -> None:
        import subprocess

        assert self.data_dir is not None
        argv = [*_run_as(as_postgres), str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", _SUPERUSER]
        argv += ["-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            raise StackError(f"initdb failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}")

    @staticmethod
    def _dsn(endpoint: PostgresEndpoint, database: str = "postgres") -> str:
        return f"host={endpoint.host} port={endpoint.port} user={endpoint.user} dbname={database}"

    def _wait_until_accepting(self, endpoint: PostgresEndpoint, deadline: float) -> None:
        """The port opens before recovery ends ("the database system is starting up"): poll a real login."""
        import psycopg

        assert self._proc is not None
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self._proc.running():
                raise self._proc.error(f"exited with code {self._proc.returncode} while starting")
            try:
                with psycopg.connect(self._dsn(endpoint), connect_timeout=2) as connection:
                    connection.execute("SELECT 1")
                return
            except psycopg.OperationalError as error:
                last = error
                time.sleep(0.1)
        raise self._proc.error(f"not accepting connections in time (last error: {last})")
