"""Train → export → evaluate → card on a tiny dataset (needs ultralytics: the train extra).

Quick on purpose: 8 training images, imgsz 64, 1 epoch. It checks the plumbing (resumable run directory,
export with metadata, evaluation through OnnxDetector, card), not accuracy.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml

from citywatch.datasets.builder import build_dataset
from citywatch.datasets.recipe import load_recipe
from citywatch.models.augment import TrainAugment
from citywatch.models.card import ModelCard
from citywatch.vision.detector import OnnxDetector

pytestmark = [
    pytest.mark.ultralytics,
    pytest.mark.skipif(
        importlib.util.find_spec("ultralytics") is None,
        reason="ultralytics is not installed (pip install -e '.[train]'); training and export tests need it",
    ),
]


@pytest.fixture
def tiny_dataset(shared_dir: Path, tmp_path: Path) -> Path:
    source = shared_dir / "data" / "garbage_bins_atanu"
    root = tmp_path / "source"
    for split, count in (("train", 8), ("val", 4)):
        for folder in ("images", "labels"):
            (root / folder / split).mkdir(parents=True)
        for image in sorted((source / "images" / split).glob("*.jpg"))[:count]:
            shutil.copy(image, root / "images" / split / image.name)
            shutil.copy(source / "labels" / split / (image.stem + ".txt"), root / "labels" / split)
    (root / "data.yaml").write_text(
        yaml.safe_dump({"train": "images/train", "val": "images/val", "names": ["garbage", "garbage_bin", "overflow"]})
    )
    recipe = {
        "name": "tiny-garbage",
        "names": ["garbage", "garbage_bin", "overflow"],
        "sources": [
            {
                "name": "atanu",
                "path": str(root),
                "licence": "CC BY 4.0",
                "class_map": {"garbage": "garbage", "garbage_bin": "garbage_bin", "overflow": "overflow"},
                "splits": {"train": "train", "val": "val"},
            }
        ],
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    build_dataset(load_recipe(tmp_path / "recipe.yaml"), tmp_path / "dataset")
    return tmp_path / "dataset"


def test_train_export_evaluate_card_and_resume(
    tiny_dataset: Path, shared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from citywatch.pipelines.train import TrainConfig, run_training

    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "var" / "ultralytics-config"))
    config = TrainConfig(
        data=tiny_dataset,
        weights=shared_dir / "weights" / "yolo11n-coco-reconstructed.pt",
        name="tiny",
        model_name="tiny-garbage",
        model_version="0.0.1",
        runs_dir=tmp_path / "var" / "runs",
        epochs=1,
        imgsz=64,
        batch=4,
        workers=0,
        device="cpu",
    )
    epochs_seen: list[int] = []
    result = run_training(config, on_progress=lambda r: epochs_seen.append(r.epoch) if r.epoch_done else None)
    assert epochs_seen == [1]
    detector = OnnxDetector.from_path(result.onnx)
    assert detector.info.class_names == ("garbage", "garbage_bin", "overflow")
    assert detector.info.version == "0.0.1" and detector.info.input_size == (64, 64)
    assert detector.info.batch is None  # dynamic batch axis
    assert result.evaluation.images == 4
    card = ModelCard.read(result.run_dir)
    assert card.dataset["name"] == "tiny-garbage" and card.training is not None and card.training.epochs == 1
    assert "AGPL-3.0" in result.card.read_text()
    # The recipe's augmentation (defaults here) reached ultralytics and the card.
    assert card.training.augment == TrainAugment()
    assert "augmentation: hsv_h 0.015" in result.card.read_text()
    args = yaml.safe_load((result.run_dir / "args.yaml").read_text())
    assert args["degrees"] == TrainAugment().degrees and args["hsv_v"] == TrainAugment().hsv_v
    # Running it again resumes: training is complete, so nothing is retrained.
    again = run_training(config)
    assert not again.resumed and again.train_seconds == pytest.approx(result.train_seconds)
