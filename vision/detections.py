"""What a `supervision.Detections` carries here beyond its arrays: the class name of every box.

The detector puts the names under `CLASS_NAME` in `data`; rules select by these names (configuration), never by
the model's class ids, so a fine-tuned model with its own names plugs in without code changes.
"""

from __future__ import annotations

import numpy as np
import supervision as sv

__all__ = ["CLASS_NAME", "class_names", "confidence_or_ones"]

CLASS_NAME = "class_name"
"""Key of the per-box class names in `sv.Detections.data` (supervision's own convention)."""


def class_names(detections: sv.Detections) -> list[str]:
    """The class name of every detection (empty when the detections carry none)."""
    names = detections.data.get(CLASS_NAME)
    return [] if names is None else [str(n) for n in names]


def confidence_or_ones(detections: sv.Detections) -> np.ndarray:
    """The detections' confidences; all 1.0 when they carry none (hand-made or tracked-only detections)."""
    if detections.confidence is None:
        return np.ones(len(detections), dtype=float)
    return detections.confidence
