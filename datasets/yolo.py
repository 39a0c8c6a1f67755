"""Read a YOLO-format dataset (``data.yaml`` + ``images/<split>`` + ``labels/<split>``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from citywatch.models.evaluate import GroundTruthImage

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class DatasetError(ValueError):
    """The dataset is malformed; the message names the file."""


def read_data_yaml(manifest: Path) -> tuple[dict[str, object], tuple[str, ...]]:
    """A ``data.yaml`` and its class names (a list, or a mapping of class id → name in id order)."""
    try:
        data = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise DatasetError(f"{manifest}: cannot read: {error}") from None
    if not isinstance(data, dict):
        data = {}
    names = data.get("names")
    if isinstance(names, dict):
        names = [names[key] for key in sorted(names)]
    if not isinstance(names, list) or not names:
        raise DatasetError(f"{manifest}: 'names' must be a non-empty list or mapping of class names")
    return data, tuple(str(name) for name in names)


@dataclass(frozen=True)
class YoloDataset:
    root: Path
    names: tuple[str, ...]
    splits: dict[str, Path]
    """Split name → images directory."""

    @classmethod
    def open(cls, root: str | Path) -> YoloDataset:
        root = Path(root)
        data, names = read_data_yaml(root / "data.yaml")
        splits = {
            split: root / str(data[split]) for split in ("train", "val", "test") if isinstance(data.get(split), str)
        }
        return cls(root, names, splits)

    def images(self, split: str) -> list[Path]:
        """Image files of a split, sorted by name."""
        if split not in self.splits:
            raise DatasetError(f"{self.root}: no split {split!r}; splits: {', '.join(self.splits)}")
        return sorted(p for p in self.splits[split].iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)

    def labels(self, image: Path) -> np.ndarray:
        """The image's boxes as an N×5 array: class, cx, cy, w, h (fractions); N may be 0."""
        label = image.parent.parent.parent / "labels" / image.parent.name / (image.stem + ".txt")
        if not label.exists():
            return np.zeros((0, 5))
        rows = [line.split() for line in label.read_text(encoding="utf-8").splitlines() if line.strip()]
        if any(len(row) != 5 for row in rows):
            raise DatasetError(f"{label}: each line must be 'class cx cy w h'")
        return np.array(rows, dtype=float).reshape(-1, 5)


def ground_truth(dataset: YoloDataset, split: str) -> Iterator[GroundTruthImage]:
    """Each image of a split with its boxes in pixels (xyxy) and dataset class ids, for evaluation."""
    for path in dataset.images(split):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"{path}: cannot decode the image")
        labels = dataset.labels(path)
        height, width = image.shape[:2]
        cx, cy, w, h = (labels[:, i] for i in range(1, 5))
        boxes = np.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], 1)
        yield GroundTruthImage(
            id=path.name, image=image, boxes=boxes.reshape(-1, 4), class_ids=labels[:, 0].astype(int)
        )
