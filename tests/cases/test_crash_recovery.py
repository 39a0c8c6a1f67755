"""Nothing lost, nothing doubled: the real S3 server is stopped mid-run and the filing process is SIGKILLed.

Run 1 files violations while S3 is up, keeps filing (into the spool) after S3 stops, and is killed. Run 2
starts with S3 back, recovers and drains the spool, and re-files every violation of run 1 (they attach).
Then the bucket must hold exactly the evidence the database records, every object with its sha256 and case id,
and there must be one case per violation.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from citywatch.cases.evidence import EvidenceStore
from citywatch.cases.filing import CaseFiler
from citywatch.cases.spool import EvidenceSpool
from citywatch.cases.store import CaseStore
from citywatch.stack.s3 import S3Endpoint, S3Server
from tests.waiting import wait_until

HELPER = Path(__file__).with_name("crash_filer.py")
COUNT = 24


def progress(path: Path) -> int:
    return len(path.read_text().split()) if path.exists() else 0


def start_filer(
    url: str, server: S3Server, spool: Path, progress_file: Path, delay: float, gate: Path | None = None
) -> subprocess.Popen[bytes]:
    endpoint = server.endpoint
    argv = [
        sys.executable,
        str(HELPER),
        url,
        endpoint.endpoint,
        endpoint.access_key,
        endpoint.secret_key,
        endpoint.bucket,
        str(spool),
        str(COUNT),
        str(progress_file),
        str(delay),
    ]
    if gate is not None:
        argv.append(str(gate))
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.timeout(240)
def test_s3_outage_and_process_kill_lose_and_duplicate_nothing(database_url: str, tmp_path: Path) -> None:
    server = S3Server(tmp_path / "s3", log_path=tmp_path / "weed.log", bucket="cw-crash")
    spool_dir, progress_file = tmp_path / "spool", tmp_path / "progress"
    try:
        server.start()
        port = int(server.endpoint.endpoint.rsplit(":", 1)[1])
        gate = tmp_path / "gate"
        gate.write_text("4")  # the filer files violations 0-3, then waits
        first = start_filer(database_url, server, spool_dir, progress_file, delay=0.05, gate=gate)
        wait_until(lambda: progress(progress_file) >= 4, 60, "four filings with S3 up")
        server.stop()  # S3 goes away mid-run; the filer keeps filing into the spool
        gate.write_text("10")
        wait_until(lambda: progress(progress_file) >= 10, 60, "six filings with S3 down")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        filed_before_kill = progress(progress_file)
        assert filed_before_kill < COUNT, "the first run finished before it was killed: slow it down"
        assert EvidenceSpool(spool_dir).pending() > 0

        server = S3Server(tmp_path / "s3", log_path=tmp_path / "weed.log", bucket="cw-crash", port=port)
        server.start()
        second = start_filer(database_url, server, spool_dir, progress_file, delay=0.0)
        output, _ = second.communicate(timeout=120)
        assert second.returncode == 0, output.decode(errors="replace")[-3000:]

        store = CaseStore.from_url(database_url)
        endpoint = server.endpoint
        evidence = EvidenceStore.from_endpoint(endpoint.endpoint, endpoint.access_key, endpoint.secret_key, "cw-crash")
        cases = store.list_cases(limit=1000)
        assert len(cases) == COUNT  # one case per violation: the re-filed ones attached
        assert sorted(c.zone for c in cases) == sorted(f"zone-{i}" for i in range(COUNT))
        assert sum(c.observations for c in cases) == COUNT + filed_before_kill
        records = [e for c in cases for e in c.evidence]
        assert len(records) == 2 * COUNT
        assert all(e.uploaded for e in records)
        objects = sorted(
            str(o.object_name) for o in endpoint.client().list_objects("cw-crash", prefix="cases/", recursive=True)
        )
        assert objects == sorted(e.key for e in records)  # no object missing, none extra
        by_case = {e.key: c.id for c in cases for e in c.evidence}
        for record in records:
            assert hashlib.sha256(evidence.get(record.key)).hexdigest() == record.sha256
            metadata = evidence.metadata(record.key)
            assert (metadata["sha256"], metadata["case-id"]) == (record.sha256, str(by_case[record.key]))
        spool = EvidenceSpool(spool_dir)
        assert spool.pending() == 0
        report = CaseFiler(store, evidence, spool).recover()
        assert report.lost == () and report.respooled == ()
    finally:
        server.stop()


def test_recover_marks_stored_and_reports_lost_evidence(
    database_url: str, tmp_path: Path, s3_server: S3Endpoint
) -> None:
    """Rows not marked uploaded: found in S3 (died after the upload) get marked; bytes that are nowhere (spool
    wiped by hand, say) are reported lost, never marked; while S3 is down nothing is decided."""
    from tests.cases.crash_filer import evidence as payloads
    from tests.cases.crash_filer import observation

    store = CaseStore.from_url(database_url)
    dead = EvidenceStore.from_endpoint("127.0.0.1:9", "k", "s", "cw-nowhere", connect_timeout=0.2, retries=0)
    live = EvidenceStore.from_endpoint(
        s3_server.endpoint, s3_server.access_key, s3_server.secret_key, f"cw-recover-{uuid.uuid4().hex[:8]}"
    )
    live.ensure_bucket()
    spool = EvidenceSpool(tmp_path / "spool")
    down = CaseFiler(store, dead, spool)
    uploaded_before_crash = down.file_observation(observation(1), payloads(1)).case_id
    vanished = down.file_observation(observation(2), payloads(2)).case_id
    assert spool.pending() == 4
    first, second = store.get_case(uploaded_before_crash), store.get_case(vanished)
    assert first is not None and second is not None
    bodies = {role: body for role, (body, _type) in payloads(1).items()}
    for record in first.evidence:
        live.put(record.key, bodies[record.role], content_type=record.content_type, metadata={})
    for path in spool.directory.glob("*.item"):
        path.unlink()

    undecided = down.recover()
    assert undecided.lost == () and len(undecided.unchecked) == 4  # S3 down: cannot tell yet

    report = CaseFiler(store, live, spool).recover()
    assert sorted(report.already_stored) == sorted(e.key for e in first.evidence)
    assert sorted(report.lost) == sorted(e.key for e in second.evidence)
    assert sorted(e.key for e in store.pending_evidence()) == sorted(report.lost)
