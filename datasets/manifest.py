"""A dataset's manifest: what it was built from, with which class map, what it holds, and a content hash.

The content hash covers the class names and every image and label file (path and bytes), not the build time,
so the same recipe on the same sources gives the same hash, and any changed label gives another. A model
card quotes the manifest, so it can say exactly which data a model saw.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from citywatch.datasets.paste import PasteSummary
from citywatch.models.augment import TrainAugment

__all__ = ["MANIFEST_NAME", "DatasetManifest", "SourceRecord", "SplitCounts", "content_hash", "file_sha256"]

MANIFEST_NAME = "manifest.json"


class SourceRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    kind: str
    path: str
    url: str | None = None
    licence: str
    attribution: str | None = None
    class_map: dict[str, str | None]
    images_read: int = Field(description="Images the source offered")
    images_kept: int = Field(description="Images written into the dataset")
    boxes_kept: int
    drops: dict[str, int] = Field(description="Dropped label lines and images, per reason")


class SplitCounts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    images: int
    background_images: int = Field(description="Images with no box (allowed: they teach what is not a target)")
    boxes: dict[str, int] = Field(description="Boxes per class name")


class DatasetManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: int = 1
    name: str
    names: list[str] = Field(description="Class names in class-id order")
    created_at: str = Field(description="UTC build time, ISO 8601 (not part of the content hash)")
    made_by: str = Field(description="citywatch version and command")
    sources: list[SourceRecord]
    splits: dict[str, SplitCounts]
    drops: dict[str, int] = Field(description="Everything dropped, per reason (details in drops.jsonl)")
    dedupe_max_distance: int
    augment: TrainAugment | None = Field(
        None, description="Training-time augmentation the recipe asks for; null: built before recipes said it"
    )
    paste: PasteSummary | None = Field(None, description="The copy-paste step, if the recipe has one")
    content_hash: str = Field(description="sha256 over the class names and every image and label file")

    def write(self, root: Path) -> Path:
        path = root / MANIFEST_NAME
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, root: str | Path) -> DatasetManifest:
        path = Path(root) / MANIFEST_NAME
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path}: no manifest; build the dataset with `citywatch datasets build RECIPE --out DIR`"
            ) from None

    def short(self) -> str:
        """One line for logs and cards: name, hash prefix, image counts."""
        counts = ", ".join(f"{split} {c.images}" for split, c in self.splits.items())
        return f"{self.name} (sha256 {self.content_hash[:12]}…; images: {counts})"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_hash(root: str | Path, names: list[str]) -> str:
    """sha256 over the class names and (relative path, sha256) of every file under images/ and labels/."""
    root = Path(root)
    digest = hashlib.sha256()
    digest.update(json.dumps(names).encode())
    files = sorted(
        p
        for folder in ("images", "labels")
        if (root / folder).is_dir()
        for p in (root / folder).rglob("*")
        if p.is_file()
    )
    for path in files:
        digest.update(f"\n{path.relative_to(root).as_posix()}\t{file_sha256(path)}".encode())
    return digest.hexdigest()
