"""The ONNX detector: BGR frames in, `supervision.Detections` out, with onnxruntime and no torch.

`OnnxDetector.from_path` opens and checks an Ultralytics-exported YOLO detect model (v8/11 layout: one
N×3×H×W float input, one N×(4+nc)×anchors output, `names` and `imgsz` in the ONNX metadata); the constructor
takes a live session so tests can hand in a fake one. `detect` letterboxes a list of frames of any sizes into
one preallocated batch, runs it once (or in chunks for a fixed-batch model), and decodes each image with
`citywatch.vision.boxes`.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import supervision as sv

from citywatch.vision.boxes import Letterbox, decode_yolo, letterbox_into, unletterbox_boxes
from citywatch.vision.detections import CLASS_NAME
from citywatch.vision.frame import image_problem

__all__ = ["CLASS_NAME", "ModelInfo", "ModelLoadError", "OnnxDetector", "default_threads"]

PAD_COLOR = 114
"""Letterbox padding grey, as in Ultralytics training and predict."""


class ModelLoadError(RuntimeError):
    """A model file is missing, unreadable, or not the kind of model the detector can run."""


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded detector model is and expects."""

    path: Path
    class_names: tuple[str, ...]
    """Index = class id."""
    input_size: tuple[int, int]
    """(height, width) of the network input."""
    version: str
    """`citywatch_version` from the metadata, else `ultralytics-<version>`, else "unknown"."""
    sha256: str
    """Of the exact bytes the session was built from."""
    batch: int | None
    """Fixed batch size of the model, or None for a dynamic batch axis."""

    def __post_init__(self) -> None:
        if not self.class_names or not all(isinstance(n, str) and n for n in self.class_names):
            raise ValueError(f"ModelInfo class_names must be non-empty strings; got {self.class_names!r}")
        if len(self.input_size) != 2 or min(self.input_size) <= 0:
            raise ValueError(f"ModelInfo input_size must be (height, width) > 0; got {self.input_size}")
        if self.batch is not None and self.batch < 1:
            raise ValueError(f"ModelInfo batch must be >= 1 or None (dynamic); got {self.batch}")
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"ModelInfo sha256 must be 64 lowercase hex digits; got {self.sha256!r}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def default_threads() -> int:
    """Intra-op threads when none are given: the CPUs this process may run on, at most 4.

    sched_getaffinity honours container CPU sets, where os.cpu_count() reports the whole host.
    """
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, available))


def session_options(threads: int | None = None) -> onnxruntime.SessionOptions:
    """Session options, each chosen on purpose.

    - intra-op threads: min(4, CPUs) by default. A nano model's convolutions stop scaling past ~4 threads, and
      on the small shared boxes we run on, more threads than cores only fight the decoders and Ray workers.
    - inter-op threads 1 and sequential execution: a YOLO graph is one chain of operators, so running
      branches in parallel gains nothing and would only add a second thread pool.
    - ORT_ENABLE_ALL: conv+activation fusion and the NCHWc layout transforms are where CPU speed comes from;
      they only change the in-memory graph, not the file.
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1; got {threads}")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def providers() -> list[str]:
    """CUDA first when this onnxruntime build has it (nodes it cannot run fall back to CPU), else CPU only."""
    available = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _literal(path: Path, meta: Mapping[str, str], key: str, expected: str) -> Any:
    if key not in meta:
        raise ModelLoadError(
            f"{path}: ONNX metadata has no {key!r} (expected {expected}, as an Ultralytics export writes); "
            f"keys found: {sorted(meta)}"
        )
    try:
        return ast.literal_eval(meta[key])  # Ultralytics writes Python literals (str(dict)), not JSON
    except (ValueError, SyntaxError) as e:
        raise ModelLoadError(f"{path}: metadata {key!r} is not readable: {meta[key][:200]!r} ({e})") from e


def parse_names(path: Path, meta: Mapping[str, str]) -> tuple[str, ...]:
    """`names` metadata: {0: 'person', 1: 'bicycle', ...} (or a list) with ids 0..n-1, into a tuple."""
    names = _literal(path, meta, "names", "{0: 'name', 1: ...}")
    if isinstance(names, list | tuple):
        names = dict(enumerate(names))
    if (
        not isinstance(names, dict)
        or not names
        or sorted(names) != list(range(len(names)))
        or not all(isinstance(v, str) and v for v in names.values())
    ):
        raise ModelLoadError(
            f"{path}: metadata 'names' must map class ids 0..n-1 to non-empty strings; got {meta['names'][:200]!r}"
        )
    return tuple(names[i] for i in range(len(names)))


def parse_imgsz(path: Path, meta: Mapping[str, str]) -> tuple[int, int]:
    """`imgsz` metadata: [h, w] or a single int, into (h, w)."""
    imgsz = _literal(path, meta, "imgsz", "[height, width]")
    if isinstance(imgsz, int):
        imgsz = [imgsz, imgsz]
    if not isinstance(imgsz, list | tuple) or len(imgsz) != 2 or not all(isinstance(v, int) and v > 0 for v in imgsz):
        raise ModelLoadError(f"{path}: metadata 'imgsz' must be [height, width] of positive ints; got {imgsz!r}")
    return int(imgsz[0]), int(imgsz[1])


def inspect_session(session: onnxruntime.InferenceSession, path: Path, sha256: str) -> ModelInfo:
    """Check that a session holds a YOLO detect model this detector can run, and describe it."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or not outputs:
        raise ModelLoadError(
            f"{path}: expected 1 input and at least 1 output (YOLO detect); got {len(inputs)} and {len(outputs)}"
        )
    shape = list(inputs[0].shape)
    if inputs[0].type != "tensor(float)" or len(shape) != 4 or shape[1] != 3:
        raise ModelLoadError(
            f"{path}: input {inputs[0].name!r} must be an N×3×H×W float tensor; got {inputs[0].type} {shape}"
        )
    meta = session.get_modelmeta().custom_metadata_map
    class_names = parse_names(path, meta)
    input_size = parse_imgsz(path, meta)
    fixed_hw = tuple(d for d in shape[2:] if isinstance(d, int))
    if len(fixed_hw) == 2 and fixed_hw != input_size:
        raise ModelLoadError(f"{path}: input is {fixed_hw[0]}×{fixed_hw[1]} but metadata 'imgsz' says {input_size}")
    out_shape = list(outputs[0].shape)
    rows = 4 + len(class_names)
    if len(out_shape) != 3 or (isinstance(out_shape[1], int) and out_shape[1] != rows):
        raise ModelLoadError(
            f"{path}: output {outputs[0].name!r} must be N×{rows}×anchors (4 box rows + {len(class_names)} "
            f"classes from 'names'); got {out_shape}"
        )
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    if meta.get("citywatch_version"):
        version = meta["citywatch_version"]
    elif meta.get("version"):
        version = f"ultralytics-{meta['version']}"
    else:
        version = "unknown"
    return ModelInfo(
        path=path, class_names=class_names, input_size=input_size, version=version, sha256=sha256, batch=batch
    )


def _check_images(images: Sequence[np.ndarray]) -> None:
    for index, image in enumerate(images):
        problem = image_problem(image)
        if problem is not None:
            raise ValueError(f"detect: image {index} {problem}")


class OnnxDetector:
    """A YOLO detect model on onnxruntime. Thread-safe: `detect` keeps no state between calls."""

    def __init__(
        self,
        session: onnxruntime.InferenceSession,
        info: ModelInfo,
        *,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
    ) -> None:
        if not 0.0 <= conf <= 1.0 or not 0.0 <= iou <= 1.0:
            raise ValueError(f"conf and iou must be in [0, 1]; got conf={conf}, iou={iou}")
        if max_det < 1:
            raise ValueError(f"max_det must be >= 1; got {max_det}")
        self.session = session
        self.info = info
        self.conf = conf
        self.iou = iou
        self.max_det = max_det
        self._input_name: str = session.get_inputs()[0].name
        self._output_name: str = session.get_outputs()[0].name
        self._names = np.array(info.class_names)

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        *,
        conf: float = 0.25,
        iou: float = 0.7,
        threads: int | None = None,
        max_det: int = 300,
    ) -> OnnxDetector:
        """Open and check a model file; ModelLoadError says which file and what was wrong."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError as e:
            raise ModelLoadError(f"{path}: model file not found (expected an ONNX file)") from e
        except OSError as e:
            raise ModelLoadError(f"{path}: cannot read the model file: {e}") from e
        try:
            # Built from the bytes just hashed, so info.sha256 is exactly what runs.
            session = onnxruntime.InferenceSession(data, session_options(threads), providers=providers())
        except Exception as e:  # onnxruntime's errors (InvalidProtobuf, Fail, ...) share no narrower base
            raise ModelLoadError(
                f"{path}: onnxruntime cannot load it (expected an ONNX model): {type(e).__name__}: {e}"
            ) from e
        info = inspect_session(session, path, hashlib.sha256(data).hexdigest())
        return cls(session, info, conf=conf, iou=iou, max_det=max_det)

    def _preprocess(self, images: Sequence[np.ndarray], batch_size: int) -> tuple[np.ndarray, list[Letterbox]]:
        """Letterbox into one uint8 NHWC canvas, then one vectorised BGR→RGB, HWC→CHW, /255 pass."""
        height, width = self.info.input_size
        canvas = np.empty((batch_size, height, width, 3), dtype=np.uint8)
        letterboxes = [letterbox_into(image, canvas[slot], PAD_COLOR) for slot, image in enumerate(images)]
        canvas[len(images) :] = PAD_COLOR  # unused slots of a fixed-batch chunk
        blob = np.empty((batch_size, 3, height, width), dtype=np.float32)
        np.divide(canvas[..., ::-1].transpose(0, 3, 1, 2), np.float32(255), out=blob)
        return blob, letterboxes

    def _run(self, blob: np.ndarray) -> np.ndarray:
        output = np.asarray(self.session.run([self._output_name], {self._input_name: blob})[0])
        expected_rows = 4 + self.info.num_classes
        if output.ndim != 3 or output.shape[0] != blob.shape[0] or output.shape[1] != expected_rows:
            raise RuntimeError(
                f"{self.info.path}: model output {output.shape} is not ({blob.shape[0]}, {expected_rows}, anchors)"
            )
        return output

    def _to_detections(self, raw: np.ndarray, lb: Letterbox, image: np.ndarray, conf: float) -> sv.Detections:
        xyxy, confidence, class_id = decode_yolo(raw, conf, self.iou, self.max_det)
        return sv.Detections(
            xyxy=unletterbox_boxes(xyxy, lb, image.shape),
            confidence=confidence,
            class_id=class_id,
            data={CLASS_NAME: self._names[class_id]},
        )

    def detect(self, images: Sequence[np.ndarray], *, conf: float | None = None) -> list[sv.Detections]:
        """Detections for each BGR uint8 H×W×3 image (any sizes), in frame pixels, in the input order.

        A dynamic-batch model gets all images in one session.run; a fixed-batch model gets chunks of its
        batch size (the last one padded with grey slots whose output is ignored).
        """
        threshold = self.conf if conf is None else conf
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"conf must be in [0, 1]; got {threshold}")
        _check_images(images)
        chunk = self.info.batch or max(1, len(images))
        results: list[sv.Detections] = []
        for start in range(0, len(images), chunk):
            part = images[start : start + chunk]
            blob, letterboxes = self._preprocess(part, chunk)
            output = self._run(blob)
            results.extend(
                self._to_detections(output[i], letterboxes[i], image, threshold) for i, image in enumerate(part)
            )
        return results

    def warmup(self) -> None:
        """One full detect on a grey frame, so the first real call does not pay for allocations and set-up."""
        height, width = self.info.input_size
        self.detect([np.full((height, width, 3), PAD_COLOR, dtype=np.uint8)])

    def __repr__(self) -> str:
        batch = "dynamic" if self.info.batch is None else self.info.batch
        return (
            f"OnnxDetector({str(self.info.path)!r}, version={self.info.version!r}, "
            f"classes={self.info.num_classes}, input={self.info.input_size}, batch={batch}, "
            f"conf={self.conf}, iou={self.iou})"
        )
