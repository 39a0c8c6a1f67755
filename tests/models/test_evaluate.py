"""Evaluation through OnnxDetector on real images from ../shared (skipped without it)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from citywatch.datasets.yolo import YoloDataset, ground_truth
from citywatch.models.builtin import resolve_model
from citywatch.models.evaluate import comparison_chart, comparison_table, evaluate_detector
from citywatch.vision.detector import OnnxDetector


@pytest.fixture(scope="module")
def garbage_val(shared_dir: Path) -> tuple[YoloDataset, list]:
    root = shared_dir / "data" / "garbage_bins_atanu"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    dataset = YoloDataset.open(root)
    return dataset, list(itertools.islice(ground_truth(dataset, "val"), 12))


def test_shipped_garbage_model_finds_garbage_and_the_coco_model_has_no_such_classes(
    garbage_val: tuple[YoloDataset, list], tmp_path: Path
) -> None:
    dataset, images = garbage_val
    garbage = evaluate_detector(
        OnnxDetector.from_path(resolve_model("builtin:garbage-yolo11n")),
        images,
        dataset_names=dataset.names,
        dataset="garbage val (12 images)",
    )
    coco = evaluate_detector(
        OnnxDetector.from_path(resolve_model("builtin:coco-yolo11n")),
        images,
        dataset_names=dataset.names,
        dataset="garbage val (12 images)",
    )
    assert garbage.images == coco.images == 12
    assert all(s.in_model for s in garbage.classes)
    assert garbage.all.map50 is not None and garbage.all.map50 > 0.3
    assert garbage.all.map50_95 is not None and 0 < garbage.all.map50_95 < garbage.all.map50
    assert not any(s.in_model for s in coco.classes) and coco.all.map50 is None
    assert comparison_table([garbage, coco]).row_count == len(dataset.names) + 1
    assert comparison_chart([garbage, coco], tmp_path / "chart.png").stat().st_size > 10_000
