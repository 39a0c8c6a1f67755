"""Registry: add, promote, roll back; a model that does not load or fails the smoke test is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from citywatch.models.builtin import resolve_model
from citywatch.models.registry import ModelRefused, ModelRegistry, RegistryError, smoke_test
from citywatch.vision.detector import ModelInfo, OnnxDetector

COCO = resolve_model("builtin:coco-yolo11n")


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


def test_add_promote_rollback(registry: ModelRegistry, tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    shutil.copyfile(COCO, tmp_path / "m" / "model.onnx")
    (tmp_path / "m" / "MODEL_CARD.md").write_text("# card\n")
    first = registry.add(tmp_path / "m" / "model.onnx", name="street")
    assert (first.name, first.version) == ("street", "1.0.0")  # version from the ONNX metadata
    assert (first.path.parent / "MODEL_CARD.md").read_text() == "# card\n"
    second = registry.add(COCO, name="street", version="1.1.0")
    assert registry.active("street") is None
    registry.promote("street", "1.0.0")
    registry.promote("street", "1.1.0")
    assert registry.active("street") == registry.entry("street", "1.1.0")
    assert [e.active for e in registry.list("street")] == [False, True]
    back = registry.rollback("street")
    assert back.version == "1.0.0" and registry.active("street") == back
    with pytest.raises(RegistryError, match="no earlier promoted version"):
        registry.rollback("street")
    assert second.sha256 == first.sha256


def test_the_same_version_cannot_be_added_twice(registry: ModelRegistry) -> None:
    registry.add(COCO, name="street")
    with pytest.raises(RegistryError, match="already registered"):
        registry.add(COCO, name="street")


def test_a_file_that_does_not_load_is_refused_and_nothing_changes(registry: ModelRegistry, tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x01garbage" * 100)
    with pytest.raises(ModelRefused, match="onnxruntime cannot load it"):
        registry.add(broken, name="street", version="9.9.9")
    assert registry.list() == []


def test_a_stored_model_that_went_bad_is_not_promoted(registry: ModelRegistry) -> None:
    registry.add(COCO, name="street", version="1")
    registry.add(COCO, name="street", version="2")
    registry.promote("street", "1")
    registry.entry("street", "2").path.write_bytes(b"truncated")
    with pytest.raises(ModelRefused):
        registry.promote("street", "2")
    assert registry.active("street") is not None and registry.active("street").version == "1"  # type: ignore[union-attr]
    index = json.loads((registry.root / "registry.json").read_text())
    assert index["street"]["history"] == ["1"]


class _NanSession:
    """Loads fine but answers NaN: the kind of broken export only running it shows."""

    def get_inputs(self) -> list[Any]:
        return [SimpleNamespace(name="images")]

    def get_outputs(self) -> list[Any]:
        return [SimpleNamespace(name="output0")]

    def run(self, _names: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        batch = feeds["images"].shape[0]
        out = np.full((batch, 6, 100), np.nan, dtype=np.float32)
        out[:, 4:, :] = 0.9
        return [out]


def test_smoke_test_refuses_nan_output() -> None:
    info = ModelInfo(Path("fake.onnx"), ("a", "b"), (64, 64), "1", "0" * 64, None)
    with pytest.raises(ModelRefused, match=r"fake.onnx: (detect failed|non-finite)"):
        smoke_test(OnnxDetector(_NanSession(), info))  # type: ignore[arg-type]


def test_smoke_test_passes_the_shipped_model() -> None:
    smoke_test(OnnxDetector.from_path(COCO))
