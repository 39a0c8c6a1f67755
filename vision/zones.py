"""Zones: named polygons of a camera preset, in coordinates relative to the frame (0..1).

Relative coordinates survive a resolution change of the stream; the pixel polygon and supervision's
`PolygonZone` mask are compiled once per resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import supervision as sv


def check_polygon(polygon: Sequence[Sequence[float]]) -> None:
    """A ValueError that says what is wrong unless `polygon` has 3 or more [x, y] points inside the frame (0..1)."""
    if len(polygon) < 3:
        raise ValueError(f"a polygon needs at least 3 points; got {len(polygon)}")
    if any(len(point) != 2 for point in polygon):
        raise ValueError(f"each point must be [x, y]; got {polygon!r}")
    outside = [tuple(point) for point in polygon if not all(0.0 <= value <= 1.0 for value in point)]
    if outside:
        raise ValueError(f"points are fractions of the frame and must lie in [0, 1]; outside: {outside}")


@dataclass(frozen=True)
class Zone:
    name: str
    polygon: tuple[tuple[float, float], ...]
    """Vertices as (x, y) fractions of the frame width and height."""
    anchor: sv.Position = sv.Position.BOTTOM_CENTER
    """The point of a box that must lie inside: a vehicle is parked where its wheels are."""
    _compiled: dict[tuple[int, int], sv.PolygonZone] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        try:
            check_polygon(self.polygon)
        except ValueError as error:
            raise ValueError(f"zone {self.name!r}: {error}") from None

    def pixels(self, width: int, height: int) -> np.ndarray:
        """The polygon in pixels of a `width`×`height` frame, N×2 int32."""
        scale = np.array([width - 1, height - 1], dtype=float)
        polygon: np.ndarray = np.round(np.asarray(self.polygon, dtype=float) * scale).astype(np.int32)
        return polygon

    def contains(self, detections: sv.Detections, width: int, height: int) -> np.ndarray:
        """Boolean mask: which detections have their anchor inside the zone."""
        if len(detections) == 0:
            return np.zeros(0, dtype=bool)
        zone = self._compiled.get((width, height))
        if zone is None:
            zone = sv.PolygonZone(self.pixels(width, height), triggering_anchors=(self.anchor,))
            self._compiled[(width, height)] = zone
        inside: np.ndarray = np.asarray(zone.trigger(detections), dtype=bool)
        return inside
