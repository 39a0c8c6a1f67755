"""Stand-ins the tests share for what a camera would be."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from citywatch.vision.frame import Frame


class StillReader:
    """A camera that is always online and always shows the same black 64x48 picture."""

    def __init__(self, camera_id: str, url: str) -> None:
        self.camera_id, self.url = camera_id, url
        self.stopped = False

    @property
    def health(self) -> Any:
        from citywatch.pipelines.camera import CameraHealth

        return CameraHealth(self.camera_id, True, None, None, 0, 0, None, 64, 48)

    def start(self) -> None:
        pass

    def stop(self, timeout: float = 10.0) -> None:
        self.stopped = True

    def set_active(self, active: bool) -> None:
        pass

    def read(self, preset_id: str | None = None, timeout: float | None = None) -> Frame:
        return Frame(np.zeros((48, 64, 3), np.uint8), self.camera_id, preset_id, datetime.now(UTC), 0)
