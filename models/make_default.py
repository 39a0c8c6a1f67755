"""Build the shipped default model, models/default/citywatch-coco-yolo11n.onnx, from the shared COCO YOLO11n.

    python -m citywatch.models.make_default            # from the repo root, reads ../shared/weights
    python -m citywatch.models.make_default --source PATH --out PATH --check-images 'GLOB'

What it does to /work/shared/weights/yolo11n-coco-reconstructed.onnx (an `yolo export format=onnx imgsz=640`
with a fixed 1×3×640×640 input):
1. Makes the batch axis dynamic: input and output dim 0 become the symbol "batch", and the shape constants of
   the eleven Reshape nodes (attention and detect head), which were traced with a literal batch of 1, get 0
   there instead. With `allowzero=0` a 0 in a Reshape shape means "copy this dim from the input", i.e. the
   batch. Everything else in the graph is per-sample or broadcasts over dim 0 (the anchor and stride
   constants are 1×2×8400 and 1×8400). Stale intermediate shapes (value_info) are dropped and re-inferred.
2. Keeps Ultralytics' metadata (so `YOLO(path)` still loads it) with `args.dynamic` now True, and adds
   citywatch's own keys: model name, model version, source file and its sha256.
3. Checks the result with onnxruntime: a batch of different images equals the same images run one by one,
   and batch-1 output equals the source model's, both to a small max abs difference; it refuses to write a
   model that fails either check.

Needs the `onnx` package (the `train` extra), which the serving install does not have: it is imported inside
the functions, like every heavy dependency of citywatch.models.
"""

from __future__ import annotations

import argparse
import ast
import glob
import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from citywatch.models.export import stamp_metadata

if TYPE_CHECKING:
    import onnx

MODEL_NAME = "citywatch-coco-yolo11n"
MODEL_VERSION = "1.0.0"
"""Bump when the shipped file changes; the detector reports it as ModelInfo.version."""

SOURCE_NAME = "yolo11n-coco-reconstructed.onnx"
SOURCE_SHA256 = "abf7792d8e5fbbb7dee688ca09766b03f35bb2c63311d7359d5780c1876b4b57"
SOURCE_DESCRIPTION = (
    "COCO YOLO11n rebuilt from Ultralytics' INT8 TFLite export (MishrajiAryan/cv_counter@2f6f6372, "
    "yolo11n_int8.tflite, Ultralytics 8.3.223), exported with ultralytics 8.4.190; "
    "see shared/weights/README.md"
)
BATCH_SYMBOL = "batch"
EXPECTED_BATCH1_RESHAPES = 11
MAX_ABS_DIFF = 1e-3
"""Allowed max |difference| of raw outputs (box rows are in input pixels, up to 640; scores in 0..1)."""

_REPO = Path(__file__).resolve().parents[1]
_SHARED = _REPO.parent / "shared"
DEFAULT_SOURCE = _SHARED / "weights" / SOURCE_NAME
DEFAULT_OUT = Path(__file__).resolve().parent / "default" / f"{MODEL_NAME}.onnx"
DEFAULT_CHECK_IMAGES = (
    str(_SHARED / "data" / "parking_occupancy_kurss" / "images" / "val" / "*.jpg"),
    str(_SHARED / "video" / "*.mp4"),
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def make_batch_dynamic(model: onnx.ModelProto) -> int:
    """Turn the traced batch of 1 into a symbolic batch, in place. Returns how many Reshapes were patched.

    Fails loudly on anything it does not recognise, rather than writing a model that is subtly wrong.
    """
    graph = model.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ValueError(f"expected 1 input and 1 output; got {len(graph.input)} and {len(graph.output)}")
    for value in (graph.input[0], graph.output[0]):
        dim0 = value.type.tensor_type.shape.dim[0]
        if dim0.HasField("dim_value") and dim0.dim_value != 1:
            raise ValueError(f"{value.name}: expected a traced batch of 1; got {dim0.dim_value}")
        dim0.Clear()
        dim0.dim_param = BATCH_SYMBOL
    reshapes = _patch_reshape_batch(graph)
    if reshapes != EXPECTED_BATCH1_RESHAPES:
        raise ValueError(f"expected {EXPECTED_BATCH1_RESHAPES} Reshape nodes (YOLO11n detect); found {reshapes}")
    # Intermediate shapes were recorded with batch 1; drop them and let shape inference redo them.
    del graph.value_info[:]
    return reshapes


def _patch_reshape_batch(graph: onnx.GraphProto) -> int:
    """Set the leading 1 of every Reshape's constant shape to 0 ("copy the batch from the input")."""
    from onnx import numpy_helper

    initializers = {init.name: init for init in graph.initializer}
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)

    reshapes = 0
    patched: set[str] = set()
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        reshapes += 1
        allowzero = next((a.i for a in node.attribute if a.name == "allowzero"), 0)
        shape_name = node.input[1]
        if shape_name not in initializers or allowzero != 0:
            raise ValueError(f"Reshape {node.name}: expected a constant shape with allowzero=0")
        if set(consumers[shape_name]) != {"Reshape"}:
            raise ValueError(f"Reshape {node.name}: its shape is also used by {consumers[shape_name]}")
        if shape_name in patched:
            continue  # shared by several Reshapes, already patched
        shape = numpy_helper.to_array(initializers[shape_name]).copy()
        if shape.ndim != 1 or shape[0] != 1:
            raise ValueError(f"Reshape {node.name}: expected a shape starting with the batch 1; got {shape}")
        shape[0] = 0  # copy dim 0 (the batch) from the Reshape's input
        initializers[shape_name].CopyFrom(numpy_helper.from_array(shape, shape_name))
        patched.add(shape_name)
    return reshapes


def set_metadata(model: onnx.ModelProto, source: Path, source_sha256: str) -> dict[str, str]:
    """Keep Ultralytics' keys, mark the export dynamic, and add citywatch's own; returns the final map."""
    return stamp_metadata(
        model,
        name=MODEL_NAME,
        version=MODEL_VERSION,
        source=SOURCE_DESCRIPTION,
        source_file=source.name,
        source_sha256=source_sha256,
        made_by="models/make_default.py (python -m citywatch.models.make_default)",
        dynamic=True,
    )


def _check_frames(patterns: Sequence[str], size: tuple[int, int], count: int) -> np.ndarray:
    """`count` different letterboxed RGB 0..1 NCHW inputs: real frames where available, else seeded noise."""
    import cv2

    from citywatch.vision.boxes import letterbox

    images: list[np.ndarray] = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            if path.endswith(".mp4"):
                capture = cv2.VideoCapture(path)
                ok, frame = capture.read()
                capture.release()
                if ok:
                    images.append(frame)
            else:
                image = cv2.imread(path)
                if image is not None:
                    images.append(image)
            if len(images) >= count:
                break
    rng = np.random.default_rng(0)
    while len(images) < count:
        images.append(rng.integers(0, 256, (360 + 40 * len(images), 640, 3), dtype=np.uint8))
    batch = np.stack([letterbox(image, size)[0] for image in images[:count]])
    return np.ascontiguousarray(batch[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)


def verify(model_bytes: bytes, source_bytes: bytes, inputs: np.ndarray) -> dict[str, float]:
    """Max abs differences: batched vs one-by-one, and new vs source model at batch 1. Raises if too large."""
    import onnxruntime as ort

    def session(data: bytes) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])

    new, old = session(model_bytes), session(source_bytes)
    name = new.get_inputs()[0].name
    batched = new.run(None, {name: inputs})[0]
    singles = np.concatenate([new.run(None, {name: inputs[i : i + 1]})[0] for i in range(len(inputs))])
    originals = np.concatenate([old.run(None, {name: inputs[i : i + 1]})[0] for i in range(len(inputs))])
    if batched.shape != singles.shape or batched.shape[0] != len(inputs):
        raise ValueError(f"batched output shape {batched.shape} != one-by-one {singles.shape}")
    diffs = {
        "batched_vs_single": float(np.abs(batched - singles).max()),
        "new_vs_source": float(np.abs(singles - originals).max()),
        "images_differ": float(np.abs(singles[1:] - singles[:1]).max()),
    }
    if diffs["batched_vs_single"] > MAX_ABS_DIFF or diffs["new_vs_source"] > MAX_ABS_DIFF:
        raise ValueError(f"dynamic-batch model does not match: {diffs} (allowed {MAX_ABS_DIFF})")
    if diffs["images_differ"] < 1.0:
        raise ValueError("check images gave (nearly) the same output; the batch check would prove nothing")
    return diffs


def build(source: Path, out: Path, check_patterns: Sequence[str], check_batch: int = 4) -> dict[str, object]:
    import onnx

    source_sha256 = sha256_of(source)
    if source_sha256 != SOURCE_SHA256:
        raise ValueError(f"{source}: sha256 {source_sha256} is not the expected {SOURCE_SHA256}")
    model = onnx.load(str(source))
    patched = make_batch_dynamic(model)
    meta = set_metadata(model, source, source_sha256)
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    out_dims = [d.dim_param or d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]
    imgsz = ast.literal_eval(meta["imgsz"])
    size = (int(imgsz[0]), int(imgsz[1]))
    data = model.SerializeToString()
    inputs = _check_frames(check_patterns, size, check_batch)
    diffs = verify(data, source.read_bytes(), inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return {
        "out": str(out),
        "sha256": sha256_of(out),
        "bytes": out.stat().st_size,
        "reshapes_patched": patched,
        "output_dims": out_dims,
        "check_batch": check_batch,
        **diffs,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--check-images", action="append", default=None, help="glob of images/videos for the batch check"
    )
    args = parser.parse_args(argv)
    report = build(args.source, args.out, args.check_images or DEFAULT_CHECK_IMAGES)
    for key, value in report.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
