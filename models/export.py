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

import ast
import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

__all__ = ["ExportError", "check_batch_consistency", "export_onnx", "stamp_metadata"]
ULTRALYTICS_KEYS = ("names", "imgsz", "stride", "task")
"""Ultralytics' metadata keys a citywatch model keeps (`YOLO(path)` and `OnnxDetector` read them)."""

MAX_ABS_DIFF = 1e-3
"""Allowed max |batched − one-by-one| of raw outputs (boxes in input pixels, scores in 0..1)."""


class ExportError(RuntimeError):
    """The export failed or produced a model that does not pass the checks."""


def stamp_metadata(
    model: onnx.ModelProto,
    *,
    name: str,
    version: str,
    source: str,
    source_file: str,
    source_sha256: str,
    made_by: str,
    dynamic: bool = False,
) -> dict[str, str]:
    """Keep Ultralytics' metadata and add citywatch's own (what `OnnxDetector` reports); returns the final map.

    `dynamic`: also mark Ultralytics' recorded export arguments dynamic (a graph made dynamic afterwards).
    Raises ExportError when one of Ultralytics' keys is missing."""
    meta = {prop.key: prop.value for prop in model.metadata_props}
    for key in ULTRALYTICS_KEYS:
        if key not in meta:
            raise ExportError(f"{source_file}: ultralytics metadata key {key!r} is missing")
    if dynamic:
        args = ast.literal_eval(meta.get("args", "{}"))
        args["dynamic"] = True
        meta["args"] = str(args)
    meta.update(
        {
            "citywatch_model": name,
            "citywatch_version": version,
            "source": source,
            "source_file": source_file,
            "source_sha256": source_sha256,
            "made_by": made_by,
        }
    )
    del model.metadata_props[:]
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    model.doc_string = f"{name} {version}: {source}"
    return meta


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
        stamp_metadata(
            model,
            name=model_name,
            version=model_version,
            source=source,
            source_file=weights.name,
            source_sha256=weights_sha256,
            made_by="citywatch.models.export.export_onnx",
        )
        staged_out = Path(tmp) / "model.onnx"
        onnx.save(model, str(staged_out))
        check_batch_consistency(staged_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(staged_out, out)
    return out
