"""Detect in the zone, not the whole frame: recall and cost of a preset's `detect:` against the whole frame.

    python bench/zone_detect.py [--threads 2] [--frames 9] [--quick]

Each variant runs the product's code (`DetectRegion.windows` → `cut` → one batch → `merge_windows`) against the
whole frame (`region: frame`, today's default) in the same run:
- field set (`bench/field`, garbage model, filing threshold from the demo config): the zone is a stand-in for a
  bin-station zone an operator would draw, the lower-middle of the picture (x 0.2–0.8, y 0.33–1.0); recall and
  false alarms at the threshold, image AP, per-pile AP50, ms per picture (`field_eval.evaluate_variant`);
- CCTV frames of `../shared/video/parking_lot_cctv_nasrfathy1.mp4` (640×480, elevated, vehicles 15–40 px) with
  the COCO model: a zone on the far parking row (x 0.78–1.0, y 0.35–0.65), vehicles (car/truck/bus) at the parking
  rule's min_confidence 0.4 whose bottom-centre lies in the zone, per frame; counted by eye on frame 100: 8.
Writes bench/results/zone_detect.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import supervision as sv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, environment, write_results
from field_eval import (
    COCO_MODEL,
    FIELD_DIR,
    GARBAGE_MODEL,
    LOW_CONF,
    VEHICLES,
    evaluate_variant,
    filing_threshold,
    load_field,
)
from zone_crop import detect_windows

from citywatch.vision.detections import CLASS_NAME
from citywatch.vision.detector import OnnxDetector
from citywatch.vision.regions import DetectRegion
from citywatch.vision.zones import Zone

Polygon = list[tuple[float, float]]
FIELD_ZONE: Polygon = [(0.2, 0.33), (0.8, 0.33), (0.8, 1.0), (0.2, 1.0)]
CCTV_CLIP = SHARED / "video" / "parking_lot_cctv_nasrfathy1.mp4"
CCTV_ZONE: Polygon = [(0.78, 0.35), (1.0, 0.35), (1.0, 0.65), (0.78, 0.65)]
CCTV_BY_EYE = {100: 8}
"""Vehicles with their bottom-centre in the zone, counted by eye on these frames: five cars in the row, a van and
two cars behind it (the machinery and a white shape behind the fence at the zone's top-left are not counted)."""
VEHICLE_CONF = 0.4

NOTES = [
    "## What it says",
    "",
    "- CCTV: the clip is a time-lapse of one lot over days; the far row is empty in most frames, full only around",
    "  frame 92–115. On frame 100 (8 vehicles in the zone by eye) the whole frame at 320 gives 3 boxes at 0.4 (one",
    "  spanning two cars, and the blue container called a truck); the zone crop (173×174 px, 1.8× the whole frame's",
    "  scale) finds all 8 plus one doubtful white shape behind the fence, at about the cost of one whole-frame run.",
    "  On the empty frames it adds no vehicle. Tiles add cost (×3–5) and little on this small zone.",
    "- Field set: these are close and mid handheld photos, where waste is already large. A zone crop here",
    "  (1.4× scale) keeps recall (42/65) and drops false alarms from 22 to 18 of 58; tiles raise recall",
    "  (to 55/65) but raise false alarms more (36/58) and cost ×5–10: tiles do not help this garbage model on",
    "  close views, and nothing here fixes its false alarms on clean pictures (that needs the model, section 4).",
    "- Time per picture is noisy on the shared 2-core machine (the whole frame was measured at 25 and 242 ms in",
    "  this run's two parts); the windows are one batch, so a zone crop costs one model run, tiles N + 1.",
]

VARIANTS: dict[str, DetectRegion] = {
    "frame": DetectRegion(),
    "zones": DetectRegion(region="zones"),
    "zones+tiles2x2": DetectRegion(region="zones", tiles=(2, 2)),
    "frame+tiles2x2": DetectRegion(tiles=(2, 2)),
}


def field_variant(detector: OnnxDetector, settings: DetectRegion) -> Callable[[np.ndarray], sv.Detections]:
    def run(image: np.ndarray) -> sv.Detections:
        return detect_windows(detector, image, settings, [FIELD_ZONE], conf=LOW_CONF)

    return run


def cctv_frames(count: int) -> list[tuple[int, np.ndarray]]:
    """`count` frames spread over the clip, frame 100 among them."""
    with av.open(str(CCTV_CLIP)) as container:
        frames = [np.asarray(f.to_ndarray(format="bgr24")) for f in container.decode(video=0)]
    picks = sorted({100, *np.linspace(0, len(frames) - 1, count - 1).astype(int).tolist()})
    return [(i, frames[i]) for i in picks]


def cctv_variant(
    detector: OnnxDetector, frames: list[tuple[int, np.ndarray]], settings: DetectRegion
) -> dict[str, Any]:
    zone = Zone("far-row", tuple(CCTV_ZONE))
    counts, confidences, seconds = {}, [], []
    for index, image in frames:
        start = time.perf_counter()
        found = detect_windows(detector, image, settings, [CCTV_ZONE], conf=LOW_CONF)
        seconds.append(time.perf_counter() - start)
        vehicle = np.isin(found.data[CLASS_NAME], VEHICLES)
        confidence = np.asarray(found.confidence)
        height, width = image.shape[:2]
        inside = zone.contains(found, width, height) & vehicle
        counts[index] = int(np.sum(inside & (confidence >= VEHICLE_CONF)))
        confidences.extend(confidence[inside & (confidence >= 0.1)].tolist())
    by_eye = {i: (counts[i], n) for i, n in CCTV_BY_EYE.items() if i in counts}
    return {
        "vehicles_at_threshold_per_frame": counts,
        "mean_vehicles_at_threshold": round(float(np.mean(list(counts.values()))), 2),
        "by_eye_frames": {str(i): {"found": f, "there": n} for i, (f, n) in by_eye.items()},
        "median_vehicle_confidence_in_zone": round(float(np.median(confidences)), 3) if confidences else None,
        "ms_per_frame_median": round(1000 * float(np.median(seconds)), 1),
    }


def ratio(value: float | None, base: float | None) -> float | None:
    return round(value / base, 2) if value is not None and base else None


def report(payload: dict[str, Any]) -> str:
    field, cctv = payload["field"], payload["cctv"]
    base, cbase = field["frame"], cctv["frame"]
    lines = [
        "# Detect in the zone, not the whole frame",
        "",
        f"`bench/zone_detect.py`; CPU: {payload['environment']['cpu']}, {payload['environment']['cpus']} cores "
        "shared, niced, 2 onnxruntime threads: times are indicative, ratios are against `frame` in the same run.",
        "",
        f"## Field set, garbage model at 320, filing threshold {payload['threshold']} ({payload['pictures']} pictures;"
        f" zone: lower-middle x 0.2–0.8, y 0.33–1.0)",
        "",
        "| variant | recall @thr | false alarms @thr | image AP (chance) | pile AP50 | ms/picture (× frame) |",
        "|---|---|---|---|---|---|",
    ]
    for name, v in field.items():
        r, fa = v["recall_at_threshold"], v["false_alarms_at_threshold"]
        lines.append(
            f"| {name} | {r['rate']} ({r['hits']}/{r['of']}) | {fa['rate']} ({fa['hits']}/{fa['of']}) | "
            f"{v['image_ap']} ({v['chance_ap']}) | {v['pile_ap50']} | {v['ms_per_picture_median']} "
            f"(×{ratio(v['ms_per_picture_median'], base['ms_per_picture_median'])}) |"
        )
    lines += [
        "",
        f"## CCTV parking clip, COCO model at 320 ({len(cbase['vehicles_at_threshold_per_frame'])} frames; zone: far "
        f"parking row x 0.78–1.0, y 0.35–0.65; vehicles ≥ {VEHICLE_CONF} with their bottom-centre in the zone)",
        "",
        "| variant | vehicles per frame (× frame) | frame 100: found / there by eye | median confidence in zone "
        "| ms/frame (× frame) |",
        "|---|---|---|---|---|",
    ]
    for name, v in cctv.items():
        eye = " ".join(f"{e['found']}/{e['there']}" for e in v["by_eye_frames"].values())
        lines.append(
            f"| {name} | {v['mean_vehicles_at_threshold']} "
            f"(×{ratio(v['mean_vehicles_at_threshold'], cbase['mean_vehicles_at_threshold'])}) | {eye} | "
            f"{v['median_vehicle_confidence_in_zone']} | {v['ms_per_frame_median']} "
            f"(×{ratio(v['ms_per_frame_median'], cbase['ms_per_frame_median'])}) |"
        )
    lines += ["", *payload["notes"], ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=9, help="CCTV frames (frame 100 always among them)")
    parser.add_argument("--field-dir", type=Path, default=FIELD_DIR)
    parser.add_argument("--quick", action="store_true", help="3 CCTV frames, first 20 pictures; var/bench-quick")
    args = parser.parse_args()
    pictures = load_field(args.field_dir)
    frames = cctv_frames(3 if args.quick else args.frames)
    if args.quick:
        pictures = pictures[:20]
    threshold = filing_threshold()
    garbage = OnnxDetector.from_path(GARBAGE_MODEL, threads=args.threads)
    coco = OnnxDetector.from_path(COCO_MODEL, threads=args.threads)
    field = {name: evaluate_variant(pictures, field_variant(garbage, s), threshold) for name, s in VARIANTS.items()}
    cctv = {name: cctv_variant(coco, frames, settings) for name, settings in VARIANTS.items()}
    payload: dict[str, Any] = {
        "environment": environment(GARBAGE_MODEL),
        "threshold": threshold,
        "pictures": len(pictures),
        "variants": {name: s.model_dump(mode="json") for name, s in VARIANTS.items()},
        "field": field,
        "cctv": cctv,
        "notes": NOTES,
    }
    _, md_path = write_results("zone_detect", payload, report(payload), quick=args.quick)
    print(md_path.read_text())


if __name__ == "__main__":
    main()
