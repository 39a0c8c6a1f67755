"""Copy-paste: garbage cut from training pictures and pasted small onto wide scenes, as a city camera sees it.

The outside garbage sets are close-ups; a fixed CCTV view sees the same bag at 0.05–1 % of the frame. A recipe's
`paste:` step makes `scenes` extra training pictures: each takes one background picture (train images of the
named `backgrounds` sources, e.g. CC BY parking frames) and pastes 1–4 objects of the `objects` classes, cut by
their boxes from the dataset's *train* pictures only (the builder passes nothing else, so no validation picture
ever feeds training), each resized to an area in `area` (a fraction of the scene; larger lower in the frame, as
the ground comes nearer), never overlapping another box. Since sources give boxes, not masks, each cut is
blended through a feathered rounded-rectangle mask; its brightness and contrast are pulled towards the
background around it (`match`) so a paste is not trivially visible. A share of scenes is then darkened
(`night`) or blurred (`blur`), see `citywatch.datasets.degrade`. Every scene is drawn from its own seed
(`seed`, scene index): the same recipe and sources give the same pictures. What went where is recorded per
scene (`PastedScene`; the builder writes ``pastes.jsonl`` and a `PasteSummary` in the manifest).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import lru_cache, partial

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from citywatch.datasets.degrade import blur, night
from citywatch.datasets.sample import Sample

__all__ = ["PasteConfig", "PasteSummary", "PastedObject", "PastedScene", "paste_scenes", "summarise"]

_TRIES = 40
"""Placements tried per object (a donor too small, a spot taken or on black padding is tried again)."""
_MASK_POWER = 2.5
"""Exponent of the superellipse mask: 2 is an ellipse, large a rectangle; 2.5 drops most of the donor's floor in
the box corners (a box is not a mask) and keeps the object, which fills the middle."""


class PasteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("paste", description="Source name of the pasted scenes (file prefix, manifest)")
    scenes: int = Field(ge=1, description="Pictures to make; all go to the train split")
    seed: int = Field(0, description="Seed; scene i is drawn from (seed, i)")
    objects: list[str] = Field(min_length=1, description="Model classes cut from train pictures and pasted")
    backgrounds: list[str] = Field(
        min_length=1, description="Recipe sources whose train images are the scenes (their boxes are kept)"
    )
    per_scene: tuple[int, int] = Field((1, 4), description="Fewest and most objects pasted into one scene")
    area: tuple[float, float] = Field(
        (0.0005, 0.01), description="Smallest and largest pasted box area, as a fraction of the scene's area"
    )
    band: tuple[float, float] = Field(
        (0.3, 1.0), description="Vertical band (fractions of the height) where pasted boxes stand: not in the sky"
    )
    perspective: bool = Field(True, description="Lower in the band → larger in the area range (the ground nears)")
    min_side: int = Field(16, ge=2, description="Donor boxes with a shorter side (px) are not cut")
    feather: float = Field(0.4, gt=0, le=1, description="Soft edge of the mask, as a fraction of the box half-size")
    match: float = Field(
        0.6, ge=0, le=1, description="How far a paste's brightness and contrast move towards its surroundings"
    )
    night: float = Field(0.15, ge=0, le=1, description="Share of scenes darkened to street-lit night")
    blur: float = Field(0.15, ge=0, le=1, description="Share of scenes blurred (defocus or motion)")
    quality: int = Field(90, ge=50, le=100, description="JPEG quality of the written scenes")

    @model_validator(mode="after")
    def _ranges(self) -> PasteConfig:
        lo, hi = self.per_scene
        if not 1 <= lo <= hi:
            raise ValueError(f"per_scene must be [fewest, most] with 1 <= fewest <= most; got {list(self.per_scene)}")
        if not 0 < self.area[0] < self.area[1] <= 0.25:
            raise ValueError(f"area must be [smallest, largest] with 0 < smallest < largest <= 0.25; got {self.area}")
        if not 0 <= self.band[0] < self.band[1] <= 1:
            raise ValueError(f"band must be [top, bottom] with 0 <= top < bottom <= 1; got {list(self.band)}")
        return self

    def check(self, names: Sequence[str], source_names: Sequence[str]) -> None:
        """Cross-checks against the recipe: known classes and sources, a name of its own."""
        unknown = sorted(set(self.objects) - set(names))
        if unknown:
            raise ValueError(f"paste: objects {unknown} are not in names {list(names)}")
        missing = sorted(set(self.backgrounds) - set(source_names))
        if missing:
            raise ValueError(f"paste: backgrounds {missing} are not sources of the recipe {list(source_names)}")
        if self.name in source_names:
            raise ValueError(f"paste: name {self.name!r} is already a source's name")


class PastedObject(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    class_name: str
    donor_source: str
    donor_item: str = Field(description="The train picture the object was cut from")
    donor_box: int = Field(description="Index of the box among that picture's kept labels")
    box: tuple[int, int, int, int] = Field(description="Where it was pasted: x0, y0, x1, y1 in scene pixels")


class PastedScene(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    item: str
    background_source: str
    background_item: str
    flipped: bool = Field(description="Background mirrored left-right")
    night: bool
    blurred: bool
    objects: list[PastedObject]


class PasteSummary(BaseModel):
    """The manifest's account of the paste step; the per-scene records are in `records`."""

    model_config = ConfigDict(extra="forbid")

    config: PasteConfig
    scenes: int
    objects: dict[str, int] = Field(description="Pasted boxes per class")
    donor_pictures: int = Field(description="Distinct train pictures objects were cut from")
    background_pictures: int = Field(description="Distinct background pictures used")
    night_scenes: int
    blurred_scenes: int
    records: str = Field("pastes.jsonl", description="One line per scene: background, objects, donors, boxes")


def summarise(config: PasteConfig, scenes: Sequence[PastedScene]) -> PasteSummary:
    objects = [o for scene in scenes for o in scene.objects]
    counts = Counter(o.class_name for o in objects)
    return PasteSummary(
        config=config,
        scenes=len(scenes),
        objects={name: counts.get(name, 0) for name in config.objects},
        donor_pictures=len({(o.donor_source, o.donor_item) for o in objects}),
        background_pictures=len({(s.background_source, s.background_item) for s in scenes}),
        night_scenes=sum(s.night for s in scenes),
        blurred_scenes=sum(s.blurred for s in scenes),
    )


def _decode(sample: Sample) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(sample.read(), np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{sample.source}/{sample.item}: cannot decode the image for pasting")
    return image


def _pixel_boxes(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    cx, cy, w, h = (labels[:, i] for i in range(1, 5))
    boxes = np.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], 1)
    return np.rint(boxes.reshape(-1, 4)).astype(int)


def _overlaps(box: tuple[int, int, int, int], taken: list[tuple[int, int, int, int]]) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in taken)


def _mask(height: int, width: int, feather: float) -> np.ndarray:
    """Feathered superellipse: 1 inside, 0 in the box's far corners, > 0 at each edge's middle (so the pasted
    pixels span the whole box and the label is exactly the box)."""
    u = (2 * (np.arange(width) + 0.5) / width - 1)[None, :]
    v = (2 * (np.arange(height) + 0.5) / height - 1)[:, None]
    radius = (np.abs(u) ** _MASK_POWER + np.abs(v) ** _MASK_POWER) ** (1 / _MASK_POWER)
    return np.clip((1.0 - radius) / feather + 1e-3, 0.0, 1.0).astype(np.float32)[..., None]


def _match(patch: np.ndarray, surroundings: np.ndarray, strength: float) -> np.ndarray:
    """Move the patch's lightness mean towards the surroundings' and lower (never raise) its contrast to theirs;
    on a grey picture (some exports are greyscale) the patch goes grey too."""
    if np.abs(np.diff(surroundings.astype(np.int16), axis=2)).mean() < 2.0:
        patch = cv2.cvtColor(cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    lab = cv2.cvtColor(patch, cv2.COLOR_BGR2LAB).astype(np.float32)
    around = cv2.cvtColor(surroundings, cv2.COLOR_BGR2LAB)[..., 0].astype(np.float32)
    light = lab[..., 0]
    mean, spread = float(light.mean()), max(float(light.std()), 1.0)
    contrast = 1.0 + strength * (min(max(float(around.std()) / spread, 0.5), 1.0) - 1.0)
    lab[..., 0] = (light - mean) * contrast + mean + strength * (float(around.mean()) - mean)
    return cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)


def _unusable(scene: np.ndarray, box: tuple[int, int, int, int]) -> bool:
    """Over a fifth of the spot is black padding (rotated exports fill corners with black), or over half of it is
    bright sky or cloud (rotated frames put the sky anywhere; nothing lies there)."""
    x0, y0, x1, y1 = box
    gray = cv2.cvtColor(scene[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
    return bool((gray < 8).mean() > 0.2 or (gray > 200).mean() > 0.5)


def _place(
    config: PasteConfig, size: tuple[int, int], donor_size: tuple[int, int], rng: np.random.Generator
) -> tuple[int, int, int, int] | None:
    """A box for a donor of `donor_size` (w, h) in a scene of `size` (w, h), or None if it does not fit."""
    width, height = size
    bottom = rng.uniform(config.band[0], config.band[1]) * height
    low, high = math.log(config.area[0]), math.log(config.area[1])
    t = rng.uniform(0, 1)
    if config.perspective:
        span = config.band[1] - config.band[0]
        t = min(max((bottom / height - config.band[0]) / span + rng.uniform(-0.25, 0.25), 0.0), 1.0)
    area = math.exp(low + t * (high - low)) * width * height
    aspect = donor_size[0] / donor_size[1]
    w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
    if not config.area[0] <= w * h / (width * height) <= config.area[1] or w < 2 or h < 2:
        return None
    if w > donor_size[0] or h > donor_size[1] or w > width or round(bottom) - h < 0:
        return None  # never enlarge a cut: it would be blurrier than the scene
    x0 = int(rng.integers(0, width - w + 1))
    y1 = min(round(bottom), height)
    return x0, y1 - h, x0 + w, y1


def _paste(scene: np.ndarray, patch: np.ndarray, box: tuple[int, int, int, int], config: PasteConfig) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    small = cv2.resize(patch, (w, h), interpolation=cv2.INTER_AREA)
    height, width = scene.shape[:2]
    around = scene[max(0, y0 - h) : min(height, y1 + h), max(0, x0 - w) : min(width, x1 + w)]
    small = _match(small, around, config.match)
    alpha = _mask(h, w, config.feather)
    region = scene[y0:y1, x0:x1].astype(np.float32)
    scene[y0:y1, x0:x1] = np.rint(alpha * small + (1 - alpha) * region).astype(np.uint8)


class _Donors:
    """The boxes of the wanted classes in the train pictures, and the pictures decoded on demand."""

    def __init__(self, donors: Sequence[Sample], wanted: dict[int, str]) -> None:
        self.samples = donors
        self.wanted = wanted
        self.pool = [(d, i) for d, s in enumerate(donors) for i, row in enumerate(s.labels) if int(row[0]) in wanted]
        self.image = lru_cache(maxsize=64)(lambda d: _decode(donors[d]))

    def paste_one(
        self, config: PasteConfig, scene: np.ndarray, taken: list[tuple[int, int, int, int]], rng: np.random.Generator
    ) -> PastedObject | None:
        """Cut a random box and paste it somewhere free; None after `_TRIES` misses."""
        height, width = scene.shape[:2]
        for _ in range(_TRIES):
            d, i = self.pool[int(rng.integers(len(self.pool)))]
            image, donor = self.image(d), self.samples[d]
            x0, y0, x1, y1 = _pixel_boxes(donor.labels[i : i + 1], image.shape[1], image.shape[0])[0]
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, image.shape[1]), min(y1, image.shape[0])
            if min(x1 - x0, y1 - y0) < config.min_side:
                continue
            box = _place(config, (width, height), (x1 - x0, y1 - y0), rng)
            if box is None or _overlaps(box, taken) or _unusable(scene, box):
                continue
            patch = image[y0:y1, x0:x1]
            _paste(scene, patch[:, ::-1] if rng.random() < 0.5 else patch, box, config)
            taken.append(box)
            name = self.wanted[int(donor.labels[i, 0])]
            return PastedObject(class_name=name, donor_source=donor.source, donor_item=donor.item, donor_box=i, box=box)
        return None


def _yolo_rows(objects: list[PastedObject], class_ids: dict[str, int], width: int, height: int) -> np.ndarray:
    rows = [
        [
            class_ids[o.class_name],
            (o.box[0] + o.box[2]) / 2 / width,
            (o.box[1] + o.box[3]) / 2 / height,
            (o.box[2] - o.box[0]) / width,
            (o.box[3] - o.box[1]) / height,
        ]
        for o in objects
    ]
    return np.array(rows, dtype=float).reshape(-1, 5)


def paste_scenes(
    config: PasteConfig,
    donors: Sequence[Sample],
    backgrounds: Sequence[Sample],
    class_ids: dict[str, int],
) -> Iterator[tuple[Sample, PastedScene]]:
    """Make `config.scenes` pictures (train split), each with its record; `donors` must be train pictures only.

    Samples are read (``sample.read()``) and decoded here, so they may carry a placeholder `image`."""
    cutter = _Donors(donors, {class_ids[name]: name for name in config.objects})
    if not cutter.pool:
        raise ValueError(f"paste: no {config.objects} boxes in the train pictures to cut from")
    if not backgrounds:
        raise ValueError(f"paste: sources {config.backgrounds} have no train pictures to paste onto")
    background_image = lru_cache(maxsize=128)(lambda b: _decode(backgrounds[b]))
    digits = len(str(config.scenes - 1))
    for index in range(config.scenes):
        rng = np.random.default_rng([config.seed, index])
        objects: list[PastedObject] = []
        for _ in range(5):  # a background with no room (all padding) is swapped for another
            chosen = backgrounds[b := int(rng.integers(len(backgrounds)))]
            scene, labels = background_image(b).copy(), chosen.labels.copy()
            height, width = scene.shape[:2]
            flipped = bool(rng.random() < 0.5)
            if flipped:
                scene = np.ascontiguousarray(scene[:, ::-1])
                labels[:, 1] = 1.0 - labels[:, 1]
            taken = [(b[0], b[1], b[2], b[3]) for b in _pixel_boxes(labels, width, height).tolist()]
            count = int(rng.integers(config.per_scene[0], config.per_scene[1] + 1))
            objects = [o for _ in range(count) if (o := cutter.paste_one(config, scene, taken, rng)) is not None]
            if objects:
                break
        if not objects:
            raise ValueError(f"paste: scene {index}: no object fits on five backgrounds; widen area or band")
        dark, blurred = bool(rng.random() < config.night), bool(rng.random() < config.blur)
        scene = night(scene, rng) if dark else scene
        scene = blur(scene, rng) if blurred else scene
        ok, encoded = cv2.imencode(".jpg", scene, [cv2.IMWRITE_JPEG_QUALITY, config.quality])
        if not ok:  # pragma: no cover (cv2 encodes any uint8 BGR image)
            raise ValueError(f"paste: scene {index}: JPEG encoding failed")
        item = f"{index:0{digits}d}"
        sample = Sample(
            source=config.name,
            item=item,
            suffix=".jpg",
            read=partial(bytes, encoded.tobytes()),
            image=scene,
            labels=np.concatenate([labels, _yolo_rows(objects, class_ids, width, height)]),
            group=f"{config.name}/{item}",
            split="train",
        )
        record = PastedScene(
            item=item,
            background_source=chosen.source,
            background_item=chosen.item,
            flipped=flipped,
            night=dark,
            blurred=blurred,
            objects=objects,
        )
        yield sample, record
