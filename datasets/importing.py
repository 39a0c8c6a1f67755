"""Outside YOLO datasets as a dataset source: read, check each label against the image, remap classes.

`YoloFolderSource` reads a folder with ``data.yaml`` (names, split folders) and ``images/<split>`` +
``labels/<split>``; a split folder given as ``train/images`` (Roboflow's layout) works too. Every image it
yields carries its labels already mapped onto the recipe's classes; every label line it refuses becomes a
`Drop` with its reason (see `citywatch.datasets.validate`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from citywatch.datasets.recipe import DatasetRecipe, RecipeError, SourceConfig
from citywatch.datasets.sample import Sample
from citywatch.datasets.validate import Drop, DropReason, check_labels
from citywatch.datasets.yolo import IMAGE_SUFFIXES, DatasetError, read_data_yaml

__all__ = ["YoloFolderSource"]


def _label_path(image: Path) -> Path:
    """YOLO's rule: the last 'images' folder in the path becomes 'labels', and the suffix '.txt'."""
    parts = list(image.parts)
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] == "images":
            parts[index] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


class YoloFolderSource:
    """One outside dataset in YOLO layout, mapped onto a recipe's classes."""

    def __init__(self, config: SourceConfig, recipe: DatasetRecipe) -> None:
        self.config = config
        self.name = config.name
        root = config.path
        try:
            data, self.source_names = read_data_yaml(root / "data.yaml")
        except DatasetError as error:
            raise RecipeError(f"source {config.name!r}: {error}") from None
        missing = [n for n in self.source_names if n not in config.class_map]
        extra = sorted(set(config.class_map) - set(self.source_names))
        if missing or extra:
            raise RecipeError(
                f"source {config.name!r}: class_map must name every source class {list(self.source_names)} "
                f"(map it to a model class, or to null to exclude it); missing {missing}, not in the source {extra}"
            )
        self.class_ids = recipe.class_ids(config)
        self.split_dirs: dict[str, Path] = {}
        for split in ("train", "val", "valid", "test"):
            folder = data.get(split)
            if isinstance(folder, str):
                self.split_dirs[split] = (root / folder).resolve()
        if config.splits is not None:
            unknown = sorted(set(config.splits) - set(self.split_dirs))
            if unknown:
                raise RecipeError(
                    f"source {config.name!r}: splits {unknown} are not in {root / 'data.yaml'} "
                    f"(it has {sorted(self.split_dirs)})"
                )

    def samples(self, report: Callable[[Drop], None]) -> Iterator[Sample]:
        """Each readable image of the splits used, with its kept labels; drops go to `report`."""
        used = self.config.splits if self.config.splits is not None else {s: "" for s in self.split_dirs}
        root = self.config.path.resolve()
        for source_split, target_split in used.items():
            folder = self.split_dirs[source_split]
            for image_path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
                item = str(image_path.relative_to(root))
                image = cv2.imdecode(np.frombuffer(image_path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
                if image is None:
                    report(Drop(self.name, item, DropReason.UNREADABLE_IMAGE, "cv2 cannot decode it"))
                    continue
                label_path = _label_path(image_path)
                text = label_path.read_text(encoding="utf-8") if label_path.exists() else ""
                labels, drops = check_labels(
                    text,
                    image_size=(image.shape[0], image.shape[1]),
                    source_names=self.source_names,
                    class_map=self.class_ids,
                    source=self.name,
                    item=item,
                )
                for drop in drops:
                    report(drop)
                yield Sample(
                    source=self.name,
                    item=item,
                    suffix=image_path.suffix.lower(),
                    read=image_path.read_bytes,
                    image=image,
                    labels=labels,
                    group=f"{self.name}/{self.config.group_of(image_path.name)}",
                    split=target_split or None,
                )
