"""Faults injected into the running app (Ray Serve, a real RTSP server, a real S3 server, SQLite): the camera's
RTSP server killed and restarted, the CameraFleet replica killed, the Detector replica killed. One started city
takes the three in turn; after each it must patrol and file again, and the checker must find every evidence
object intact and no problem filed twice. (The S3 outage with a filer crash: tests/cases/test_crash_recovery.py;
the whole app killed and started again: test_fault_restart.py. Recovery times: bench/faults.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from citywatch.stack.rtsp import RtspServer, rtsp_available
from citywatch.stack.s3 import S3Endpoint
from tests.serving.fault_checks import (
    Stack,
    detector_replica_killed,
    fleet_replica_killed,
    new_bucket,
    rtsp_outage,
    running_stack,
    settled_check,
    wait_for_cases,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, demo_clip: Path, s3_server: S3Endpoint) -> Iterator[Stack]:
    if reason := rtsp_available():
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("faults")
    rtsp = RtspServer({"demo": demo_clip}, log_dir=root / "rtsp-logs")  # its own: the tests kill it
    try:
        rtsp.start()
        with running_stack(rtsp, new_bucket(s3_server, "cw-faults"), root) as running:
            wait_for_cases(running)
            yield running
    finally:
        rtsp.stop()


def assert_nothing_lost_or_doubled(stack: Stack) -> None:
    check = settled_check(stack.database_url, stack.endpoint)
    assert check.cases > 0 and check.evidence >= check.cases
    assert check.lost == (), f"evidence lost or altered: {check.lost}"
    assert check.duplicated == (), f"open cases filed twice: {check.duplicated}"
    assert check.unrecorded == (), f"objects no case records: {check.unrecorded}"


def test_rtsp_server_killed_and_restarted(stack: Stack) -> None:
    recovered = rtsp_outage(stack, down_s=5)
    assert recovered["patrolled_s"] > 0  # a visit finished after the server came back, by the camera's own clock
    assert_nothing_lost_or_doubled(stack)


def test_fleet_replica_killed(stack: Stack) -> None:
    fleet_replica_killed(stack)
    assert_nothing_lost_or_doubled(stack)


def test_detector_replica_killed(stack: Stack) -> None:
    detector_replica_killed(stack)
    assert_nothing_lost_or_doubled(stack)
