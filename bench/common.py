"""What every benchmark shares: the environment record, timing helpers and the result files.

Each benchmark writes `bench/results/<name>.json` (numbers plus the environment: CPU, versions, model hash)
and `bench/results/<name>.md` (a short report), plus PNG plots where a picture says more.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(model: Path | None = None) -> dict[str, Any]:
    """Where the numbers were measured: they only compare with numbers from the same record."""
    versions = {}
    for package in ("citywatch", "onnxruntime", "numpy", "opencv-python", "supervision", "ray", "ultralytics", "torch"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    record: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }
    if model is not None:
        record["model"] = {"path": str(model), "sha256": hashlib.sha256(model.read_bytes()).hexdigest()}
    return record


def time_calls(call: Callable[[], object], repeats: int) -> list[float]:
    """Wall seconds of each of `repeats` calls."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "min_s": ordered[0],
        "median_s": statistics.median(ordered),
        "p95_s": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "n": len(ordered),
    }


FIRE_LANE = [[0.52, 0.90], [0.80, 0.90], [0.80, 1.0], [0.52, 1.0]]
"""The demo clip's fire-lane zone (serving/demo/city.yaml)."""


def parking_city(
    urls: dict[str, str], s3: Any, root: Path, *, rule: dict[str, Any], serving: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A city config (as a dict) of fixed cameras over the demo clip, each sampled once a second, whose fire lane
    is watched by a dwell rule on cars and trucks (`rule` adds or overrides its fields); `s3` is an S3Endpoint."""
    zone = {"polygon": FIRE_LANE, "rules": ["parking"]}
    preset = {"fixed": {"sample_every": "1s", "zones": {"fire-lane": zone}}}
    config: dict[str, Any] = {
        "storage": {
            "evidence": s3.evidence_config(),
            "database": f"sqlite:///{root / 'cases.db'}",
            "spool_dir": str(root / "spool"),
        },
        "rules": {
            "parking": {"type": "dwell", "kind": "motor_vehicle_illegal_parking", "classes": ["car", "truck"], **rule}
        },
        "cameras": {camera_id: {"rtsp": url, "presets": preset} for camera_id, url in urls.items()},
    }
    if serving is not None:
        config["serving"] = serving
    return config


def results_dir(quick: bool) -> Path:
    """Full runs update the committed results; quick (CI) runs write under var/ and leave them alone."""
    return REPO / "var" / "bench-quick" if quick else RESULTS


def write_results(name: str, payload: dict[str, Any], report: str, *, quick: bool = False) -> tuple[Path, Path]:
    out = results_dir(quick)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{name}.json"
    md_path = out / f"{name}.md"
    json_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    md_path.write_text(report)
    return json_path, md_path
