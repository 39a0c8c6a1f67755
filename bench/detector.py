"""Detector throughput: citywatch's `OnnxDetector.detect` against two baselines measured in the same run.

- bare onnxruntime: `session.run` of the same session on a batch tensor prepared once (no pre- or
  post-processing at all: the floor citywatch's wrapper can approach);
- ultralytics: `YOLO(model.onnx).predict` on the same images and batch size (only where ultralytics is
  installed: the train extra).

Same model file, same images, batch sizes 1, 4 and 8; methods interleaved per repetition so machine noise hits
all of them alike. Writes bench/results/detector.{json,md,png}.

    python bench/detector.py            # full: 20 repetitions
    python bench/detector.py --quick    # CI: 3 repetitions, batch 1 and 4
"""

from __future__ import annotations

import os

# Torch (inside ultralytics) leaves OpenMP threads spinning after each call; on 2 cores they steal the next
# method's CPU. Passive waiting keeps the interleaved measurements independent of each other's order.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import cProfile
import io
import pstats
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from common import REPO, SHARED, environment, summary, time_calls, write_results

from citywatch.models.builtin import resolve_model
from citywatch.vision.detector import OnnxDetector

DEMO_CLIP = REPO / "serving" / "demo" / "parking-demo.mp4"


def load_images(count: int) -> list[np.ndarray]:
    """Frames of the shipped demo clip, mixed with 640×640 garbage-set images when ../shared is present."""
    capture = cv2.VideoCapture(str(DEMO_CLIP))
    frames: list[np.ndarray] = []
    index = 0
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        if index % 10 == 0:  # one frame a second: different pictures, not near-copies
            frames.append(frame)
        index += 1
    capture.release()
    garbage = sorted((SHARED / "data" / "garbage_bins_atanu" / "images" / "val").glob("*.jpg"))
    for slot, path in zip(range(1, count, 2), garbage, strict=False):
        image = cv2.imread(str(path))
        if image is not None:
            frames[slot] = image
    if len(frames) < count:
        raise SystemExit(f"could only read {len(frames)} frames from {DEMO_CLIP}")
    return frames[:count]


def ultralytics_predict(model_path: Path) -> Callable[[list[np.ndarray], int], object] | None:
    try:
        from ultralytics import YOLO  # the train extra; absent from the serving install
    except ImportError:
        return None
    model = YOLO(str(model_path), task="detect")

    def predict(images: list[np.ndarray], batch: int) -> object:
        # rect=False: the square 640 letterbox the ONNX input takes (ultralytics reads the dynamic batch axis as
        # fully dynamic and would otherwise feed a rectangle), the same pre-processing citywatch does.
        return model.predict(images, batch=batch, imgsz=640, conf=0.25, iou=0.7, rect=False, verbose=False)

    return predict


def profile_detect(detector: OnnxDetector, images: list[np.ndarray]) -> str:
    """Where citywatch's time goes at this batch size (cProfile, top 12 by cumulative time)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(5):
        detector.detect(images)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(12)
    return out.getvalue()


def run(args: argparse.Namespace) -> dict[str, Any]:
    model_path = resolve_model(args.model)
    detector = OnnxDetector.from_path(model_path, threads=args.threads)
    detector.warmup()
    images = load_images(max(args.batches))
    predict = ultralytics_predict(model_path)
    rows = []
    for batch in args.batches:
        part = images[:batch]
        blob, _ = detector._preprocess(part, batch)  # the bare baseline gets its input for free
        input_name = detector.session.get_inputs()[0].name
        methods: dict[str, Callable[[], object]] = {
            "bare_onnxruntime": partial(detector.session.run, None, {input_name: blob}),
            "citywatch": partial(detector.detect, part),
        }
        if predict is not None:
            methods["ultralytics"] = partial(predict, part, batch)
        for call in methods.values():  # warm every path once at this batch size
            call()
        seconds: dict[str, list[float]] = {name: [] for name in methods}
        order = list(methods)
        for repeat in range(args.repeats):
            # Rotate who goes first, so no method always runs right after the same neighbour.
            for name in order[repeat % len(order) :] + order[: repeat % len(order)]:
                # onnxruntime's pool threads (ultralytics' session and ours) spin for a while after a run:
                # let them park so they do not eat the next method's CPU.
                time.sleep(0.1)
                seconds[name] += time_calls(methods[name], 1)
        row: dict[str, Any] = {"batch": batch}
        for name, values in seconds.items():
            stats = summary(values)
            row[name] = {**stats, "images_per_s": batch / stats["median_s"]}
        row["ratio_vs_bare"] = row["citywatch"]["images_per_s"] / row["bare_onnxruntime"]["images_per_s"]
        if "ultralytics" in row:
            row["ratio_vs_ultralytics"] = row["citywatch"]["images_per_s"] / row["ultralytics"]["images_per_s"]
        rows.append(row)
        print(
            f"batch {batch}: citywatch {row['citywatch']['images_per_s']:.1f} img/s, "
            f"bare {row['bare_onnxruntime']['images_per_s']:.1f} img/s, ratio {row['ratio_vs_bare']:.3f}"
            + (f", vs ultralytics {row['ratio_vs_ultralytics']:.2f}×" if "ultralytics" in row else "")
        )
    profile = profile_detect(detector, images[: max(args.batches)])
    return {
        "benchmark": "detector",
        "environment": environment(model_path),
        "threads": args.threads,
        "repeats": args.repeats,
        "ultralytics": predict is not None,
        "rows": rows,
        "profile": profile,
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        "# Detector throughput",
        "",
        f"{result['environment']['date']} · {result['environment']['cpu']} · {result['environment']['cpus']} CPUs · "
        f"onnxruntime {result['environment']['versions'].get('onnxruntime')} · {result['repeats']} repetitions, "
        "median",
        "",
        "| batch | bare onnxruntime img/s | citywatch img/s | citywatch / bare | ultralytics img/s "
        "| citywatch / ultralytics |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        ultra = row.get("ultralytics")
        ultra_rate = f"{ultra['images_per_s']:.1f}" if ultra else "not installed"
        ultra_ratio = f"{row['ratio_vs_ultralytics']:.2f}" if ultra else "–"
        lines.append(
            f"| {row['batch']} | {row['bare_onnxruntime']['images_per_s']:.1f} | {row['citywatch']['images_per_s']:.1f}"
            f" | {row['ratio_vs_bare']:.3f} | {ultra_rate} | {ultra_ratio} |"
        )
    worst = min(row["ratio_vs_bare"] for row in result["rows"])
    lines += [
        "",
        f"Target: citywatch ≥ 0.9 × bare onnxruntime at every batch size. Worst ratio here: {worst:.3f}.",
        "",
        "Bare onnxruntime is `session.run` on a batch tensor built once, so the ratio is what letterbox, "
        "normalisation, decoding and NMS cost on top of inference.",
        "",
        "## Profile of `OnnxDetector.detect` (cProfile, largest batch, 5 calls)",
        "",
        "```",
        result["profile"].strip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in ("bare_onnxruntime", "citywatch", "ultralytics") if m in result["rows"][0]]
    batches = [row["batch"] for row in result["rows"]]
    width = 0.8 / len(methods)
    figure, axes = plt.subplots(figsize=(7, 4))
    for offset, method in enumerate(methods):
        values = [row[method]["images_per_s"] for row in result["rows"]]
        axes.bar([i + offset * width for i in range(len(batches))], values, width, label=method)
    axes.set_xticks([i + width * (len(methods) - 1) / 2 for i in range(len(batches))], [f"batch {b}" for b in batches])
    axes.set_ylabel("images per second (median)")
    axes.set_title(f"YOLO11n 640 on {result['environment']['cpus']} CPUs")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 repetitions, batch 1 and 4 (CI)")
    parser.add_argument("--model", default="builtin:coco-yolo11n", help="ONNX model path or builtin:<name>")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    args = parser.parse_args()
    args.batches = [1, 4] if args.quick else [1, 4, 8]
    args.repeats = 3 if args.quick else 20
    result = run(args)
    _, md_path = write_results("detector", result, report(result), quick=args.quick)
    plot(result, md_path.with_suffix(".png"))
    print(f"wrote {md_path} (worst ratio vs bare: {min(r['ratio_vs_bare'] for r in result['rows']):.3f})")


if __name__ == "__main__":
    main()
