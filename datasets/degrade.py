"""What a city camera does to a picture that a close-up photo never shows: night and blur.

Used by the copy-paste step (`citywatch.datasets.paste`) on a share of its scenes; ultralytics' trainer has
brightness jitter (`hsv_v`) but no low-light noise and, without albumentations, no blur.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["blur", "night"]


def night(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Street-lit night: darker (gamma 1.6–2.6, gain 0.55–0.85), colder, with sensor noise (σ 2–6)."""
    gamma = rng.uniform(1.6, 2.6)
    gain = rng.uniform(0.55, 0.85)
    dark = 255.0 * gain * (image.astype(np.float32) / 255.0) ** gamma
    dark *= np.array([1.08, 1.0, 0.9], dtype=np.float32)  # BGR: sodium and LED street light are not white
    dark += rng.normal(0.0, rng.uniform(2.0, 6.0), dark.shape).astype(np.float32)
    out: np.ndarray = np.clip(dark, 0, 255).astype(np.uint8)
    return out


def blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Defocus (Gaussian σ 0.8–2) or motion (a 5–11 px line at a random angle), half each."""
    if rng.random() < 0.5:
        return np.asarray(cv2.GaussianBlur(image, (0, 0), rng.uniform(0.8, 2.0)))
    length = int(rng.integers(5, 12))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    centre = ((length - 1) / 2.0, (length - 1) / 2.0)
    rotation = cv2.getRotationMatrix2D(centre, float(rng.uniform(0, 180)), 1.0)
    line = np.asarray(cv2.warpAffine(kernel, rotation, (length, length)), dtype=np.float32)
    return np.asarray(cv2.filter2D(image, -1, line / line.sum()))
