"""The frame: one decoded picture and where and when it was taken."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np


def image_problem(image: object) -> str | None:
    """What keeps `image` from being a picture (H×W×3 uint8 BGR, not empty), or None."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        return f"must be an H×W×3 BGR array; got {getattr(image, 'shape', type(image).__name__)}"
    if image.dtype != np.uint8:
        return f"must be uint8; got {image.dtype}"
    if image.shape[0] == 0 or image.shape[1] == 0:
        return f"is empty: {image.shape}"
    return None


@dataclass(frozen=True, eq=False)
class Frame:
    """One picture from one camera at one preset.

    Rules take time from `captured_at`, never from the wall clock, so a recorded sequence replays
    deterministically.
    """

    image: np.ndarray
    """H×W×3 uint8, BGR (OpenCV order)."""
    camera_id: str
    preset_id: str | None
    captured_at: datetime
    """Timezone-aware UTC."""
    sequence: int = 0

    def __post_init__(self) -> None:
        problem = image_problem(self.image)
        if problem is not None:
            raise ValueError(f"Frame image {problem} (camera {self.camera_id!r})")
        if self.captured_at.tzinfo is None or self.captured_at.utcoffset() != timedelta(0):
            raise ValueError(f"Frame captured_at must be timezone-aware UTC; got {self.captured_at!r}")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
