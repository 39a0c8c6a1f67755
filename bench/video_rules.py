"""Replay the clips in ../shared/video through `citywatch replay` with the city in bench/video_rules.yaml.

    python bench/video_rules.py [--video-dir ../shared/video] [--out var/video-rules] [--config bench/video_rules.yaml]

The clips are read where they lie (they carry no licence: never copy them into the repo). Each clip is replayed as
the camera named like the clip (`default` for a clip without one): the preset's schedule cuts it into visits the
way a PTZ patrol would see it, the serving path files cases into a throwaway database, and the replay report
(`<out>/<clip>/report.html`) shows them and the near misses. The script prints per clip the violations per rule,
the cases filed, the frames analysed per second, and what a right answer looks like.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from pathlib import Path

from citywatch.pipelines.replay import Replay, ReplayOptions, replay_config
from citywatch.pipelines.replay_report import write_report

REPO = Path(__file__).resolve().parents[1]
EXPECTED = {
    "parking_lot_cctv_nasrfathy1": "one case per car parked in the front row of bays; none for moving cars",
    "highway_traffic_mihailrc": "none: all traffic moves",
    "crosswalk_pedestrians_varshini": "none: the bicycle is in the first shot only (~1 s) and scores 0.16",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video-dir", type=Path, default=REPO.parent / "shared" / "video")
    parser.add_argument("--out", type=Path, default=REPO / "var" / "video-rules")
    parser.add_argument("--config", type=Path, default=REPO / "bench" / "video_rules.yaml")
    args = parser.parse_args()
    clips = sorted(args.video_dir.glob("*.mp4"))
    if not clips:
        parser.error(f"no .mp4 clips in {args.video_dir}")
    config = replay_config(args.config)
    summary = {}
    for path in clips:
        camera = path.stem if path.stem in config.cameras else "default"
        replay = Replay(config, camera, "fixed", args.out / path.stem, config_name=str(args.config))
        result = asyncio.run(replay.run([str(path)], ReplayOptions()))
        html, facts = write_report(result, replay.scene.zones)
        by_rule = dict(Counter(case["rule"] for case in facts["cases"]))
        expected = EXPECTED.get(path.stem, "unknown")
        summary[path.stem] = {
            "violations": facts["violations"],
            "cases_by_rule": by_rule,
            "expected": expected,
            "frames_analysed": facts["frames_analysed"],
            "frames_per_second": facts["frames_per_second"],
        }
        print(
            f"{path.stem}: {facts['violations']} violation(s), cases {by_rule} at {facts['frames_per_second']:.1f} "
            f"frames/s (expected: {expected}) -> {html}"
        )
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
