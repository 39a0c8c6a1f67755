"""Hand-made detections for the rule tests: one tuple per box, (x1, y1, x2, y2, class name, confidence)."""

from __future__ import annotations

import numpy as np
import supervision as sv

Item = tuple[float, float, float, float, str, float]


def boxes(*items: Item) -> sv.Detections:
    """Detections as the detector returns them (class names in `data`); no items gives an empty set."""
    if not items:
        detections = sv.Detections.empty()
        detections.data["class_name"] = np.array([], dtype=str)
        return detections
    return sv.Detections(
        xyxy=np.array([item[:4] for item in items], dtype=float),
        confidence=np.array([item[5] for item in items]),
        class_id=np.zeros(len(items), dtype=int),
        data={"class_name": np.array([item[4] for item in items])},
    )
