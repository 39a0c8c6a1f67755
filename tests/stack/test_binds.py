"""The servers of the local stack listen on 127.0.0.1 only, and what a killed S3 server leaves is swept."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from citywatch.stack.postgres import PostgresServer, postgres_available
from citywatch.stack.s3 import S3Server, sweep_leftovers
from tests.procfs import descendants, listeners


def test_s3_and_postgres_listen_on_loopback_only(tmp_path: Path) -> None:
    if reason := postgres_available():
        pytest.skip(reason)
    before = descendants(os.getpid())
    with S3Server(tmp_path / "s3"), PostgresServer():
        found = listeners(descendants(os.getpid()) - before)
    names = " ".join(listener.name for listener in found)
    assert "weed" in names and "postgres" in names, found
    assert [listener for listener in found if not listener.loopback] == []


def test_leftover_weed_dirs_of_dead_processes_are_swept(tmp_path: Path) -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()  # reaped: its pid runs nothing now
    gone = tmp_path / "cw-weed-gone"
    gone.mkdir()
    (gone / "weed.pid").write_text(f"{ended.pid}\n")
    running = tmp_path / "cw-weed-running"
    running.mkdir()
    (running / "weed.pid").write_text(f"{os.getpid()}\n")
    starting = tmp_path / "cw-weed-starting"  # no owner yet: a weed being started right now
    starting.mkdir()
    assert sweep_leftovers(tmp_path) == [gone]
    assert not gone.exists() and running.is_dir() and starting.is_dir()
