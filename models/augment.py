"""The training-time augmentation a dataset asks for: ultralytics' hyper-parameters that matter for city cameras.

A recipe's `augment:` holds one `TrainAugment`; the dataset's manifest carries it, `citywatch train` passes it
to ultralytics' trainer and the model card records it, so a run says how it was trained. The defaults are
chosen for fixed CCTV and handheld report photos, against ultralytics' own (in brackets):

- night and glare: `hsv_v` 0.6 [0.4] draws a brightness gain in 0.4–1.6, so dusk and street-lit frames are seen;
- rotated phone photos and tilted mounts: `degrees` 10 [0] rotates by up to ±10°;
- far, small garbage: `scale` 0.7 [0.5] shrinks objects down to 30 % (mosaic shrinks them further).

Blur has no hyper-parameter here (ultralytics blurs only through albumentations, not installed): the dataset's
copy-paste step (`citywatch.datasets.paste`) blurs and darkens a share of its scenes instead.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TrainAugment"]


class TrainAugment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hsv_h: float = Field(0.015, ge=0, le=0.5, description="Hue shift, fraction of the hue circle (±)")
    hsv_s: float = Field(0.7, ge=0, le=1, description="Saturation gain range (±): grey overcast and vivid bags")
    hsv_v: float = Field(
        0.6, ge=0, le=1, description="Brightness gain range (±): 0.6 gives 0.4–1.6, for night and glare"
    )
    degrees: float = Field(
        10.0, ge=0, le=180, description="Rotation range in degrees (±): rotated photos, tilted mounts"
    )
    translate: float = Field(0.1, ge=0, le=0.9, description="Translation range, fraction of the image (±)")
    scale: float = Field(
        0.7, ge=0, le=0.95, description="Scale gain range (±): 0.7 shrinks objects to 30 %, as far away"
    )
    shear: float = Field(0.0, ge=0, le=45, description="Shear range in degrees (±)")
    perspective: float = Field(0.0, ge=0, le=0.001, description="Perspective warp (0–0.001)")
    fliplr: float = Field(0.5, ge=0, le=1, description="Probability of a left-right flip")
    flipud: float = Field(0.0, ge=0, le=1, description="Probability of an up-down flip (garbage has an up)")
    mosaic: float = Field(1.0, ge=0, le=1, description="Probability of a 4-image mosaic (also makes objects small)")
    close_mosaic: int = Field(10, ge=0, description="Turn mosaic off for the last N epochs")
    mixup: float = Field(0.0, ge=0, le=1, description="Probability of MixUp")

    def ultralytics_args(self) -> dict[str, float | int]:
        """Keyword arguments for ultralytics' `model.train` (the field names are ultralytics' own)."""
        return self.model_dump()

    def summary(self) -> str:
        """One line for cards and logs."""
        return ", ".join(f"{name} {value:g}" for name, value in self.model_dump().items())
