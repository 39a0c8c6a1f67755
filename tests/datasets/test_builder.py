"""Building a dataset from tiny hand-made sources: drops reported, splits by group, manifest hash."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from citywatch.datasets.builder import DatasetExistsError, build_dataset
from citywatch.datasets.manifest import DatasetManifest, content_hash
from citywatch.datasets.recipe import RecipeError, load_recipe
from citywatch.datasets.yolo import YoloDataset

LABELS = {
    # file stem → label text (source classes: 0 trash, 1 bin, 2 car)
    "cam1_a": "0 0.5 0.5 0.2 0.2\n1 0.2 0.2 0.1 0.1\n",
    "cam1_b": "0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.1 0.1\n",  # unknown class id 7
    "cam2_a": "",  # empty: a background image
    "cam2_b": "1 0.99 0.5 0.2 0.2\n2 0.5 0.5 0.3 0.3\n",  # outside the image; 'car' excluded by the map
    "cam3_a": "0 0.5 0.5 0.2\n",  # malformed
    "cam3_b": "1 0.5 0.5 0.4 0.4\n",
}


def _image(seed: int) -> np.ndarray:
    small = np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (80, 60), interpolation=cv2.INTER_CUBIC)


def make_source(root: Path) -> Path:
    for split in ("train",):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
    for index, (stem, text) in enumerate(LABELS.items()):
        cv2.imwrite(str(root / "images" / "train" / f"{stem}.png"), _image(index))
        (root / "labels" / "train" / f"{stem}.txt").write_text(text)
    (root / "images" / "train" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "names": ["trash", "bin", "car"]}))
    return root


def make_recipe(tmp_path: Path, source: Path, **changes: object) -> Path:
    recipe = {
        "name": "tiny",
        "names": ["garbage", "garbage_bin"],
        "sources": [
            {
                "name": "src",
                "path": str(source),
                "licence": "CC0",
                "class_map": {"trash": "garbage", "bin": "garbage_bin", "car": None},
                "group_pattern": r"^(cam\d+)_",
            }
        ],
        "split": {"fractions": {"train": 0.5, "val": 0.5}, "seed": 0},
    }
    recipe.update(changes)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return make_source(tmp_path / "source")


def test_build_reports_every_drop_and_keeps_the_rest(tmp_path: Path, source: Path) -> None:
    result = build_dataset(load_recipe(make_recipe(tmp_path, source)), tmp_path / "out")
    manifest = result.manifest
    assert manifest.drops == {
        "malformed line": 1,
        "unknown class id": 1,
        "class not mapped": 1,
        "box outside the image": 1,
        "unreadable image": 1,
    }
    assert manifest.sources[0].images_read == 7
    assert manifest.sources[0].images_kept == 6
    assert manifest.sources[0].boxes_kept == 4
    lines = [json.loads(line) for line in (tmp_path / "out" / "drops.jsonl").read_text().splitlines()]
    assert {(d["item"], d["line"], d["reason"]) for d in lines} >= {
        ("images/train/cam1_b.png", 2, "unknown class id"),
        ("images/train/broken.jpg", None, "unreadable image"),
    }
    dataset = YoloDataset.open(tmp_path / "out")
    assert dataset.names == ("garbage", "garbage_bin")
    assert sum(len(dataset.images(s)) for s in dataset.splits) == 6
    assert sum(c.background_images for c in manifest.splits.values()) >= 1  # cam2_a kept, empty


def test_cameras_never_share_a_split(tmp_path: Path, source: Path) -> None:
    build_dataset(load_recipe(make_recipe(tmp_path, source)), tmp_path / "out")
    dataset = YoloDataset.open(tmp_path / "out")
    cameras = {split: {p.name.split("__")[1].split("_")[0] for p in dataset.images(split)} for split in dataset.splits}
    assert set(cameras) == {"train", "val"}
    assert not cameras["train"] & cameras["val"]


def test_manifest_hash_is_stable_and_changes_with_a_label(tmp_path: Path, source: Path) -> None:
    recipe = load_recipe(make_recipe(tmp_path, source))
    first = build_dataset(recipe, tmp_path / "a").manifest
    second = build_dataset(recipe, tmp_path / "b").manifest
    assert first.content_hash == second.content_hash
    assert DatasetManifest.read(tmp_path / "a").content_hash == first.content_hash
    label = next((tmp_path / "a" / "labels").rglob("*cam3_b.txt"))
    label.write_text("1 0.5 0.5 0.4 0.41\n")
    assert content_hash(tmp_path / "a", first.names) != first.content_hash
    (source / "labels" / "train" / "cam3_b.txt").write_text("0 0.5 0.5 0.4 0.4\n")
    assert build_dataset(recipe, tmp_path / "c").manifest.content_hash != first.content_hash


def test_near_duplicate_training_frame_of_a_val_frame_is_dropped(tmp_path: Path, source: Path) -> None:
    cv2.imwrite(str(source / "images" / "train" / "cam1_a.png"), _image(5))  # cam1_a now repeats cam3_b
    result = build_dataset(load_recipe(make_recipe(tmp_path, source)), tmp_path / "out")
    assert result.manifest.drops.get("near-duplicate image") == 1


def test_output_folder_is_not_overwritten_silently(tmp_path: Path, source: Path) -> None:
    recipe = load_recipe(make_recipe(tmp_path, source))
    build_dataset(recipe, tmp_path / "out")
    with pytest.raises(DatasetExistsError, match="--overwrite"):
        build_dataset(recipe, tmp_path / "out")
    build_dataset(recipe, tmp_path / "out", overwrite=True)


def test_class_map_must_name_every_source_class(tmp_path: Path, source: Path) -> None:
    sources = [{"name": "src", "path": str(source), "licence": "CC0", "class_map": {"trash": "garbage", "bin": None}}]
    with pytest.raises(RecipeError, match=r"missing \['car'\]"):
        build_dataset(load_recipe(make_recipe(tmp_path, source, sources=sources)), tmp_path / "out")
    sources[0]["class_map"] = {"trash": "litter", "bin": None, "car": None}
    with pytest.raises(RecipeError, match="litter"):
        load_recipe(make_recipe(tmp_path, source, sources=sources))


def test_the_shipped_recipe_loads_and_maps_every_class(repo_root: Path) -> None:
    recipe = load_recipe(repo_root / "datasets" / "recipes" / "garbage-v1.yaml")
    assert recipe.names == ["garbage", "garbage_bin", "overflow"]
    assert recipe.sources[0].group_of("000049_jpg.rf.0504a4319f0ab335e339f183e7d937d7.jpg") == "000049"
