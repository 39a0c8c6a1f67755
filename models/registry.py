"""A local model registry: versions with their cards, one promoted version per model name, and history.

    registry = ModelRegistry(Path("var/models"))
    entry = registry.add(Path("var/runs/garbage-yolo11n/model.onnx"))   # checked, copied with its card
    registry.promote(entry.name, entry.version)                          # smoke-tested again, then active
    registry.rollback(entry.name)                                        # back to the version before

Layout: ``<root>/<name>/<version>/model.onnx`` (+ ``card.json``, ``MODEL_CARD.md`` when the model came with
them) and ``<root>/registry.json`` (active version and promotion history per name). A model is refused,
and nothing changes, if `OnnxDetector.from_path` cannot open it or the smoke test fails: one detect on a
sample image must run without error and give sane output (boxes finite and inside the image, confidences in
0..1, class ids within the model's classes).

A running `citywatch serve` watches `registry.json`: a detector configured as `model: registry:<name>` swaps to
the newly promoted version through its deployment's `reconfigure` (`serving/runner.py`, `serving/deployments.py`).
Versions live on local disk; storing them in the S3 evidence store is not done.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from citywatch.models.card import CARD_JSON, CARD_MD
from citywatch.vision.detector import ModelLoadError, OnnxDetector

__all__ = ["ModelRefused", "ModelRegistry", "RegistryEntry", "RegistryError", "smoke_test"]

MODEL_FILE = "model.onnx"
INDEX = "registry.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class RegistryError(RuntimeError):
    """A registry operation cannot be done (unknown version, nothing to roll back to…)."""


class ModelRefused(RegistryError):
    """The model failed to load or failed the smoke test; the registry did not change."""


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    version: str
    path: Path
    sha256: str
    classes: tuple[str, ...]
    added_at: str
    active: bool


def _sample_image() -> np.ndarray:
    """A deterministic textured frame: noise and shapes, not flat grey (which can hide a broken decode)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    image[100:300, 150:400] = (40, 120, 200)
    return image


def smoke_test(detector: OnnxDetector, image: np.ndarray | None = None) -> None:
    """One detect on a sample image; ModelRefused says what was wrong with the output."""
    frame = _sample_image() if image is None else image
    try:
        results = detector.detect([frame, frame], conf=0.01)
    except Exception as error:  # any failure inside the model run refuses the model
        raise ModelRefused(f"{detector.info.path}: detect failed: {type(error).__name__}: {error}") from error
    if len(results) != 2:
        raise ModelRefused(f"{detector.info.path}: 2 images gave {len(results)} results")
    height, width = frame.shape[:2]
    for detections in results:
        xyxy = detections.xyxy
        confidence = detections.confidence if detections.confidence is not None else np.zeros(0)
        if not np.isfinite(xyxy).all() or not np.isfinite(confidence).all():
            raise ModelRefused(f"{detector.info.path}: non-finite boxes or confidences")
        if len(xyxy) and (xyxy.min() < -1 or xyxy[:, [0, 2]].max() > width + 1 or xyxy[:, [1, 3]].max() > height + 1):
            raise ModelRefused(f"{detector.info.path}: boxes outside the {width}×{height} image")
        if len(confidence) and (confidence.min() < 0 or confidence.max() > 1):
            raise ModelRefused(f"{detector.info.path}: confidences outside 0..1")
        class_id = detections.class_id if detections.class_id is not None else np.zeros(0, dtype=int)
        if len(class_id) and (class_id.min() < 0 or class_id.max() >= detector.info.num_classes):
            raise ModelRefused(f"{detector.info.path}: class ids outside 0..{detector.info.num_classes - 1}")
    if len(results[0]) != len(results[1]) or not np.allclose(results[0].xyxy, results[1].xyxy, atol=1e-3):
        raise ModelRefused(f"{detector.info.path}: the same image twice in one batch gave different detections")


def check_model(path: Path) -> OnnxDetector:
    """Open and smoke-test a model file; ModelRefused if either fails."""
    try:
        detector = OnnxDetector.from_path(path, threads=1)
    except ModelLoadError as error:
        raise ModelRefused(str(error)) from error
    smoke_test(detector)
    return detector


class ModelRegistry:
    def __init__(self, root: Path) -> None:
        self.root = root

    # -- the index ---------------------------------------------------------------------------------------
    def _index(self) -> dict[str, dict[str, object]]:
        path = self.root / INDEX
        if not path.exists():
            return {}
        data: dict[str, dict[str, object]] = json.loads(path.read_text(encoding="utf-8"))
        return data

    def _save(self, index: dict[str, dict[str, object]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".registry-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(index, f, indent=2)
            f.write("\n")
        os.replace(tmp, self.root / INDEX)  # atomic: a reader never sees half an index

    def _history(self, index: dict[str, dict[str, object]], name: str) -> list[str]:
        history = index.get(name, {}).get("history", [])
        return [str(v) for v in history] if isinstance(history, list) else []

    # -- queries -----------------------------------------------------------------------------------------
    def active(self, name: str) -> RegistryEntry | None:
        history = self._history(self._index(), name)
        return self.entry(name, history[-1]) if history else None

    def entry(self, name: str, version: str) -> RegistryEntry:
        folder = self.root / name / version
        meta_path = folder / "entry.json"
        if not meta_path.exists():
            known = ", ".join(v.version for v in self.list(name)) or "none"
            raise RegistryError(f"no version {version!r} of model {name!r} in {self.root} (versions: {known})")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        history = self._history(self._index(), name)
        return RegistryEntry(
            name=name,
            version=version,
            path=folder / MODEL_FILE,
            sha256=str(meta["sha256"]),
            classes=tuple(meta["classes"]),
            added_at=str(meta["added_at"]),
            active=bool(history) and history[-1] == version,
        )

    def list(self, name: str | None = None) -> list[RegistryEntry]:
        """Every version, by name then time added."""
        if not self.root.is_dir():
            return []
        names = [name] if name else sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name[0] != ".")
        entries = []
        for model in names:
            folder = self.root / model
            if folder.is_dir():
                entries += [self.entry(model, v.name) for v in folder.iterdir() if (v / "entry.json").exists()]
        return sorted(entries, key=lambda e: (e.name, e.added_at, e.version))

    # -- changes -----------------------------------------------------------------------------------------
    def add(self, model: Path, *, name: str | None = None, version: str | None = None) -> RegistryEntry:
        """Check `model` and copy it (with card.json/MODEL_CARD.md from its folder) in as a new version.

        Name and version default to the ONNX metadata (citywatch_model, citywatch_version).
        """
        detector = check_model(model)
        meta = detector.session.get_modelmeta().custom_metadata_map
        name = name or meta.get("citywatch_model") or model.stem
        version = version or detector.info.version
        for label, value in (("name", name), ("version", version)):
            if not _NAME.fullmatch(value):
                raise RegistryError(f"model {label} {value!r} must be letters, digits, '.', '_' or '-'")
        folder = self.root / name / version
        if folder.exists():
            raise RegistryError(f"{name} {version} is already registered ({folder}); bump the version")
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=".staging-"))
        try:
            shutil.copyfile(model, staging / MODEL_FILE)
            for extra in (CARD_JSON, CARD_MD):
                if (model.parent / extra).exists():
                    shutil.copyfile(model.parent / extra, staging / extra)
            entry = {
                "sha256": detector.info.sha256,
                "classes": list(detector.info.class_names),
                "source": str(model.resolve()),
                "added_at": datetime.now(UTC).isoformat(timespec="microseconds"),
            }
            (staging / "entry.json").write_text(json.dumps(entry, indent=2) + "\n", encoding="utf-8")
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.entry(name, version)

    def promote(self, name: str, version: str) -> RegistryEntry:
        """Make `version` the active one, after loading and smoke-testing the stored file again."""
        entry = self.entry(name, version)
        check_model(entry.path)
        index = self._index()
        history = self._history(index, name)
        if history and history[-1] == version:
            return entry
        index.setdefault(name, {})["history"] = [*history, version]
        self._save(index)
        return self.entry(name, version)

    def rollback(self, name: str) -> RegistryEntry:
        """Go back to the version active before the current one (checked again before it is made active)."""
        index = self._index()
        history = self._history(index, name)
        if len(history) < 2:
            raise RegistryError(f"model {name!r} has no earlier promoted version to roll back to (history {history})")
        previous = self.entry(name, history[-2])
        check_model(previous.path)
        index[name]["history"] = history[:-1]
        self._save(index)
        return self.entry(name, previous.version)
