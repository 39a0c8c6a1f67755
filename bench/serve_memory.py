"""Resident memory of the Ray Serve application, per replica and per camera, with real cameras and real S3.

Starts the RTSP server (N paths of the shipped demo clip), a SeaweedFS S3 server and the city's Serve app
(`running_city`, the code `citywatch serve` runs), lets the patrols run, then reads the resident set size of
every Ray process from /proc: each Serve replica (by deployment), and Ray's own processes (GCS, raylet,
controller, proxy, dashboard agents). Runs twice, with few and with more cameras, so the per-camera cost is the
difference between the two fleet replicas, measured in the same run.

    python bench/serve_memory.py            # 1 and 8 cameras, 45 s each
    python bench/serve_memory.py --quick    # 1 and 3 cameras, 25 s each (CI)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from common import REPO, environment, parking_city, write_results

from citywatch.pipelines.config import parse_config
from citywatch.serving.runner import running_city
from citywatch.stack.processes import free_port
from citywatch.stack.rtsp import RtspServer
from citywatch.stack.s3 import S3Endpoint, S3Server

DEMO_CLIP = REPO / "serving" / "demo" / "parking-demo.mp4"


def ray_processes() -> dict[str, float]:
    """Resident MB of each Ray process, keyed by what it is (a Serve replica by its deployment)."""
    usage: dict[str, float] = defaultdict(float)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = (proc / "status").read_text()
        except OSError:
            continue
        rss_kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        if "ServeReplica:citywatch:" in cmdline:
            # The title gains ".<method>" while the replica handles a call: keep the deployment name only.
            name = "replica " + cmdline.split("ServeReplica:citywatch:", 1)[1].split()[0].split(".")[0]
        elif "ray::" in cmdline:
            name = "ray " + cmdline.split("ray::", 1)[1].split()[0].split(".")[0]
        elif "/ray/" in cmdline and ("gcs_server" in cmdline or "raylet" in cmdline):
            name = "ray " + ("gcs_server" if "gcs_server" in cmdline else "raylet")
        else:
            continue
        usage[name] += rss_kb / 1024
    return dict(usage)


def measure(cameras: int, rtsp: RtspServer, s3: S3Endpoint, root: Path, seconds: float) -> dict[str, Any]:
    urls = {name: rtsp.urls[name] for name in list(rtsp.urls)[:cameras]}
    serving = {"port": free_port(), "detector_cpus": 0.5, "fleet_cpus": 0.5}
    city = parking_city(urls, s3, root / f"city{cameras}", rule={"min_dwell": "10s"}, serving=serving)
    config = parse_config(city).anchored(root)
    with running_city(config, num_cpus=2):
        time.sleep(seconds)
        usage = ray_processes()
    replicas = {name.removeprefix("replica "): mb for name, mb in usage.items() if name.startswith("replica ")}
    return {
        "cameras": cameras,
        "replicas_mb": replicas,
        "ray_system_mb": sum(mb for name, mb in usage.items() if not name.startswith("replica ")),
        "total_mb": sum(usage.values()),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="cw-mem-") as tmp:
        root = Path(tmp)
        with S3Server(root / "s3", log_path=root / "s3.log") as s3_server:
            streams = {f"cam{i:02d}": DEMO_CLIP for i in range(max(args.cameras))}
            with RtspServer(streams, log_dir=root / "rtsp") as rtsp:
                for count in args.cameras:
                    row = measure(count, rtsp, s3_server.endpoint, root, args.seconds)
                    rows.append(row)
                    print(f"{count} camera(s): replicas {row['replicas_mb']}, total {row['total_mb']:.0f} MB")
    few, many = rows[0], rows[-1]
    fleet_delta = many["replicas_mb"].get("CameraFleet", 0.0) - few["replicas_mb"].get("CameraFleet", 0.0)
    per_camera = fleet_delta / (many["cameras"] - few["cameras"])
    return {
        "benchmark": "serve_memory",
        "environment": environment(),
        "seconds": args.seconds,
        "rows": rows,
        "fleet_mb_per_camera": per_camera,
    }


def report(result: dict[str, Any]) -> str:
    env = result["environment"]
    deployments = sorted({name for row in result["rows"] for name in row["replicas_mb"]})
    lines = [
        "# Memory of the Serve application",
        "",
        f"{env['date']} · {env['cpu']} · {env['cpus']} CPUs · after {result['seconds']:.0f} s of patrols, "
        "one sample per camera per second",
        "",
        "| cameras | " + " | ".join(f"{name} MB" for name in deployments) + " | Ray's own processes MB | total MB |",
        "|---|" + "---|" * (len(deployments) + 2),
    ]
    for row in result["rows"]:
        cells = " | ".join(f"{row['replicas_mb'].get(name, 0.0):.0f}" for name in deployments)
        lines.append(f"| {row['cameras']} | {cells} | {row['ray_system_mb']:.0f} | {row['total_mb']:.0f} |")
    lines += [
        "",
        f"Per camera (CameraFleet replica, difference between the two runs): {result['fleet_mb_per_camera']:.1f} MB.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 and 3 cameras, 25 s each (CI)")
    args = parser.parse_args()
    args.cameras = [1, 3] if args.quick else [1, 8]
    args.seconds = 25.0 if args.quick else 45.0
    result = run(args)
    _, md_path = write_results("serve_memory", result, report(result), quick=args.quick)
    print(f"wrote {md_path}: {result['fleet_mb_per_camera']:.1f} MB per camera")


if __name__ == "__main__":
    main()
