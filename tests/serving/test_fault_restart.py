"""The whole app killed hard (SIGKILL of `citywatch serve`'s process group) while evidence waits in the spool,
then started again on the same database, bucket and spool: the spool drains, a case filed before the kill is
attached to, ids continue, and nothing is lost or filed twice. (Recovery times: bench/faults.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from citywatch.stack.rtsp import RtspServer
from tests.serving.fault_checks import app_killed_and_restarted

pytestmark = pytest.mark.e2e


def test_the_app_killed_hard_and_restarted_on_the_same_data(tmp_path: Path, rtsp_server: RtspServer) -> None:
    workdir = tmp_path / "city"
    workdir.mkdir()
    report = app_killed_and_restarted(workdir, rtsp_server.urls["demo"], tmp_path / "s3")
    before, after = report.run1_cases, report.run2_cases
    assert before, "the first run filed nothing"
    assert all(after[case_id] >= seen for case_id, seen in before.items())  # every case of the first run is kept
    assert any(after[case_id] > seen for case_id, seen in before.items())  # and one was attached to
    assert all(case_id > max(before) for case_id in set(after) - set(before))  # ids continue, none reused
    check = report.check
    assert check.cases == len(after) and check.pending == 0
    assert check.lost == (), f"evidence lost or altered: {check.lost}"
    assert check.duplicated == (), f"open cases filed twice: {check.duplicated}"
    assert check.unrecorded == (), f"objects no case records: {check.unrecorded}"
