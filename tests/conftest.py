"""Session fixtures shared by every test folder: paths, and the real S3 and RTSP servers.

Real servers start once per session (S3 ~1 s, RTSP ~1.5 s) and stop at its end; tests that
restart or stop a server build their own with ``rtsp_server_factory`` or ``S3Server``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from citywatch.stack.postgres import PostgresServer, postgres_available
from citywatch.stack.rtsp import RtspServer, rtsp_available
from citywatch.stack.s3 import S3Endpoint, S3Server

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir(repo_root: Path) -> Path:
    """The shared assets folder beside the checkout (data sets, videos, weights); skip without it."""
    shared = repo_root.parent / "shared"
    if not shared.is_dir():
        pytest.skip(f"shared assets not found at {shared}")
    return shared


@pytest.fixture(scope="session")
def demo_clip(repo_root: Path) -> Path:
    """The demo camera's clip shipped in the package (built by stack/demo_clip.py)."""
    return repo_root / "serving" / "demo" / "parking-demo.mp4"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """A running SeaweedFS S3 endpoint with the default bucket; tests make their own buckets freely."""
    root = tmp_path_factory.mktemp("s3")
    server = S3Server(root / "data", log_path=root / "weed.log")
    try:
        yield server.start()
    finally:
        server.stop()


def _skip_without_rtsp() -> None:
    if reason := rtsp_available():
        pytest.skip(reason)


@pytest.fixture(scope="session")
def rtsp_server(tmp_path_factory: pytest.TempPathFactory, demo_clip: Path) -> Iterator[RtspServer]:
    """The demo clip served, looping, at ``rtsp_server.urls["demo"]``. Do not restart or stop it."""
    _skip_without_rtsp()
    server = RtspServer({"demo": demo_clip}, log_dir=tmp_path_factory.mktemp("rtsp-logs"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


RtspFactory = Callable[[dict[str, Path]], RtspServer]


@pytest.fixture
def rtsp_server_factory(tmp_path: Path) -> Iterator[RtspFactory]:
    """Start RtspServers of your own (to restart or stop them); all are stopped after the test."""
    _skip_without_rtsp()
    servers: list[RtspServer] = []

    def make(streams: dict[str, Path]) -> RtspServer:
        server = RtspServer(streams, log_dir=tmp_path / f"rtsp-logs-{len(servers)}")
        servers.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


# -- PostgreSQL (issue 6: the case store runs its suite on SQLite and on PostgreSQL) --------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL cluster (Debian's package); ``create_database()`` gives a test its own database."""
    if reason := postgres_available():
        pytest.skip(reason)
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh case database: a SQLite file, then a PostgreSQL database: tests using it run on both."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'nested' / 'cases.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield url
    server.drop_database(str(sa.make_url(url).database))
