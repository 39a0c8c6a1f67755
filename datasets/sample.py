"""What a dataset source yields: one image with its labels already on the model's classes.

A source is anything with a `name` and a `samples(report)` iterator (`DatasetSource`). Outside YOLO folders are
one (`citywatch.datasets.importing.YoloFolderSource`). Reviewed enforcement cases are another
(`citywatch.datasets.cases_source.CaseReviewSource`): confirmed cases give boxes with the inspector's corrected
kind, rejected ones hard negatives (empty labels), frames read from the evidence store, the camera id as the group.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from citywatch.datasets.validate import Drop

__all__ = ["DatasetSource", "Sample"]


@dataclass(frozen=True)
class Sample:
    source: str
    item: str
    """Stable id of the image within its source (a relative path, a case and evidence id…)."""
    suffix: str
    """File suffix the image bytes are written with (".jpg", ".png")."""
    read: Callable[[], bytes]
    """The encoded image bytes, as stored; called once, when the dataset is written."""
    image: np.ndarray
    """The decoded BGR image, for its size and perceptual hash; not kept by the builder."""
    labels: np.ndarray
    """N×5: model class id, cx, cy, w, h (fractions of the image); N = 0 is a background image."""
    group: str
    """Key that must not span splits: a camera, or the source picture of augmented copies."""
    split: str | None
    """The split the source assigns, or None to let the builder split by group."""

    def __post_init__(self) -> None:
        if self.labels.ndim != 2 or self.labels.shape[1] != 5:
            raise ValueError(f"{self.source}/{self.item}: labels must be N×5; got {self.labels.shape}")
        if self.image.ndim != 3 or self.image.shape[2] != 3:
            raise ValueError(f"{self.source}/{self.item}: image must be H×W×3; got {self.image.shape}")


class DatasetSource(Protocol):
    name: str

    def samples(self, report: Callable[[Drop], None]) -> Iterator[Sample]: ...
