"""Box sizes and shapes in the training labels and the field set: what a rule's plausibility limits rest on.

    python bench/box_stats.py

Prints, per data set and class, the box area as a fraction of the picture and the aspect (width / height in
pixels) at a few percentiles. The defaults of `Rule.min_area`, `max_area`, `min_aspect` and `max_aspect`
(vision/rules.py) are chosen beyond the 0.5th and 99.5th percentiles of every class here, with margin.

- `garbage_bins_atanu`: YOLO labels of 640×640 pictures (Roboflow resized them square, so its aspects are
  those of the stretched pictures: an extra factor of up to ~1.8 either way).
- `parking_occupancy_kurss`: YOLO labels of one fixed parking-lot camera (854×480 mostly); each picture's size
  is read for the aspect.
- field set (`bench/field/labels.csv`): the by-eye pile boxes of handheld photos, normalised; their pictures
  are not in the repository (`bench/field_fetch.py`), so their aspect is taken as in a 4:3 landscape picture
  (portrait photos give a third less): a rough guide only.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED

DATA = SHARED / "data"
FIELD_LABELS = REPO / "bench" / "field" / "labels.csv"
PERCENTILES = (0.0, 0.5, 5.0, 50.0, 95.0, 99.5, 100.0)


def yolo_boxes(root: Path) -> dict[str, list[tuple[float, float]]]:
    """Class name → (area fraction, pixel aspect) of every labelled box under `root` (a YOLO data set)."""
    names = yaml.safe_load((root / "data.yaml").read_text(encoding="utf-8"))["names"]
    found: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for label in sorted((root / "labels").rglob("*.txt")):
        split = label.parent.name
        pictures = list((root / "images" / split).glob(label.stem + ".*"))
        width, height = Image.open(pictures[0]).size if pictures else (1, 1)
        for line in label.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) != 5:
                continue  # polygons were converted to boxes by the data set's builder; skip anything else
            w, h = float(parts[3]), float(parts[4])
            if w > 0 and h > 0:
                found[names[int(parts[0])]].append((w * h, (w * width) / (h * height)))
    return found


def field_boxes() -> dict[str, list[tuple[float, float]]]:
    """The field set's pile boxes (normalised x1 y1 x2 y2), aspect as in a 4:3 landscape picture."""
    piles: list[tuple[float, float]] = []
    with FIELD_LABELS.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for box in filter(None, (row.get("piles") or "").split(";")):
                x1, y1, x2, y2 = (float(v) for v in box.split())
                w, h = x2 - x1, y2 - y1
                if w > 0 and h > 0:
                    piles.append((w * h, (w * 4) / (h * 3)))
    return {"pile": piles}


def table(title: str, found: dict[str, list[tuple[float, float]]]) -> str:
    heads = " ".join(f"{'p' + format(p, 'g'):>8}" for p in PERCENTILES)
    lines = [f"## {title}", f"{'class':<12} {'n':>5} {'':<7} {heads}"]
    for name, values in sorted(found.items()):
        data = np.array(values)
        for column, what in ((0, "area"), (1, "aspect")):
            row = " ".join(f"{v:8.4f}" for v in np.percentile(data[:, column], PERCENTILES))
            lines.append(f"{name:<12} {len(data):5d} {what:<7} {row}")
    return "\n".join(lines)


def main() -> None:
    print(table("garbage_bins_atanu (640×640 training pictures)", yolo_boxes(DATA / "garbage_bins_atanu")))
    print()
    print(table("parking_occupancy_kurss (one parking-lot camera)", yolo_boxes(DATA / "parking_occupancy_kurss")))
    print()
    print(table("field set piles (bench/field/labels.csv; aspect as 4:3)", field_boxes()))


if __name__ == "__main__":
    main()
