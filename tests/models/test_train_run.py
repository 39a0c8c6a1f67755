"""The run directory: a second `citywatch train` with other options refuses to resume someone else's run."""

from __future__ import annotations

from pathlib import Path

import pytest

from citywatch.pipelines.train import RunError, TrainConfig, run_training


def test_other_options_do_not_resume_a_run(tmp_path: Path) -> None:
    weights = tmp_path / "start.pt"
    weights.write_bytes(b"not read before the run directory is checked")
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text(
        '{"name": "d", "names": ["a"], "created_at": "x", "made_by": "x", "sources": [], "splits": {}, '
        '"drops": {}, "dedupe_max_distance": 4, "content_hash": "0"}'
    )
    config = TrainConfig(data=data, weights=weights, name="r", model_name="m", runs_dir=tmp_path / "runs")
    (tmp_path / "runs" / "r").mkdir(parents=True)
    (tmp_path / "runs" / "r" / "run.json").write_text('{"config": {"epochs": 1}}')
    with pytest.raises(RunError, match="started with another config"):
        run_training(config)


def test_missing_weights_say_that_nothing_is_downloaded(tmp_path: Path) -> None:
    config = TrainConfig(data=tmp_path, weights=tmp_path / "yolo11n.pt", name="r", model_name="m")
    with pytest.raises(RunError, match="nothing is downloaded"):
        run_training(config)
