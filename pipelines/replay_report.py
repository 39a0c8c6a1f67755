"""The replay report: `report.html` (self-contained: opens from disk, pictures are files beside it, no CDN),
`report.json` with the same facts, and `labels-template.csv` for a person to mark each filed case true/false.

`--labels labels.csv` turns a report into precision per kind: each row names a case by its id or by an evidence
file name (`annotated-4c12….jpg`, or its path in the report), and says `true` or `false` in `correct`.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import jinja2
import numpy as np
import supervision as sv

from citywatch.pipelines.replay import FiledCase, ReplayResult
from citywatch.pipelines.replay_reasons import TITLES, Sighting
from citywatch.vision.scene import WatchedZone

LABEL_COLUMNS = ("case", "correct", "kind", "annotated")
_TRUE = {"true", "yes", "y", "1", "t"}
_FALSE = {"false", "no", "n", "0", "f"}
_THUMB_WIDTH = 360


class LabelsError(ValueError):
    """The labels file cannot be read as labels; the message names the file and row."""


def read_labels(path: Path, cases: list[FiledCase]) -> dict[int, bool]:
    """Case id → correct, from a CSV whose first column names a case (id or evidence file) and `correct` says."""
    by_name = {Path(file).name: case.case_id for case in cases for file in case.evidence.values()}
    by_name |= {file: case.case_id for case in cases for file in case.evidence.values()}
    labels: dict[int, bool] = {}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise LabelsError(f"cannot read labels {path}: {error.strerror}") from None
    for number, row in enumerate(rows, start=2):
        name = (row.get("case") or "").strip()
        verdict = (row.get("correct") or "").strip().lower()
        if not name or not verdict:
            continue  # not labelled yet
        case_id = int(name) if name.isdigit() else by_name.get(name, by_name.get(Path(name).name))
        if case_id is None or case_id not in {case.case_id for case in cases}:
            raise LabelsError(f"{path} row {number}: no filed case {name!r} in this report")
        if verdict not in _TRUE | _FALSE:
            raise LabelsError(f"{path} row {number}: correct must be true or false, got {verdict!r}")
        labels[case_id] = verdict in _TRUE
    return labels


def precision(cases: list[FiledCase], labels: dict[int, bool]) -> dict[str, dict[str, Any]]:
    """Per kind: cases filed, labelled, labelled true, and precision (true / labelled; None if none labelled)."""
    table: dict[str, dict[str, Any]] = {}
    for case in cases:
        row = table.setdefault(case.kind, {"code": case.code, "filed": 0, "labelled": 0, "true": 0})
        row["filed"] += 1
        if case.case_id in labels:
            row["labelled"] += 1
            row["true"] += labels[case.case_id]
    for row in table.values():
        row["precision"] = round(row["true"] / row["labelled"], 4) if row["labelled"] else None
    return table


def write_labels_template(path: Path, cases: list[FiledCase]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(LABEL_COLUMNS)
        for case in cases:
            writer.writerow([case.case_id, "", case.kind, case.evidence.get("annotated", "")])


def thumbnail(sighting: Sighting, zones: tuple[WatchedZone, ...]) -> np.ndarray:
    """The frame scaled down, with the preset's zones outlined, the box in red and its anchor point."""
    image = sighting.frame.image.copy()
    height, width = image.shape[:2]
    for watched in zones:
        image = sv.draw_polygon(image, watched.zone.pixels(width, height), sv.Color.from_hex("#ffd400"), 2)
    image = sv.draw_rectangle(image, sv.Rect.from_xyxy(sighting.box), sv.Color.from_hex("#e8112d"), 2)
    x1, _, x2, y2 = sighting.box
    cv2.circle(image, (round((x1 + x2) / 2), round(y2)), 5, (255, 0, 255), -1)  # bottom centre: the zone anchor
    scale = _THUMB_WIDTH / width
    return cv2.resize(image, (_THUMB_WIDTH, max(1, round(height * scale))), interpolation=cv2.INTER_AREA)


def _near_misses(result: ReplayResult, zones: tuple[WatchedZone, ...]) -> list[dict[str, Any]]:
    folder = result.out / "near-misses"
    folder.mkdir(exist_ok=True)
    groups = []
    for reason, count, sightings in result.near_misses:
        examples = []
        for number, sighting in enumerate(sightings, start=1):
            file = folder / f"{reason}-{number}.jpg"
            cv2.imwrite(str(file), thumbnail(sighting, zones), [cv2.IMWRITE_JPEG_QUALITY, 80])
            examples.append(
                {
                    "class_name": sighting.class_name,
                    "confidence": round(sighting.confidence, 3),
                    "detail": sighting.detail,
                    "seen_at": sighting.frame.captured_at.isoformat(),
                    "source": sighting.source,
                    "box": [round(v, 1) for v in sighting.box],
                    "thumbnail": file.relative_to(result.out).as_posix(),
                }
            )
        groups.append({"reason": reason, "title": TITLES[reason], "count": count, "examples": examples})
    return groups


def report_facts(
    result: ReplayResult, zones: tuple[WatchedZone, ...], labels: dict[int, bool] | None = None
) -> dict[str, Any]:
    cases = []
    for case in result.cases:
        facts = asdict(case)
        facts["first_seen"] = case.first_seen.isoformat()
        facts["also_seen_kinds"] = list(case.also_seen_kinds)
        facts["confidence"] = round(case.confidence, 3)
        facts["dwell_s"] = round(case.dwell_s, 1)
        facts["correct"] = None if labels is None else labels.get(case.case_id)
        cases.append(facts)
    return {
        "config": result.config,
        "camera_id": result.camera_id,
        "preset_id": result.preset_id,
        "detector": result.detector,
        "model_version": result.model_version,
        "sources": result.sources,
        "errors": result.errors,
        "frames_decoded": result.frames_decoded,
        "frames_analysed": result.frames_analysed,
        "seconds": round(result.seconds, 2),
        "frames_per_second": round(result.frames_per_second, 2),
        "violations": result.violations,
        "cases_per_kind": dict(Counter(case.kind for case in result.cases)),
        "cases": cases,
        "precision": precision(result.cases, labels) if labels is not None else None,
        "near_misses": _near_misses(result, zones),
        "warnings": result.warnings,
    }


def write_report(
    result: ReplayResult, zones: tuple[WatchedZone, ...], labels_path: Path | None = None
) -> tuple[Path, dict[str, Any]]:
    """Write report.html, report.json and labels-template.csv into `result.out`; returns the HTML's path."""
    labels = read_labels(labels_path, result.cases) if labels_path is not None else None
    facts = report_facts(result, zones, labels)
    out = result.out
    (out / "report.json").write_text(json.dumps(facts, indent=2, ensure_ascii=False), encoding="utf-8")
    write_labels_template(out / "labels-template.csv", result.cases)
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True
    )
    html = out / "report.html"
    html.write_text(environment.get_template("replay_report.html").render(r=facts), encoding="utf-8")
    return html, facts


def summary_line(facts: dict[str, Any], html: Path) -> str:
    kinds = ", ".join(f"{kind} {n}" for kind, n in facts["cases_per_kind"].items()) or "no cases"
    errors = f"; {len(facts['errors'])} source error(s)" if facts["errors"] else ""
    return f"{kinds}; {facts['frames_analysed']} frames at {facts['frames_per_second']:.1f} frames/s{errors} → {html}"
