"""The S3 server the tests and the demo start: SeaweedFS ``weed mini`` on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from citywatch.stack.processes import ManagedProcess, StackError, processes_in_groups
from citywatch.stack.s3 import S3Endpoint, S3Server
from tests.waiting import wait_until


def test_put_get_round_trip_keeps_bytes(s3_server: S3Endpoint) -> None:
    client = s3_server.client()
    data = os.urandom(300_000)
    client.put_object(s3_server.bucket, "stack/round-trip.bin", io.BytesIO(data), len(data))
    response = client.get_object(s3_server.bucket, "stack/round-trip.bin")
    try:
        got = response.read()
    finally:
        response.close()
        response.release_conn()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()


def test_endpoint_is_loopback_with_the_default_bucket(s3_server: S3Endpoint) -> None:
    host, port = s3_server.endpoint.split(":")
    assert host == "127.0.0.1" and int(port) > 0
    assert s3_server.bucket == "citywatch-evidence"
    assert s3_server.client().bucket_exists(s3_server.bucket)


def test_stop_leaves_no_weed_process_and_data_survives_a_restart(tmp_path: Path) -> None:
    server = S3Server(tmp_path / "data", bucket="stack-restart", log_path=tmp_path / "weed.log")
    with server:
        endpoint = server.endpoint
        endpoint.client().put_object(endpoint.bucket, "kept.txt", io.BytesIO(b"kept"), 4)
        assert server.process is not None and server.process.pid is not None
        pgid = server.process.pid
    assert not server.running()
    assert processes_in_groups({pgid}) == []
    assert not list(Path("/tmp").glob(f"seaweedfs-*-grpc-{int(endpoint.endpoint.split(':')[1]) + 10000}.sock"))

    # Same data dir, fresh ports: the object is still there.
    endpoint = server.start()
    try:
        response = endpoint.client().get_object(endpoint.bucket, "kept.txt")
        assert response.read() == b"kept"
        response.close()
        response.release_conn()
    finally:
        server.stop()
    server.stop()  # idempotent


def test_data_dir_that_is_a_file_fails_clearly(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "occupied"
    not_a_dir.write_text("a file, not a directory")
    with pytest.raises(StackError, match="not a writable directory") as err:
        S3Server(not_a_dir / "data").start()
    assert str(not_a_dir) in str(err.value)


def test_taken_port_fails_clearly(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        # A port weed may use at all (it also binds port + 10000): the kernel's pick could be above 55535.
        for port in random.Random().sample(range(20_000, 55_535), 200):
            try:
                squatter.bind(("127.0.0.1", port))
                break
            except OSError:
                continue
        squatter.listen()
        with pytest.raises(StackError, match=f"127.0.0.1:{port} is already in use"):
            S3Server(tmp_path / "data", port=port).start()


def test_bad_bucket_name_is_refused_before_starting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid S3 bucket name"):
        S3Server(tmp_path, bucket="No_Such")


def test_a_child_that_dies_is_reported_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "boom.log"
    proc = ManagedProcess("boom", ["sh", "-c", "echo listening never; exit 3"], log_path=log)
    proc.start()
    with pytest.raises(StackError, match=r"boom exited with code 3 [\s\S]*listening never"):
        proc.wait_for_port(1, timeout=5)
    proc.stop()


def test_a_child_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    log = tmp_path / "s.log"
    stubborn = "trap '' TERM; echo trapped; sleep 60 & wait"  # `sleep` inherits the ignored TERM
    proc = ManagedProcess("stubborn", ["sh", "-c", stubborn], log_path=log)
    proc.start()
    assert proc.pid is not None
    wait_until(lambda: "trapped" in log.read_text(), 30, "the shell to ignore SIGTERM")
    proc.stop(timeout=0.5)
    assert proc.returncode == -signal.SIGKILL  # SIGTERM was ignored: only the SIGKILL after the timeout ended it
    assert not proc.running()
    assert processes_in_groups({proc.pid}) == []


def test_children_are_stopped_when_the_interpreter_exits(tmp_path: Path) -> None:
    """A program that forgets stop() still leaves nothing behind: the atexit hook stops its children."""
    script = (
        "from citywatch.stack.processes import ManagedProcess\n"
        "p = ManagedProcess('sleeper', ['sleep', '60'])\n"
        "p.start()\n"
        "print(p.pid, flush=True)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert processes_in_groups({int(result.stdout)}) == []


def test_many_buckets_each_get_a_volume(tmp_path: Path) -> None:
    # Each bucket takes a volume; with weed's 1 GiB default a disk with 60 GiB free failed at bucket 61 (HTTP 500).
    with S3Server(tmp_path / "data", log_path=tmp_path / "weed.log") as server:
        client = server.endpoint.client()
        for index in range(90):
            bucket = f"many-{index}"
            client.make_bucket(bucket)
            client.put_object(bucket, "x", io.BytesIO(b"x"), 1)
        assert len(client.list_buckets()) >= 90
