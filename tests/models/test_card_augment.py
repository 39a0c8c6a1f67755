"""The model card says how a model was augmented: the recipe's values, or ultralytics' defaults."""

from __future__ import annotations

from citywatch.models.augment import TrainAugment
from citywatch.models.card import ModelCard, TrainingRecord


def _card(augment: TrainAugment | None, dataset: dict[str, object]) -> str:
    training = TrainingRecord(
        base_weights="w.pt",
        epochs=1,
        imgsz=320,
        batch=2,
        seed=0,
        device="cpu",
        train_seconds=1.0,
        augment=augment,
        command="citywatch train …",
    )
    card = ModelCard(
        name="m",
        version="1",
        file="model.onnx",
        sha256="0",
        bytes=1,
        classes=["garbage"],
        input_size=(320, 320),
        batch="dynamic",
        created_at="now",
        dataset=dataset,
        training=training,
    )
    return card.markdown()


def test_card_records_the_augmentation_and_the_paste_step() -> None:
    paste = {
        "config": {"area": [0.0005, 0.01]},
        "scenes": 10,
        "objects": {"garbage": 12},
        "donor_pictures": 9,
        "background_pictures": 3,
        "night_scenes": 2,
        "blurred_scenes": 1,
    }
    text = _card(TrainAugment(degrees=5), {"name": "d", "paste": paste})
    assert "augmentation: hsv_h 0.015, hsv_s 0.7, hsv_v 0.6, degrees 5," in text
    assert "copy-paste: 10 train scenes from 3 backgrounds, objects cut from 9 train pictures (garbage 12)" in text
    assert "augmentation: ultralytics defaults" in _card(None, {"name": "d"})
