"""Ultralytics checkpoint → ONNX that `OnnxDetector` serves: dynamic batch, citywatch metadata, checked.

    export_onnx(Path("var/runs/x/weights/best.pt"), Path("var/runs/x/model.onnx"), imgsz=320,
                model_name="citywatch-garbage-yolo11n", model_version="1.0.0", source="…")

Ultralytics' own exporter writes the graph (``dynamic=True``: batch, height and width symbolic; its metadata
keys `names`, `imgsz`, `stride`, `task`… kept, so `YOLO(path)` still loads the file). citywatch then adds
`citywatch_model`, `citywatch_version` (the detector's `ModelInfo.version`), `source`, `source_sha256` and
`made_by`, and refuses to write a model unless `OnnxDetector.from_path` opens it and a batch of different
images gives the same output as the same images one by one.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["ExportError", "check_batch_consistency", "export_onnx"]

MAX_ABS_DIFF = 1e-3
"""Allowed max |batched − one-by-one| of raw outputs (boxes in input pixels, scores in 0..1)."""


class ExportError(RuntimeError):
    """The export failed or produced a model that does not pass the checks."""


def check_batch_consistency(path: Path, images: int = 3) -> float:
    """Max |batched − one-by-one| raw output on `images` different seeded inputs; raises ExportError if large."""
    from citywatch.vision.detector import OnnxDetector

    detector = OnnxDetector.from_path(path)
    height, width = detector.info.input_size
    rng = np.random.default_rng(0)
    blob = rng.random((images, 3, height, width), dtype=np.float32)
    name = detector.session.get_inputs()[0].name
    batched = detector.session.run(None, {name: blob})[0]
    singles = np.concatenate([detector.session.run(None, {name: blob[i : i + 1]})[0] for i in range(images)])
    diff = float(np.abs(batched - singles).max())
    if diff > MAX_ABS_DIFF:
        raise ExportError(f"{path}: batched output differs from one-by-one by {diff} (allowed {MAX_ABS_DIFF})")
    return diff


def export_onnx(
    weights: Path,
    out: Path,
    *,
    imgsz: int,
    model_name: str,
    model_version: str,
    source: str,
    var_dir: Path = Path("var"),
) -> Path:
    """Export `weights` (.pt) to `out` (.onnx) with the metadata and checks described above."""
    from citywatch.models.training import configure_ultralytics

    configure_ultralytics(var_dir)
    import onnx
    from ultralytics import YOLO

    try:
        import onnxslim  # noqa: F401  (only to know whether ultralytics can simplify)

        simplify = True
    except ImportError:
        simplify = False
    weights_sha256 = hashlib.sha256(weights.read_bytes()).hexdigest()
    with tempfile.TemporaryDirectory(prefix="citywatch-export-") as tmp:
        staged = Path(tmp) / weights.name
        shutil.copyfile(weights, staged)  # ultralytics writes the .onnx beside the .pt
        try:
            exported = Path(
                YOLO(str(staged)).export(
                    format="onnx", imgsz=imgsz, dynamic=True, simplify=simplify, device="cpu", verbose=False
                )
            )
        except Exception as error:  # ultralytics raises plain Exceptions of many kinds
            raise ExportError(f"{weights}: ultralytics export failed: {type(error).__name__}: {error}") from error
        model = onnx.load(str(exported))
        meta = {prop.key: prop.value for prop in model.metadata_props}
        for key in ("names", "imgsz", "stride", "task"):
            if key not in meta:
                raise ExportError(f"{exported}: ultralytics metadata key {key!r} is missing")
        meta.update(
            {
                "citywatch_model": model_name,
                "citywatch_version": model_version,
                "source": source,
                "source_file": weights.name,
                "source_sha256": weights_sha256,
                "made_by": "citywatch.models.export.export_onnx",
            }
        )
        del model.metadata_props[:]
        for key, value in meta.items():
            prop = model.metadata_props.add()
            prop.key, prop.value = key, value
        model.doc_string = f"{model_name} {model_version}: {source}"
        staged_out = Path(tmp) / "model.onnx"
        onnx.save(model, str(staged_out))
        check_batch_consistency(staged_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(staged_out, out)
    return out
