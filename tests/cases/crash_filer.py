"""A filing process for the crash test: drains the spool (as a restarted replica does), then files violations.

    python crash_filer.py DB_URL S3_ENDPOINT ACCESS_KEY SECRET_KEY BUCKET SPOOL_DIR COUNT PROGRESS_FILE DELAY [GATE]

Violation i is its own problem (zone "zone-i") with two evidence objects whose bytes depend only on i, so a
second run re-files the same violations: they must attach to the cases already filed and add nothing.
Appends "i\\n" to PROGRESS_FILE after each filing; the test SIGKILLs it somewhere in the middle. With a GATE
file, violation i is filed only once the number in GATE exceeds i, so the test decides what happens before and
after the outage however long stopping the S3 server takes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta

from citywatch.cases.evidence import EvidenceStore
from citywatch.cases.filing import CaseFiler
from citywatch.cases.spool import EvidenceSpool
from citywatch.cases.store import CaseStore, Observation

T0 = datetime(2026, 5, 4, 2, 0, tzinfo=UTC)


def observation(index: int) -> Observation:
    return Observation(
        kind="motor_vehicle_illegal_parking",
        code="09009",
        camera_id="gate-3",
        preset_id="main",
        zone=f"zone-{index}",
        rule="illegal_parking",
        class_name="car",
        confidence=0.7,
        box=(10.0, 10.0, 50.0, 40.0),
        first_seen=T0,
        last_seen=T0 + timedelta(minutes=6),
    )


def evidence(index: int) -> dict[str, tuple[bytes, str]]:
    frame = bytes([index % 251]) * 20_000 + index.to_bytes(4, "big")
    sidecar = json.dumps({"violation": index}).encode()
    return {"frame": (frame, "image/jpeg"), "sidecar": (sidecar, "application/json")}


def allowed(gate: str) -> int:
    try:
        with open(gate, encoding="utf-8") as handle:
            return int(handle.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def main(argv: list[str]) -> int:
    url, endpoint, access, secret, bucket, spool_dir, count, progress, delay, *gate = argv
    store = CaseStore.from_url(url)
    evidence_store = EvidenceStore.from_endpoint(endpoint, access, secret, bucket, connect_timeout=0.5, retries=0)
    spool = EvidenceSpool(spool_dir)
    filer = CaseFiler(store, evidence_store, spool, retry_store_after=timedelta(seconds=1))
    filer.drain_spool()  # what the fleet's drain loop does first after a restart
    with open(progress, "a", encoding="utf-8") as out:
        for index in range(int(count)):
            while gate and index >= allowed(gate[0]):
                time.sleep(0.02)
            filer.file_observation(observation(index), evidence(index))
            out.write(f"{index}\n")
            out.flush()
            os.fsync(out.fileno())
            time.sleep(float(delay))
    deadline = time.monotonic() + 60
    while spool.pending() and time.monotonic() < deadline:  # finish what is spooled, then exit
        filer.drain_spool()
        time.sleep(0.2)
    return 1 if spool.pending() else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
