"""Models shipped inside the package, addressed as ``builtin:<name>`` in the config."""

from __future__ import annotations

from pathlib import Path

BUILTIN_PREFIX = "builtin:"
_DEFAULT_DIR = Path(__file__).resolve().parent / "default"
BUILTIN_MODELS = {
    "coco-yolo11n": _DEFAULT_DIR / "citywatch-coco-yolo11n.onnx",
    "garbage-yolo11n": _DEFAULT_DIR / "citywatch-garbage-yolo11n.onnx",
}


def resolve_model(spec: str, *, base_dir: Path | None = None) -> Path:
    """The file a model spec names: ``builtin:<name>`` or a path (relative to `base_dir`)."""
    if spec.startswith(BUILTIN_PREFIX):
        name = spec.removeprefix(BUILTIN_PREFIX)
        try:
            return BUILTIN_MODELS[name]
        except KeyError:
            known = ", ".join(BUILTIN_PREFIX + key for key in BUILTIN_MODELS)
            raise ValueError(f"unknown built-in model {spec!r}; known: {known}") from None
    path = Path(spec).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path.resolve()
