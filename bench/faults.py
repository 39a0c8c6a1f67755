"""Time to recover from each fault the app is built to survive, with the product's own Serve app, a real RTSP
server, a real S3 server and SQLite; and whether anything was lost or filed twice on the way.

The scenarios and the checker are the tests' (`tests/serving/fault_checks.py`: one definition of each fault and
of "nothing lost"); here they run in a row and their recovery times are written down:

- RTSP server killed, back after a while: seconds from its return to the camera's next completed visit, and to
  the next sighting filed or attached;
- CameraFleet replica killed: seconds from the kill to a new replica, to its patrol's first completed visit, and
  to the next sighting;
- Detector replica killed: seconds to a new replica and to the first frame it detects;
- the whole app SIGKILLed with evidence in the spool (S3 down), restarted on the same data with S3 back: seconds
  from the restart to the spool drained and to a case of the first run attached to.

Then the checker: cases, evidence objects, lost (missing or altered in S3), duplicated open cases.
Times are wall seconds on a shared machine (poll granularity 0.5 s); compare them with each other, not with
another day's.

    python bench/faults.py            # each in-app fault twice, the RTSP server down 20 s
    python bench/faults.py --quick    # each once, down 5 s (writes var/bench-quick/)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, environment, write_results

sys.path.insert(0, str(REPO))  # the scenarios live with the tests that assert them

from citywatch.stack.rtsp import RtspServer
from citywatch.stack.s3 import S3Server
from tests.serving.fault_checks import (
    app_killed_and_restarted,
    detector_replica_killed,
    fleet_replica_killed,
    new_bucket,
    rtsp_outage,
    running_stack,
    settled_check,
    wait_for_cases,
)

DEMO_CLIP = REPO / "serving" / "demo" / "parking-demo.mp4"

WHAT = {
    "rtsp_server_killed": {
        "outage_s": "server down (s)",
        "patrolled_s": "server back → camera's next completed visit",
        "sighting_s": "server back → next sighting filed or attached",
    },
    "fleet_replica_killed": {
        "replica_s": "kill → new CameraFleet replica",
        "patrolled_s": "kill → its patrol's first completed visit",
        "sighting_s": "kill → next sighting filed or attached",
    },
    "detector_replica_killed": {
        "replica_s": "kill → new Detector replica",
        "detection_s": "kill → first frame detected again",
        "sighting_s": "kill → next sighting filed or attached",
    },
    "app_killed_and_restarted": {
        "spool_drained_s": "restart → spool drained (S3 back)",
        "attached_s": "restart → a case of the first run attached to",
    },
}


def in_app_faults(root: Path, rounds: int, down_s: float) -> dict[str, Any]:
    s3 = S3Server(root / "s3", log_path=root / "weed.log")
    rtsp = RtspServer({"demo": DEMO_CLIP}, log_dir=root / "rtsp-logs")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in WHAT if name != "app_killed_and_restarted"}
    try:
        endpoint = new_bucket(s3.start(), "cw-faults")
        rtsp.start()
        started = time.monotonic()
        with running_stack(rtsp, endpoint, root / "city") as stack:
            wait_for_cases(stack)
            first_case_s = time.monotonic() - started
            for round_number in range(rounds):
                print(f"round {round_number + 1}/{rounds}", flush=True)
                runs["rtsp_server_killed"].append(rtsp_outage(stack, down_s))
                runs["fleet_replica_killed"].append(fleet_replica_killed(stack))
                runs["detector_replica_killed"].append(detector_replica_killed(stack))
                print({name: seconds[-1] for name, seconds in runs.items()}, flush=True)
            check = settled_check(stack.database_url, stack.endpoint)
    finally:
        rtsp.stop()
        s3.stop()
    return {"first_case_s": first_case_s, "runs": runs, "check": check.counts()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="each fault once, RTSP down 5 s (CI)")
    args = parser.parse_args()
    rounds, down_s = (1, 5.0) if args.quick else (2, 20.0)
    with tempfile.TemporaryDirectory(prefix="cw-bench-faults-") as tmp:
        root = Path(tmp)
        in_app = in_app_faults(root, rounds, down_s)
        rtsp = RtspServer({"demo": DEMO_CLIP}, log_dir=root / "rtsp-logs-restart")
        try:
            rtsp.start()
            workdir = root / "restart"
            workdir.mkdir()
            restart = app_killed_and_restarted(workdir, rtsp.urls["demo"], root / "s3-restart")
        finally:
            rtsp.stop()
    runs = {**in_app["runs"], "app_killed_and_restarted": [restart.seconds]}
    payload = {
        "environment": environment(),
        "rounds": rounds,
        "rtsp_down_s": down_s,
        "first_case_s": in_app["first_case_s"],
        "faults": runs,
        "check": {"in_app": in_app["check"], "app_restart": restart.check.counts()},
        "app_restart": {
            "cases_before_kill": len(restart.run1_cases),
            "cases_after": len(restart.run2_cases),
            "left_running_after_kill": restart.left_running,
        },
    }
    json_path, md_path = write_results("faults", payload, report(payload), quick=args.quick)
    print(f"wrote {json_path} and {md_path}")


def report(payload: dict[str, Any]) -> str:
    env = payload["environment"]
    lines = [
        "# Faults: time to recover, and nothing lost",
        "",
        f"{env['date']} · {env['cpu']} ({env['cpus']} CPUs) · ray {env['versions'].get('ray', '?')} · "
        f"{payload['rounds']} round(s) · `python bench/faults.py{' --quick' if payload['rounds'] == 1 else ''}`",
        "",
        "One camera over the demo clip (sampled once a second), one Detector and one CameraFleet replica on Ray "
        "Serve, a real RTSP server (GStreamer), a real S3 server (SeaweedFS), SQLite. Wall seconds on a shared "
        "2-core machine, polled every 0.5 s (median of the rounds; each round in the JSON). "
        f"The first case was filed {payload['first_case_s']:.0f} s after the servers started.",
        "",
        "| fault | recovered when | seconds |",
        "|---|---|---|",
    ]
    for fault, times in payload["faults"].items():
        for key, what in WHAT[fault].items():
            values = [run[key] for run in times]
            lines.append(f"| {fault.replace('_', ' ')} | {what} | {statistics.median(values):.1f} |")
    lines += ["", "| checker | cases | evidence | lost | duplicated | unrecorded |", "|---|---|---|---|---|---|"]
    for name, counts in payload["check"].items():
        row = [counts[k] for k in ("cases", "evidence", "lost", "duplicated", "unrecorded")]
        lines.append(f"| {name.replace('_', ' ')} | " + " | ".join(str(v) for v in row) + " |")
    left = payload["app_restart"]["left_running_after_kill"]
    lines += [
        "",
        "Lost: an evidence row whose object is missing from the bucket or whose bytes differ from the recorded "
        "sha256 and size. Duplicated: two open cases of one camera, preset, zone and kind whose boxes overlap at "
        "the filer's attach threshold. Unrecorded: objects under cases/ that no evidence row names.",
        "",
        f"After the SIGKILL of `citywatch serve`'s process group, {len(left)} of its processes were still running "
        "30 s later" + (": " + "; ".join(f"`{p}`" for p in left) if left else "."),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
