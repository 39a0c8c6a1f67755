"""`citywatch replay` on real footage: the shipped demo clips, pictures cut from them, and the RTSP test server."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image

from citywatch.pipelines.config import FilingConfig
from citywatch.pipelines.replay import (
    DEFAULT_START,
    Replay,
    ReplayOptions,
    ReplayResult,
    VisitSampler,
    replay_config,
    split_camera,
)
from citywatch.pipelines.replay_reasons import NearMisses
from citywatch.pipelines.replay_report import LabelsError, write_report
from citywatch.pipelines.replay_sources import read_folder
from citywatch.vision.boxes import box_iou
from tests.vision.factories import boxes, frame, parking_rule, watching

DEMO = Path(__file__).resolve().parents[2] / "serving" / "demo"
CITY = DEMO / "city.yaml"


def run_replay(out: Path, camera: str, sources: list[str], **options: Any) -> tuple[Replay, ReplayResult]:
    config = replay_config(CITY)
    camera_id, preset_id = split_camera(config, camera)
    runner = Replay(config, camera_id, preset_id, out, config_name=str(CITY))
    return runner, asyncio.run(runner.run(sources, ReplayOptions(**options)))


@pytest.fixture(scope="module")
def parking(tmp_path_factory: pytest.TempPathFactory) -> tuple[Replay, ReplayResult, dict[str, Any]]:
    """The parking clip, a file that is not there, and the clip again (its cases are open by then)."""
    out = tmp_path_factory.mktemp("replay-parking")
    clip = str(DEMO / "parking-demo.mp4")
    runner, result = run_replay(out, "parking-lot-1", [clip, str(out / "missing.mp4"), clip])
    html, facts = write_report(result, runner.scene.zones)
    assert html == out / "report.html"
    return runner, result, facts


def test_the_parking_clip_files_a_case_in_the_fire_lane(parking: tuple[Replay, ReplayResult, dict[str, Any]]) -> None:
    runner, result, facts = parking
    out = result.out
    assert {c["zone"] for c in facts["cases"]} == {"fire-lane"}
    assert {(c["kind"], c["code"], c["rule"]) for c in facts["cases"]} == {
        ("motor_vehicle_illegal_parking", "09009", "illegal_parking")
    }
    first = facts["cases"][0]
    assert first["dwell_s"] >= 20.0  # the rule's min_dwell
    assert first["class_name"] in {"car", "truck", "bus"} and first["confidence"] >= 0.4
    for role in ("annotated", "frame"):
        assert (out / first["evidence"][role]).is_file()
    # The fire lane holds two parked vehicles, a silver car and a red SUV the model mostly calls truck (in some
    # frames both car and truck, each at 0.3-0.45 as well): exactly one case each, named by the commoner label.
    # The second pass of the clip found the same vehicles: attached to the open cases, nothing new filed.
    assert len(facts["cases"]) == len({c["case_id"] for c in facts["cases"]}) == 2
    assert sorted(c["class_name"] for c in facts["cases"]) == ["car", "truck"]
    first_box, second_box = (runner.store.get_case(c["case_id"]).box for c in facts["cases"])  # type: ignore[union-attr]
    assert box_iou(first_box, second_box) < 0.3  # two vehicles, not one vehicle twice
    assert sum(c["attaches"] for c in facts["cases"]) >= 1
    html = (out / "report.html").read_text(encoding="utf-8")
    assert f'id="case-{first["case_id"]}"' in html and first["evidence"]["annotated"] in html
    assert "http://" not in html and "https://" not in html  # opens from disk: nothing fetched
    assert json.loads((out / "report.json").read_text(encoding="utf-8")) == facts
    assert facts["frames_analysed"] > 0 and facts["frames_per_second"] > 0
    # Analysed as the patrol samples: a frame every `sample_every` (2 s) of the 52 s clip, per pass.
    assert facts["frames_analysed"] == 2 * 26 and facts["frames_decoded"] == 2 * 520


def test_an_unreadable_file_is_named_and_the_other_sources_still_run(
    parking: tuple[Replay, ReplayResult, dict[str, Any]],
) -> None:
    _, result, facts = parking
    assert facts["errors"] == [f"{result.out / 'missing.mp4'}: no such video file"]
    assert "missing.mp4: no such video file" in (result.out / "report.html").read_text(encoding="utf-8")
    assert len(facts["sources"]) == 3 and facts["frames_decoded"] == 2 * 520  # both passes of the clip ran


def test_near_misses_are_grouped_by_reason_with_examples(parking: tuple[Replay, ReplayResult, dict[str, Any]]) -> None:
    _, result, facts = parking
    groups = {group["reason"]: group for group in facts["near_misses"]}
    # The clip's many parked cars are outside the fire lane; people are no rule's class; far cars score low.
    assert {"outside_zones", "unused_class", "below_min_confidence", "attached"} <= set(groups)
    outside = groups["outside_zones"]
    assert outside["count"] > 100 and outside["examples"][0]["detail"] == "anchor outside fire-lane"
    confidences = [e["confidence"] for e in outside["examples"]]
    assert confidences == sorted(confidences, reverse=True) and len(confidences) == 6  # the most confident
    assert all(e["class_name"] == "person" for e in groups["unused_class"]["examples"])
    assert all(e["confidence"] < 0.4 for e in groups["below_min_confidence"]["examples"])
    case_ids = {c["case_id"] for c in facts["cases"]}
    assert all(int(e["detail"].rsplit(" ", 1)[1]) in case_ids for e in groups["attached"]["examples"])
    for group in groups.values():
        for example in group["examples"]:
            assert (result.out / example["thumbnail"]).is_file()


def test_labels_give_precision_per_kind(parking: tuple[Replay, ReplayResult, dict[str, Any]], tmp_path: Path) -> None:
    runner, result, _ = parking
    template = (result.out / "labels-template.csv").read_text(encoding="utf-8").splitlines()
    assert template[0] == "case,correct,kind,annotated" and len(template) == 1 + len(result.cases)
    first = result.cases[0]
    labels = tmp_path / "labels.csv"
    rows = ["case,correct", f"{first.case_id},true"]
    if len(result.cases) > 1:  # the second case named by its evidence file, as a person may write it
        rows.append(f"{Path(result.cases[1].evidence['annotated']).name},false")
    labels.write_text("\n".join(rows) + "\n", encoding="utf-8")
    _, facts = write_report(result, runner.scene.zones, labels)
    row = facts["precision"]["motor_vehicle_illegal_parking"]
    expected = {"filed": len(result.cases), "labelled": len(rows) - 1, "true": 1}
    assert {k: row[k] for k in expected} == expected
    assert row["precision"] == pytest.approx(1 / (len(rows) - 1))
    labels.write_text("case,correct\n999,true\n", encoding="utf-8")
    with pytest.raises(LabelsError, match="row 2: no filed case '999'"):
        write_report(result, runner.scene.zones, labels)


def _frames(clip: Path, seconds: list[float]) -> list[Image.Image]:
    """Pictures of `clip` at these times (the garbage clip shows a new photo every 2.5 s)."""
    pictures: list[Image.Image] = []
    with av.open(str(clip)) as container:
        for frame in container.decode(video=0):
            if pictures.__len__() < len(seconds) and frame.time is not None and frame.time >= seconds[len(pictures)]:
                pictures.append(frame.to_image())
    return pictures


def test_a_picture_folder_is_timed_by_exif_else_by_step_and_files_cases(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for number, picture in enumerate(_frames(DEMO / "garbage-demo.mp4", [1.0, 3.5, 6.0, 8.5])):
        exif = picture.getexif()
        if number % 2 == 1:
            exif.get_ifd(0x8769)[0x9003] = f"2026:03:01 09:3{number}:00"  # local time of Asia/Shanghai
        picture.save(folder / f"{number:02d}.jpg", quality=90, exif=exif)
    (folder / "04-broken.jpg").write_bytes(b"not a jpeg at all")

    read = list(read_folder(folder, DEFAULT_START, timedelta(seconds=5), "Asia/Shanghai"))
    times = [(p.name, p.captured_at, p.time_from) for p in read if not isinstance(p, Exception)]
    assert times == [
        ("photos/00.jpg", DEFAULT_START, "step"),
        ("photos/01.jpg", datetime(2026, 3, 1, 1, 31, tzinfo=UTC), "exif"),
        ("photos/02.jpg", datetime(2026, 3, 1, 1, 31, 5, tzinfo=UTC), "step"),
        ("photos/03.jpg", datetime(2026, 3, 1, 1, 33, tzinfo=UTC), "exif"),
    ]

    runner, result = run_replay(tmp_path / "out", "dome-1/bins", [str(folder)])
    _, facts = write_report(result, runner.scene.zones)
    assert facts["errors"] == [f"{folder / '04-broken.jpg'}: not a readable picture"]
    assert facts["frames_analysed"] == 4  # every picture, none skipped
    assert {c["kind"] for c in facts["cases"]} <= {"exposed_garbage", "overflowing_bin"}
    assert facts["cases"] and all(c["zone"] == "bin-corner" for c in facts["cases"])
    assert {c["code"] for c in facts["cases"]} <= {"06010", "06042"}


def test_an_rtsp_url_is_read_for_its_seconds(rtsp_server: Any, tmp_path: Path) -> None:
    runner, result = run_replay(tmp_path, "parking-lot-1", [rtsp_server.urls["demo"]], seconds=5.0)
    _, facts = write_report(result, runner.scene.zones)
    assert facts["errors"] == []
    # 5 s of a 10 fps stream, sampled every 2 s by the preset: frames at 0, 2 and 4 s.
    assert facts["frames_analysed"] == 3 and 40 <= facts["frames_decoded"] <= 52
    assert (tmp_path / "report.html").is_file()


@pytest.mark.parametrize(
    ("sampler", "times", "expected"),
    [
        # Unscheduled: back to back, a frame every sample_every (2 s), from 10 fps video.
        (
            VisitSampler(3, 2.0, None),
            [0.0, 0.1, 1.9, 2.0, 3.0, 4.05, 6.0, 6.1],
            [True, None, None, False, None, False, True, None],
        ),
        # Scheduled every 10 s: 2 samples 1 s apart, then nothing until 10 s after the visit began.
        (
            VisitSampler(2, 1.0, 10.0),
            [0.0, 0.5, 1.0, 2.0, 9.9, 10.0, 11.2],
            [True, None, False, None, None, True, False],
        ),
        # Every frame: all analysed, visits still begin every 10 s.
        (VisitSampler(2, 1.0, 10.0, all_frames=True), [0.0, 0.5, 9.0, 10.0], [True, False, False, True]),
    ],
)
def test_frames_are_sampled_as_the_patrol_takes_them(
    sampler: VisitSampler, times: list[float], expected: list[bool | None]
) -> None:
    assert [sampler.take(t) for t in times] == expected


def test_near_misses_name_implausible_boxes_and_tracks_never_confirmed() -> None:
    rule = parking_rule(min_confidence=0.4)  # dwell by track: its tracker starts tracks at 0.4
    scene = watching(rule)
    near = NearMisses(scene.zones, {name: t.high_conf_det_threshold for name, t in scene.trackers.items()})
    frame_wide = (0.0, 0.0, 200.0, 100.0, "car", 0.9)
    passing = (20.0, 40.0, 60.0, 80.0, "car", 0.6)  # seen once: its track is never confirmed
    parked = (120.0, 40.0, 160.0, 80.0, "car", 0.7)  # seen three samples: confirmed, gone before min_dwell
    sequence = [boxes(frame_wide, passing, parked), boxes(parked), boxes(parked)]
    for index, detections in enumerate(sequence):
        picture = frame(index * 2.0)
        assert scene.observe(picture, detections) == []
        near.observe(picture, detections, f"sample {index}", scene.confirmed)
    near.finish()
    groups = {reason: (count, examples) for reason, count, examples in near.groups()}
    assert set(groups) == {"box_implausible", "track_unconfirmed", "dwell_too_short"}
    (count, (implausible,)) = groups["box_implausible"]
    assert count == 1 and implausible.detail.startswith("area 1.0000 of the frame, aspect 2.00 (illegal_parking: area")
    (count, (unconfirmed,)) = groups["track_unconfirmed"]
    assert count == 1 and unconfirmed.box == passing[:4]
    assert "illegal_parking's tracker starts a track at 0.40" in unconfirmed.detail
    (count, (short,)) = groups["dwell_too_short"]
    assert count == 1 and short.box == parked[:4]


def test_a_pile_by_a_bin_in_the_garbage_clip_is_one_case(tmp_path: Path) -> None:
    """The demo's garbage clip (dome-1/bins): bags at the foot of overflowing bins were filed as exposed garbage
    and as overflowing bins; with the shipped `filing → related_kinds` each pile joins its bin's case."""
    clip = str(DEMO / "garbage-demo.mp4")
    config = replay_config(CITY)
    facts: dict[str, dict[str, Any]] = {}
    for name, filing in {"apart": FilingConfig(related_kinds=[]), "related": config.filing}.items():
        runner = Replay(config.model_copy(update={"filing": filing}), "dome-1", "bins", tmp_path / name)
        result = asyncio.run(runner.run([clip], ReplayOptions()))
        facts[name] = write_report(result, runner.scene.zones)[1]
    apart, related = facts["apart"]["cases_per_kind"], facts["related"]["cases_per_kind"]
    assert apart["exposed_garbage"] >= 1 and "exposed_garbage" not in related
    assert related == {"overflowing_bin": apart["overflowing_bin"]}  # every bin is still its own case
    merged = [c for c in facts["related"]["cases"] if c["also_seen_kinds"] == ["exposed_garbage"]]
    assert len(merged) == apart["exposed_garbage"]
    for case in merged:  # shown on a picture of the bin, not of the pile it was first filed for
        sidecar = json.loads((tmp_path / "related" / case["evidence"]["sidecar"]).read_text(encoding="utf-8"))
        assert (case["class_name"], sidecar["kind"], sidecar["class_name"]) == (
            "overflow",
            "overflowing_bin",
            "overflow",
        )
