"""Preflight: a model that does not load is named, with the cameras it leaves blind, before Ray starts."""

from __future__ import annotations

from pathlib import Path

from citywatch.pipelines.config import parse_config
from citywatch.serving.runner import preflight
from tests.configs import no_store


def test_missing_and_corrupt_models_are_named_with_their_cameras(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"definitely not a protobuf")
    preset = {"p": {"zones": {"z": {"polygon": [[0, 0], [1, 0], [1, 1]], "rules": ["r"]}}}}
    config = parse_config(
        {
            "storage": no_store(),
            "detectors": {
                "default": {"model": "builtin:coco-yolo11n"},
                "gone": {"model": str(tmp_path / "gone.onnx")},
                "corrupt": {"model": str(corrupt)},
            },
            "rules": {"r": {"type": "dwell", "kind": "exposed_garbage", "classes": ["car"], "min_dwell": "1m"}},
            "cameras": {
                "a": {"rtsp": "rtsp://127.0.0.1/a", "detector": "gone", "presets": preset},
                "b": {"rtsp": "rtsp://127.0.0.1/b", "detector": "corrupt", "presets": preset},
                "c": {"rtsp": "rtsp://127.0.0.1/c", "presets": preset},
            },
        }
    )
    problems = preflight(config)
    assert len(problems) == 2
    gone, bad = sorted(problems, key=lambda p: "corrupt" in p)
    assert (
        gone.startswith("detectors → gone:") and str(tmp_path / "gone.onnx") in gone and "cameras affected: a" in gone
    )
    assert bad.startswith("detectors → corrupt:") and str(corrupt) in bad and "cameras affected: b" in bad
