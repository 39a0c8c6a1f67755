"""Many real RTSP cameras patrolled at once on this machine: missed visits, late samples, CPU and memory per camera.

    python bench/cameras.py [--cameras 16] [--seconds 60] [--quick]

One GStreamer RTSP server serves N paths (the shipped demo clip, one `-c copy` ffmpeg publisher each); one
`Fleet` (the same code a CameraFleet replica runs) patrols them as fixed cameras: every camera is visited back
to back, one frame every `--sample-every` seconds. Detection is a no-op here (its cost is `bench/detector.py`'s
subject): the numbers are what ingestion and patrols cost. CPU is this process's (decoding happens here) plus,
separately, the RTSP server and publishers (they stand in for the cameras).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, environment, write_results

from citywatch.pipelines.config import parse_config
from citywatch.pipelines.fleet import Fleet
from citywatch.stack.rtsp import RtspServer
from citywatch.vision.violation import Violation

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def city(urls: dict[str, str], sample_every: float) -> dict[str, Any]:
    zone = {"polygon": [[0.52, 0.9], [0.8, 0.9], [0.8, 1.0], [0.52, 1.0]], "rules": ["parking"]}
    preset = {"samples": 5, "sample_every": f"{sample_every}s", "zones": {"lane": zone}}
    return {
        "storage": {"evidence": {"endpoint": "127.0.0.1:1", "access_key": "k", "secret_key": "s"}},
        "rules": {
            "parking": {
                "type": "dwell",
                "kind": "motor_vehicle_illegal_parking",
                "classes": ["car"],
                "min_dwell": "20s",
            }
        },
        "cameras": {name: {"rtsp": url, "presets": {"fixed": preset}} for name, url in urls.items()},
    }


async def patrol(config: Any, seconds: float, warmup: float) -> dict[str, Any]:
    async def detect(image: np.ndarray) -> sv.Detections:
        return sv.Detections.empty()

    async def sink(violation: Violation) -> None:
        pass

    fleet = Fleet(detect_for=lambda _name: detect, sink=sink)
    await fleet.apply(config)
    try:
        await asyncio.sleep(warmup)
        before = {c: (p.stats.samples, p.stats.missed, p.stats.late_samples) for c, p in fleet.patrols.items()}
        cpu0, wall0 = cpu_seconds(os.getpid()), time.monotonic()
        rss = []
        while time.monotonic() - wall0 < seconds:
            await asyncio.sleep(1)
            rss.append(rss_mb(os.getpid()))
        cpu = cpu_seconds(os.getpid()) - cpu0
        wall = time.monotonic() - wall0
        per_camera = {
            c: {
                "samples": p.stats.samples - before[c][0],
                "missed": p.stats.missed - before[c][1],
                "late_samples": p.stats.late_samples - before[c][2],
                "camera_errors": p.stats.camera_errors,
                "sample_age_s": p.stats.last_sample_age_s[-1] if p.stats.last_sample_age_s else None,
            }
            for c, p in fleet.patrols.items()
        }
        return {"cpu_s": cpu, "wall_s": wall, "rss_mb": max(rss), "per_camera": per_camera}
    finally:
        await fleet.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--sample-every", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="4 cameras for 10 s; results under var/bench-quick")
    args = parser.parse_args(argv)
    cameras, seconds = (4, 10.0) if args.quick else (args.cameras, args.seconds)
    clip = REPO / "serving" / "demo" / "parking-demo.mp4"
    baseline_rss = rss_mb(os.getpid())
    server = RtspServer({f"cam-{i:02d}": clip for i in range(cameras)}, log_dir=REPO / "var" / "bench-rtsp")
    urls = server.start(timeout=120)
    try:
        stack_pids = [p.pid for p in server.processes if p.pid is not None]
        stack0 = sum(cpu_seconds(pid) for pid in stack_pids)
        config = parse_config(city(urls, args.sample_every))
        result = asyncio.run(patrol(config, seconds, warmup=5.0))
        stack_cpu = sum(cpu_seconds(pid) for pid in stack_pids) - stack0
    finally:
        server.stop()

    per = result["per_camera"]
    expected = seconds / args.sample_every
    samples = [c["samples"] for c in per.values()]
    cpu_per_camera = result["cpu_s"] / result["wall_s"] / cameras
    payload = {
        "environment": environment(),
        "cameras": cameras,
        "seconds": round(result["wall_s"], 1),
        "sample_every_s": args.sample_every,
        "expected_samples_per_camera": round(expected, 1),
        "samples_per_camera": {"min": min(samples), "max": max(samples)},
        "missed_visits": sum(c["missed"] for c in per.values()),
        "late_samples": sum(c["late_samples"] for c in per.values()),
        "camera_errors": sum(c["camera_errors"] for c in per.values()),
        "cpu_core_fraction_per_camera": round(cpu_per_camera, 4),
        "streams_per_core": round(1 / cpu_per_camera, 1),
        "rss_mb_total": round(result["rss_mb"], 1),
        "rss_mb_per_camera": round((result["rss_mb"] - baseline_rss) / cameras, 1),
        "stack_cpu_core_fraction": round(stack_cpu / result["wall_s"], 3),
        "per_camera": per,
    }
    report = f"""# {cameras} real RTSP cameras patrolled at once

{payload["environment"]["date"]} · {payload["environment"]["cpu"]} · {payload["environment"]["cpus"]} CPUs

- {cameras} fixed cameras (640x360, 10 fps H.264, GStreamer RTSP over TCP), one frame each every
  {args.sample_every:g} s for {payload["seconds"]} s through `Fleet` → `CameraPatrol` → `RtspReader` (PyAV);
  detection is a no-op here (see `detector.md` for its cost).
- Samples per camera: {min(samples)}-{max(samples)} of {expected:.0f} expected; **missed visits
  {payload["missed_visits"]}, late samples {payload["late_samples"]}**, camera errors {payload["camera_errors"]}.
- **CPU per camera: {cpu_per_camera:.1%} of a core** (decoding every frame, converting only sampled ones)
  → about {payload["streams_per_core"]:.0f} open streams per core.
- **Memory: {payload["rss_mb_per_camera"]} MB per camera** ({payload["rss_mb_total"]} MB RSS in all, the
  interpreter and libraries included).
- The RTSP server and {cameras} publishers (standing in for the cameras) used
  {payload["stack_cpu_core_fraction"]:.0%} of a core.
"""
    json_path, md_path = write_results("cameras", payload, report, quick=args.quick)
    print(report)
    print(f"wrote {json_path}, {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
