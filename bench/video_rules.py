"""Run the detector and a rule set over every clip in ../shared/video and write each violation's evidence.

    python bench/video_rules.py [--video-dir ../shared/video] [--out var/video-rules] [--threads 2]

The clips are read where they lie (they carry no licence: never copy them into the repo). Each clip is cut into
*visits* the way a PTZ patrol would see it: every `visit_every` seconds of video, `frames_per_visit` frames
`frame_step` apart, bracketed by `PresetScene.begin_visit` / `end_visit`. Time comes from the video position.
Evidence (annotated frame, crop, JSON sidecar) goes to `<out>/<clip>/`; the script prints per clip how many
violations fired, per rule. Zones and rules are chosen per clip below, with what a right answer looks like.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from citywatch.vision.detector import OnnxDetector
from citywatch.vision.evidence import render_evidence
from citywatch.vision.frame import Frame
from citywatch.vision.rules import DwellRule, GroupRule
from citywatch.vision.scene import PresetScene, WatchedZone
from citywatch.vision.violation import Violation
from citywatch.vision.zones import Zone

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "default" / "citywatch-coco-yolo11n.onnx"
T0 = datetime(2026, 5, 4, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai: inside every rule's hours
VEHICLES = frozenset({"car", "truck", "bus"})


def stopped_vehicle(name: str, min_dwell_s: float) -> DwellRule:
    """A vehicle stays where it stopped: dwell by box overlap (patrol rates), car/truck/bus as one group."""
    return DwellRule(
        name=name,
        kind="motor_vehicle_illegal_parking",
        classes=VEHICLES,
        min_confidence=0.4,
        min_dwell=timedelta(seconds=min_dwell_s),
        max_gap=timedelta(seconds=4),
        repeat_every=timedelta(minutes=10),
        identity="overlap",
        min_overlap=0.5,
    )


@dataclass(frozen=True)
class ClipPlan:
    zones: tuple[WatchedZone, ...]
    visit_every: float
    """Seconds of video between the starts of two visits."""
    frames_per_visit: int
    frame_step: float
    """Seconds of video between two frames of one visit."""
    expected: str
    """What a right answer looks like, for the reader of the evidence."""


PLANS = {
    # Fixed elevated camera over a car park, time-lapse: the marked bays in front fill up during the clip. The
    # zone is the front row of bays, declared closed (temporary no-parking for the works behind): every car that
    # parks there and stays should fire once; cars driving along the aisle should not.
    "parking_lot_cctv_nasrfathy1": ClipPlan(
        zones=(
            WatchedZone(
                Zone("closed-bays", ((0.0, 0.63), (0.72, 0.63), (0.77, 0.70), (0.0, 0.86))),
                (stopped_vehicle("parking_in_closed_bays", 2.0),),
            ),
        ),
        visit_every=0.5,
        frames_per_visit=2,
        frame_step=0.2,
        expected="one violation per car parked in the front row of bays; none for moving cars",
    ),
    # Overhead motorway: everything moves. A stopped vehicle on the carriageway (near half, where a car is big
    # enough to judge) would be the violation; the right answer is none.
    "highway_traffic_mihailrc": ClipPlan(
        zones=(
            WatchedZone(
                Zone("carriageway", ((0.40, 0.25), (0.62, 0.25), (0.95, 1.0), (0.03, 1.0))),
                (stopped_vehicle("stopped_on_carriageway", 2.0),),
            ),
        ),
        visit_every=1.0,
        frames_per_visit=3,
        frame_step=0.3,
        expected="none: all traffic moves",
    ),
    # Pedestrians on a crosswalk; the clip cuts between shots. The sidewalk on the right holds a parked red
    # bicycle in the first shot (disorderly non-motor parking if that sidewalk is a no-parking zone), but that
    # shot lasts about a second and the nano model scores the bicycle 0.16, so nothing should fire. A vending
    # rule (a person with an umbrella staying together across visits) must not fire on people who walk through
    # carrying umbrellas.
    "crosswalk_pedestrians_varshini": ClipPlan(
        zones=(
            WatchedZone(
                Zone("right-sidewalk", ((0.70, 0.30), (1.0, 0.30), (1.0, 0.72), (0.70, 0.72))),
                (
                    DwellRule(
                        name="bicycle_on_sidewalk",
                        kind="non_motor_vehicle_disorderly_parking",
                        classes=frozenset({"bicycle", "motorcycle"}),
                        min_confidence=0.35,
                        min_dwell=timedelta(seconds=4),
                        max_gap=timedelta(seconds=3),  # people walk in front of it: occluded for a visit or two
                        repeat_every=timedelta(minutes=10),
                        identity="overlap",
                        min_overlap=0.5,
                    ),
                ),
            ),
            WatchedZone(
                Zone("crosswalk", ((0.0, 0.55), (1.0, 0.55), (1.0, 1.0), (0.0, 1.0))),
                (
                    GroupRule(
                        name="vending_on_crosswalk",
                        kind="unlicensed_mobile_vending",
                        classes=frozenset({"person", "umbrella"}),
                        min_confidence=0.35,
                        visits=2,
                        of=3,
                        group_distance=0.3,
                        min_overlap=0.5,  # a stall does not move; walkers do, even between visits 1 s apart
                    ),
                ),
            ),
        ),
        # Visits 3 s apart: still far shorter than a patrol's minutes, but long enough for a walker to move on.
        visit_every=3.0,
        frames_per_visit=3,
        frame_step=0.5,
        expected="none: the bicycle is in the first shot only (~1 s) and scores 0.16; nobody vends",
    ),
}


def default_plan() -> ClipPlan:
    """For a clip without a plan: the whole picture, vehicles that stop for 3 s."""
    whole = Zone("whole-frame", ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)))
    return ClipPlan((WatchedZone(whole, (stopped_vehicle("stopped_vehicle", 3.0),)),), 1.0, 2, 0.3, "unknown")


def visit_frames(path: Path, plan: ClipPlan) -> list[list[tuple[float, np.ndarray]]]:
    """The clip's frames grouped by visit, each with its time in seconds; read sequentially (no seeking)."""
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    wanted: dict[int, int] = {}  # frame index -> visit index
    start, visit = 0.0, 0
    while round(start * fps) < total:
        for k in range(plan.frames_per_visit):
            index = round((start + k * plan.frame_step) * fps)
            if index < total:
                wanted[index] = visit
        start += plan.visit_every
        visit += 1
    visits: list[list[tuple[float, np.ndarray]]] = [[] for _ in range(visit)]
    index = 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        if index in wanted:
            visits[wanted[index]].append((index / fps, image))
        index += 1
    capture.release()
    return [v for v in visits if v]


def _clear_previous_run(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*"):
        if old.is_file() and old.suffix in {".jpg", ".json"}:
            old.unlink()


def run_clip(path: Path, plan: ClipPlan, detector: OnnxDetector, out: Path) -> list[Violation]:
    scene = PresetScene(path.stem, "fixed", plan.zones, model_version=detector.info.version)
    _clear_previous_run(out)
    fired: list[Violation] = []
    for visit in visit_frames(path, plan):
        scene.begin_visit(T0 + timedelta(seconds=visit[0][0]))
        detections = detector.detect([image for _, image in visit])  # one batch per visit
        for (second, image), found in zip(visit, detections, strict=True):
            frame = Frame(image, path.stem, "fixed", T0 + timedelta(seconds=second), round(second * 1000))
            fired += scene.observe(frame, found)
        fired += scene.end_visit()
    for number, violation in enumerate(fired, start=1):
        stem = f"{number:02d}-{violation.rule}-{violation.zone}"
        evidence = render_evidence(violation, jpeg_quality=85)
        (out / f"{stem}-annotated.jpg").write_bytes(evidence["annotated"].data)
        (out / f"{stem}-crop.jpg").write_bytes(evidence["crop"].data)
        (out / f"{stem}.json").write_bytes(evidence["sidecar"].data)
    return fired


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video-dir", type=Path, default=REPO.parent / "shared" / "video")
    parser.add_argument("--out", type=Path, default=REPO / "var" / "video-rules")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    clips = sorted(args.video_dir.glob("*.mp4"))
    if not clips:
        parser.error(f"no .mp4 clips in {args.video_dir}")
    detector = OnnxDetector.from_path(MODEL, conf=0.25, threads=args.threads)
    summary = {}
    for path in clips:
        plan = PLANS.get(path.stem) or default_plan()
        began = time.perf_counter()
        fired = run_clip(path, plan, detector, args.out / path.stem)
        by_rule = Counter(v.rule for v in fired)
        summary[path.stem] = {"violations": len(fired), "by_rule": dict(by_rule), "expected": plan.expected}
        print(
            f"{path.stem}: {len(fired)} violation(s) {dict(by_rule)} in {time.perf_counter() - began:.1f} s "
            f"(expected: {plan.expected}) -> {args.out / path.stem}"
        )
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
