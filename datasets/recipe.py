"""A dataset recipe: which sources, how their classes map onto the model's classes, how to split.

Configuration, not code: `datasets/recipes/*.yaml` hold the recipes this project uses. A class map sends each
class name of a source to one of the recipe's `names` (the classes the model will have), or to null to leave
it out on purpose; every source class must be named, so a new class in an updated source is an error rather
than silently dropped or silently kept.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from citywatch.cases.engine import redacted_url
from citywatch.datasets.paste import PasteConfig
from citywatch.models.augment import TrainAugment

__all__ = ["CasesSourceConfig", "DatasetRecipe", "RecipeError", "SourceConfig", "SplitConfig", "load_recipe"]


class RecipeError(ValueError):
    """A recipe file is unreadable or inconsistent; the message names the file and the field."""


class SourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Short unique name; prefixes the file names of its images in the dataset")
    kind: Literal["yolo_folder"] = Field(
        "yolo_folder",
        description="What the source is. Only outside YOLO folders today; reviewed cases plug in as another kind",
    )
    path: Path = Field(description="The source's root (with data.yaml); relative paths are taken from the recipe")
    url: str | None = Field(None, description="Where the source comes from, for the manifest and model card")
    licence: str = Field(description="The source's licence as stated, e.g. 'CC BY 4.0'")
    attribution: str | None = Field(None, description="Attribution text the licence asks for")
    class_map: dict[str, str | None] = Field(
        description="Source class name → model class name, or null to exclude that class on purpose"
    )
    splits: dict[str, str] | None = Field(
        None,
        description="Keep the source's own splits: source split → dataset split (e.g. {train: train, valid: val}). "
        "Null: pool the source's images and split them by group with the recipe's `split` fractions",
    )
    group_pattern: str | None = Field(
        None,
        description="Regex over the image file name whose first group is the group key (a camera, or the source "
        "picture of augmented copies); default: the file name's stem. Images of one group never share a split",
    )
    copies_per_group: int | None = Field(
        None,
        ge=1,
        description="Keep at most this many images of each group in each split (the first in file-name order; "
        "`citywatch.datasets.copies`); null keeps all. 1 keeps one copy per source picture of an augmented export",
    )

    @field_validator("group_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                if re.compile(value).groups < 1:
                    raise ValueError("needs one capturing group (the group key)")
            except re.error as error:
                raise ValueError(f"not a valid regex: {error}") from None
        return value

    def group_of(self, file_name: str) -> str:
        if self.group_pattern is None:
            return Path(file_name).stem
        match = re.search(self.group_pattern, file_name)
        return match.group(1) if match else Path(file_name).stem


class CaseEvidenceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str = Field(description="S3 endpoint host:port of the evidence store")
    bucket: str = Field("citywatch-evidence", description="Bucket that holds evidence objects")
    access_key: str = Field(description="S3 access key; write ${ENV_VAR}")
    secret_key: str = Field(description="S3 secret key; write ${ENV_VAR}")
    secure: bool = Field(False, description="Use HTTPS to reach the object store")


class CasesSourceConfig(BaseModel):
    """Reviewed enforcement cases (`citywatch.datasets.cases_source`): confirmed → labels, rejected → negatives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Short unique name; prefixes the file names of its images in the dataset")
    kind: Literal["cases"] = Field(description="cases: reviewed cases of a case store, frames from its evidence")
    database: str = Field(description="SQLAlchemy URL of the case database (read only); write secrets as ${ENV}")
    evidence: CaseEvidenceConfig = Field(description="The S3 evidence store the cases' frames are in")
    url: str | None = Field(None, description="Where the source comes from, for the manifest and model card")
    licence: str = Field("own data", description="Licence of the camera pictures, as the operator states it")
    attribution: str | None = Field(None, description="Attribution text, if any")
    class_map: dict[str, str | None] = Field(
        description="Case kind → model class name; null or absent: cases of that kind are left out"
    )

    @property
    def path(self) -> str:
        """The database, without its password (the manifest's `path` of this source)."""
        return redacted_url(self.database)


def _source_kind(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return str(kind or "yolo_folder")


AnySourceConfig = Annotated[
    Annotated[SourceConfig, Tag("yolo_folder")] | Annotated[CasesSourceConfig, Tag("cases")],
    Discriminator(_source_kind),
]


class SplitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fractions: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.8, "val": 0.2},
        description="Share of images per split, for sources split by group",
    )
    seed: int = Field(0, description="Seed of the group shuffle")


class DatasetRecipe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Dataset name, written in its manifest and in model cards")
    names: list[str] = Field(description="The model's classes, in class-id order")
    sources: list[AnySourceConfig] = Field(min_length=1, description="Where the images and labels come from")
    split: SplitConfig = Field(default_factory=SplitConfig, description="How pooled sources are split")
    dedupe_max_distance: int = Field(
        4, ge=0, le=64, description="dHash bits (of 64) within which two images count as near-duplicates"
    )
    paste: PasteConfig | None = Field(None, description="Copy-paste small objects onto scenes (datasets.paste)")
    augment: TrainAugment = Field(
        default_factory=TrainAugment, description="Training-time augmentation, passed to ultralytics by citywatch train"
    )

    @model_validator(mode="after")
    def _consistent(self) -> DatasetRecipe:
        if len(set(self.names)) != len(self.names) or not all(self.names):
            raise ValueError(f"names must be unique and non-empty; got {self.names}")
        seen: set[str] = set()
        for source in self.sources:
            if source.name in seen:
                raise ValueError(f"source name {source.name!r} is used twice")
            seen.add(source.name)
            unknown = sorted({t for t in source.class_map.values() if t is not None} - set(self.names))
            if unknown:
                raise ValueError(f"source {source.name!r}: class_map targets {unknown} are not in names {self.names}")
        if self.paste is not None:
            self.paste.check(self.names, [source.name for source in self.sources])
        return self

    def class_ids(self, source: SourceConfig | CasesSourceConfig) -> dict[str, int | None]:
        """The source's class map with target names turned into class ids."""
        return {src: None if dst is None else self.names.index(dst) for src, dst in source.class_map.items()}


def load_recipe(path: str | Path) -> DatasetRecipe:
    """Read a recipe YAML; relative source paths are made relative to the recipe file's folder."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise RecipeError(f"{path}: cannot read the recipe: {error}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping with name, names, sources")
    missing: list[str] = []
    raw = _substitute_env(raw, missing)
    if missing:
        raise RecipeError(f"{path}: environment variables not set: {', '.join(sorted(set(missing)))}")
    for source in raw.get("sources") or []:
        if isinstance(source, dict) and isinstance(source.get("path"), str):
            source_path = Path(source["path"]).expanduser()
            source["path"] = source_path if source_path.is_absolute() else (path.parent / source_path).resolve()
    try:
        return DatasetRecipe.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(f"{' → '.join(str(p) for p in e['loc']) or 'recipe'}: {e['msg']}" for e in error.errors())
        raise RecipeError(f"{path}: {problems}") from None


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _substitute_env(node: Any, missing: list[str]) -> Any:
    """${NAME} in any string of the recipe is the environment variable NAME (database and S3 secrets)."""
    if isinstance(node, dict):
        return {key: _substitute_env(value, missing) for key, value in node.items()}
    if isinstance(node, list):
        return [_substitute_env(value, missing) for value in node]
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            value = os.environ.get(match.group(1))
            if value is None:
                missing.append(match.group(1))
                return ""
            return value

        return _ENV.sub(replace, node)
    return node
