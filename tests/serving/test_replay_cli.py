"""`citywatch replay` from the command line: report, summary line, labels template, precision, source errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from typer.testing import CliRunner

from citywatch.serving.cli import app

DEMO = Path(__file__).resolve().parents[2] / "serving" / "demo"


def test_replay_command_writes_the_report_and_names_a_bad_source(tmp_path: Path) -> None:
    out, template, labels = tmp_path / "out", tmp_path / "to-label.csv", tmp_path / "labels.csv"
    labels.write_text("case,correct\n1,false\n", encoding="utf-8")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    args = [
        "replay",
        str(DEMO / "city.yaml"),
        str(broken),
        str(DEMO / "parking-demo.mp4"),
        "--camera",
        "parking-lot-1/fixed",
        "--out",
        str(out),
        "--emit-labels-template",
        str(template),
        "--labels",
        str(labels),
        "--start",
        "2026-05-04T10:00:00+08:00",
    ]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 1, result.output  # a source could not be read; the others ran
    assert f"{broken}: not a readable video" in result.output
    assert "motor_vehicle_illegal_parking" in result.output and "frames/s" in result.output
    assert str(out / "report.html") in result.output.replace("\n", "")
    assert "precision motor_vehicle_illegal_parking: 0.00 (0 of 1 labelled)" in result.output
    facts = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert facts["cases"][0]["first_seen"].startswith("2026-05-04T02:00")  # --start, in UTC
    rows = list(csv.DictReader(template.open(encoding="utf-8")))
    assert [int(r["case"]) for r in rows] == [c["case_id"] for c in facts["cases"]]


def test_replay_command_refuses_an_unknown_preset(tmp_path: Path) -> None:
    args = ["replay", str(DEMO / "city.yaml"), str(DEMO / "parking-demo.mp4"), "--camera", "dome-1"]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 2
    assert "camera 'dome-1' has presets parking, bins: name one as CAM/PRESET" in result.output
