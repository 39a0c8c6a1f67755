"""Copy-paste scenes: labels where the pixels changed, areas in range, no overlap, seeded, train pictures only."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from citywatch.datasets.builder import build_dataset
from citywatch.datasets.manifest import DatasetManifest
from citywatch.datasets.paste import PasteConfig, paste_scenes
from citywatch.datasets.recipe import RecipeError, load_recipe
from citywatch.datasets.sample import Sample
from citywatch.models.augment import TrainAugment

CLASS_IDS = {"garbage": 0, "garbage_bin": 1}
SCENE = (240, 320)  # height, width


def _encoded(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def _sample(source: str, item: str, image: np.ndarray, labels: list[list[float]]) -> Sample:
    data = _encoded(image)
    return Sample(
        source=source,
        item=item,
        suffix=".png",
        read=lambda: data,
        image=image,
        labels=np.array(labels, dtype=float).reshape(-1, 5),
        group=f"{source}/{item}",
        split="train",
    )


def _donor(index: int) -> Sample:
    """A flat grey picture with one saturated block, boxed as garbage, and a bin box that is never cut."""
    image = np.full((200, 200, 3), 60, np.uint8)
    image[50:150, 40:160] = (0, 0, 255) if index % 2 else (255, 0, 0)
    return _sample("donors", f"d{index}.png", image, [[0, 0.5, 0.5, 0.6, 0.5], [1, 0.1, 0.1, 0.1, 0.1]])


def _background(index: int) -> Sample:
    return _sample("scenes", f"s{index}.png", np.full((*SCENE, 3), 110 + index, np.uint8), [])


def _config(**changes: object) -> PasteConfig:
    base: dict[str, object] = {
        "scenes": 8,
        "objects": ["garbage"],
        "backgrounds": ["scenes"],
        "per_scene": [2, 4],
        "area": [0.002, 0.02],
        "night": 0.0,
        "blur": 0.0,
    }
    return PasteConfig.model_validate(base | changes)


def _pixel_box(row: np.ndarray) -> tuple[int, int, int, int]:
    height, width = SCENE
    _, cx, cy, w, h = row
    return (
        round((cx - w / 2) * width),
        round((cy - h / 2) * height),
        round((cx + w / 2) * width),
        round((cy + h / 2) * height),
    )


def test_pasted_labels_are_where_the_pixels_changed_in_range_and_apart() -> None:
    donors, backgrounds = [_donor(i) for i in range(3)], [_background(i) for i in range(2)]
    config = _config()
    pasted = 0
    for sample, record in paste_scenes(config, donors, backgrounds, CLASS_IDS):
        background = next(b for b in backgrounds if b.item == record.background_item).image
        changed = np.any(sample.image != background, axis=2)
        boxes = [_pixel_box(row) for row in sample.labels]
        assert sorted(boxes) == sorted(o.box for o in record.objects)
        assert set(sample.labels[:, 0].astype(int)) == {0}  # only garbage; the bin box is never cut
        inside = np.zeros(SCENE, bool)
        for x0, y0, x1, y1 in boxes:
            part = changed[y0:y1, x0:x1]
            # The changed pixels span the box exactly: every edge of the box has a changed pixel.
            assert part[0].any() and part[-1].any() and part[:, 0].any() and part[:, -1].any()
            assert config.area[0] <= (x1 - x0) * (y1 - y0) / (SCENE[0] * SCENE[1]) <= config.area[1]
            assert y1 >= config.band[0] * SCENE[0]
            assert not inside[y0:y1, x0:x1].any(), "pasted boxes overlap"
            inside[y0:y1, x0:x1] = True
        assert not (changed & ~inside).any(), "pixels changed outside every label"
        assert config.per_scene[0] <= len(boxes) <= config.per_scene[1]
        pasted += len(boxes)
    assert pasted >= 2 * config.scenes


def test_paste_is_deterministic_by_seed() -> None:
    donors, backgrounds = [_donor(i) for i in range(3)], [_background(i) for i in range(2)]

    def run(seed: int) -> list[tuple[bytes, str]]:
        config = _config(seed=seed, night=0.5, blur=0.5)
        return [(s.read(), r.model_dump_json()) for s, r in paste_scenes(config, donors, backgrounds, CLASS_IDS)]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_night_and_blur_change_the_scene_but_not_the_labels() -> None:
    donors, backgrounds = [_donor(i) for i in range(3)], [_background(i) for i in range(2)]
    plain = list(paste_scenes(_config(), donors, backgrounds, CLASS_IDS))
    degraded = list(paste_scenes(_config(night=1.0, blur=1.0), donors, backgrounds, CLASS_IDS))
    for (a, ra), (b, rb) in zip(plain, degraded, strict=True):
        assert rb.night and rb.blurred and not ra.night
        assert np.array_equal(a.labels, b.labels)
        assert b.image.mean() < a.image.mean() - 20  # night is darker


def test_paste_config_is_checked_against_the_recipe() -> None:
    with pytest.raises(ValueError, match="area"):
        _config(area=[0.01, 0.001])
    with pytest.raises(ValueError, match="not in names"):
        _config(objects=["sofa"]).check(["garbage"], ["scenes"])
    with pytest.raises(ValueError, match="not sources"):
        _config(backgrounds=["elsewhere"]).check(["garbage"], ["scenes"])


# --- end to end: a recipe with paste, from a handful of pictures in tmp_path ---------------------------------


def _yolo_folder(root: Path, names: list[str], pictures: dict[str, dict[str, tuple[np.ndarray, str]]]) -> Path:
    for split, files in pictures.items():
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for stem, (image, text) in files.items():
            cv2.imwrite(str(root / "images" / split / f"{stem}.png"), image)
            (root / "labels" / split / f"{stem}.txt").write_text(text)
    data = {"names": names} | {split: f"images/{split}" for split in pictures}
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    return root


def _textured(seed: int, size: tuple[int, int]) -> np.ndarray:
    small = np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return np.asarray(cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_CUBIC))


def _recipe(tmp_path: Path, **changes: object) -> Path:
    garbage = "0 0.5 0.5 0.5 0.5\n"
    objects = _yolo_folder(
        tmp_path / "objects",
        ["trash"],
        {
            "train": {f"tr{i}": (_textured(i, (160, 160)), garbage) for i in range(4)},
            "val": {f"va{i}": (_textured(100 + i, (160, 160)), garbage) for i in range(3)},
        },
    )
    streets = _yolo_folder(
        tmp_path / "streets", ["car"], {"train": {f"st{i}": (_textured(200 + i, (240, 320)), "") for i in range(3)}}
    )
    recipe = {
        "name": "tiny-paste",
        "names": ["garbage"],
        "sources": [
            {
                "name": "obj",
                "path": str(objects),
                "licence": "CC BY 4.0",
                "class_map": {"trash": "garbage"},
                "splits": {"train": "train", "val": "val"},
            },
            {
                "name": "street",
                "path": str(streets),
                "licence": "CC0",
                "class_map": {"car": None},
                "splits": {"train": "train"},
            },
        ],
        "paste": {"scenes": 6, "objects": ["garbage"], "backgrounds": ["street"], "area": [0.002, 0.02]},
        "augment": {"hsv_v": 0.5},
    }
    recipe.update(changes)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_recipe_with_paste_builds_and_never_pastes_a_val_picture(tmp_path: Path) -> None:
    result = build_dataset(load_recipe(_recipe(tmp_path)), tmp_path / "out")
    out, manifest = tmp_path / "out", result.manifest
    pasted_files = sorted((out / "images" / "train").glob("paste__*.jpg"))
    assert len(pasted_files) == 6
    assert not list((out / "images" / "val").glob("paste__*"))
    records = [json.loads(line) for line in (out / "pastes.jsonl").read_text().splitlines()]
    assert len(records) == 6
    donors = {o["donor_item"] for r in records for o in r["objects"]}
    assert donors and all(Path(d).stem.startswith("tr") for d in donors), donors  # train pictures only
    train_stems = {p.stem for p in (out / "images" / "train").iterdir()}
    assert all(f"obj__{Path(d).stem}" in train_stems for d in donors)
    assert {r["background_item"] for r in records} <= {f"images/train/st{i}.png" for i in range(3)}
    for record, image in zip(records, pasted_files, strict=True):
        label = (out / "labels" / "train" / f"{image.stem}.txt").read_text().splitlines()
        assert len(label) == len(record["objects"]) and image.stem == f"paste__{record['item']}"
    assert manifest.paste is not None and manifest.paste.scenes == 6
    assert manifest.paste.objects["garbage"] == sum(len(r["objects"]) for r in records)
    assert manifest.augment == TrainAugment(hsv_v=0.5)
    paste_source = next(s for s in manifest.sources if s.name == "paste")
    assert paste_source.kind == "paste" and "CC BY 4.0" in paste_source.licence
    assert manifest.splits["train"].images == 4 + 3 + 6
    assert DatasetManifest.read(out) == manifest
    again = build_dataset(load_recipe(_recipe(tmp_path / "again")), tmp_path / "again" / "out")
    assert again.manifest.content_hash == manifest.content_hash  # same recipe and pictures, same bytes


def test_recipe_paste_must_name_known_backgrounds(tmp_path: Path) -> None:
    paste = {"scenes": 2, "objects": ["garbage"], "backgrounds": ["nowhere"]}
    with pytest.raises(RecipeError, match="backgrounds"):
        load_recipe(_recipe(tmp_path, paste=paste))
