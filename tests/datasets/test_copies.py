"""copies_per_group: one copy per source picture of an augmented export, the others reported as drops."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from citywatch.datasets.builder import build_dataset
from citywatch.datasets.copies import keep_copies
from citywatch.datasets.recipe import RecipeError, SourceConfig, load_recipe
from citywatch.datasets.sample import Sample
from citywatch.datasets.validate import Drop, DropReason

EXPORT = {
    # Roboflow names: <source picture>_jpg.rf.<hash>; 000001 and 000002 have two copies in train, 000003 one in val
    "train": ["000001_jpg.rf.aa", "000001_jpg.rf.bb", "000002_jpg.rf.cc", "000002_jpg.rf.dd"],
    "valid": ["000003_jpg.rf.ee"],
}


def _sample(item: str, group: str, split: str | None) -> Sample:
    return Sample("s", item, ".png", lambda: b"", np.zeros((2, 2, 3), np.uint8), np.zeros((0, 5)), group, split)


def test_keep_copies_keeps_the_first_n_per_group_and_split() -> None:
    samples = [
        _sample("a1", "a", "train"),
        _sample("a2", "a", "train"),
        _sample("a3", "a", "val"),
        _sample("b1", "b", "train"),
        _sample("a4", "a", "train"),
    ]
    drops: list[Drop] = []
    kept = list(keep_copies(samples, 1, drops.append))
    assert [s.item for s in kept] == ["a1", "a3", "b1"]
    assert [(d.item, d.reason) for d in drops] == [("a2", DropReason.EXTRA_COPY), ("a4", DropReason.EXTRA_COPY)]
    assert [s.item for s in keep_copies(samples, 2, [].append)] == ["a1", "a2", "a3", "b1"]
    with pytest.raises(ValueError, match="copies must be >= 1"):
        list(keep_copies(samples, 0, [].append))


def _export(root: Path) -> Path:
    for split, stems in EXPORT.items():
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for index, stem in enumerate(stems):
            image = cv2.resize(
                np.random.default_rng(index + 10 * (split == "valid")).integers(0, 256, (6, 8, 3), np.uint8), (80, 60)
            )
            cv2.imwrite(str(root / split / "images" / f"{stem}.jpg"), image)
            (root / split / "labels" / f"{stem}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "train/images", "val": "valid/images", "names": ["g"]}))
    return root


def _recipe(tmp_path: Path, source: Path, copies: object) -> Path:
    entry = {
        "name": "rf",
        "path": str(source),
        "licence": "CC BY 4.0",
        "class_map": {"g": "garbage"},
        "splits": {"train": "train", "val": "val"},
        "group_pattern": r"^(.+?)_(?:jpg|jpeg|png)\.rf\.",
        "copies_per_group": copies,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"name": "one-copy", "names": ["garbage"], "sources": [entry]}))
    return path


def test_a_recipe_keeps_one_copy_per_source_picture(tmp_path: Path) -> None:
    source = _export(tmp_path / "export")
    result = build_dataset(load_recipe(_recipe(tmp_path, source, 1)), tmp_path / "out", overwrite=True)
    kept = sorted(p.name for p in (tmp_path / "out" / "images" / "train").iterdir())
    assert kept == ["rf__000001_jpg.rf.aa.jpg", "rf__000002_jpg.rf.cc.jpg"]
    assert result.manifest.splits["val"].images == 1
    assert result.manifest.drops == {DropReason.EXTRA_COPY.value: 2}
    assert result.manifest.sources[0].images_read == 5
    assert result.manifest.sources[0].images_kept == 3


def test_copies_per_group_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="copies_per_group"):
        load_recipe(_recipe(tmp_path, _export(tmp_path / "export"), 0))


def test_the_v2_recipe_keeps_one_copy_and_groups_the_parking_camera(repo_root: Path) -> None:
    recipe = load_recipe(repo_root / "datasets" / "recipes" / "garbage-v2.yaml")
    atanu, parking = recipe.sources
    assert recipe.names == ["garbage", "garbage_bin", "overflow"]
    assert isinstance(atanu, SourceConfig) and isinstance(parking, SourceConfig)
    assert atanu.copies_per_group == 1
    assert atanu.group_of("000049_jpg.rf.0504a4319f0ab335e339f183e7d937d7.jpg") == "000049"
    assert parking.group_of("parking_lot_1_mp4-107_jpg.rf.2c1405d9c7a59c9bf912dac810e87b9e.jpg") == "parking_lot_1"
    assert set(parking.class_map.values()) == {None}
