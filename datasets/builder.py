"""Build a YOLO dataset from a recipe: read every source, split by group, drop near-duplicates, write.

    result = build_dataset(load_recipe("datasets/recipes/garbage-v1.yaml"), Path("var/datasets/garbage-v1"))

Writes ``images/<split>/``, ``labels/<split>/``, ``data.yaml`` (loadable by ultralytics and by
`citywatch.datasets.yolo.YoloDataset`), ``manifest.json`` and ``drops.jsonl`` (one line per dropped label
line or image, with its reason). Order of decisions:
1. each source checks its labels (`validate.check_labels`) and yields images already on the model's classes;
   a source with `copies_per_group` keeps that many images per group and split (`copies.keep_copies`);
2. images without a source split are split by group (`splits.split_by_group`);
3. a group found in an evaluation split and in train loses its train images (GROUP_LEAK);
4. near-duplicates (dHash) are dropped, evaluation splits scanned first so that a training frame that
   repeats a validation frame is the one that goes;
5. the recipe's copy-paste scenes (`citywatch.datasets.paste`), if any, are made from what is left in train
   and written to train, after dedupe (a paste barely changes a background's hash); ``pastes.jsonl`` says
   what was pasted from which picture.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import yaml

from citywatch.datasets.cases_source import CaseReviewSource
from citywatch.datasets.copies import keep_copies
from citywatch.datasets.dedupe import dhash, near_duplicates
from citywatch.datasets.importing import YoloFolderSource
from citywatch.datasets.manifest import DatasetManifest, SourceRecord, SplitCounts, content_hash
from citywatch.datasets.paste import PastedScene, PasteSummary, paste_scenes, summarise
from citywatch.datasets.recipe import CasesSourceConfig, DatasetRecipe, SourceConfig
from citywatch.datasets.sample import DatasetSource, Sample
from citywatch.datasets.splits import split_by_group
from citywatch.datasets.validate import Drop, DropReason, count_drops

__all__ = ["BuildResult", "DatasetExistsError", "build_dataset"]

TRAIN = "train"
PASTES_NAME = "pastes.jsonl"
_NO_IMAGE = np.zeros((1, 1, 3), dtype=np.uint8)
"""Stands in for a sample's decoded image once it is hashed."""


class DatasetExistsError(FileExistsError):
    """The output folder already holds files and overwriting was not asked for."""


@dataclass
class _Entry:
    sample: Sample
    hash: int
    split: str = ""


@dataclass
class BuildResult:
    root: Path
    manifest: DatasetManifest
    drops: list[Drop] = field(default_factory=list)


def _citywatch_version() -> str:
    try:
        return version("citywatch")
    except PackageNotFoundError:
        return "unknown"


def open_source(config: SourceConfig | CasesSourceConfig, recipe: DatasetRecipe) -> DatasetSource:
    """The source object for a recipe entry: an outside YOLO folder, or reviewed cases."""
    if isinstance(config, CasesSourceConfig):
        return CaseReviewSource.from_config(config, recipe)
    if config.kind == "yolo_folder":
        return YoloFolderSource(config, recipe)
    raise ValueError(f"source {config.name!r}: unknown kind {config.kind!r}")  # pragma: no cover (pydantic guards)


def _assign_splits(entries: list[_Entry], recipe: DatasetRecipe) -> None:
    pooled = [e for e in entries if e.sample.split is None]
    for entry in entries:
        entry.split = entry.sample.split or ""
    if pooled:
        splits = split_by_group([e.sample.group for e in pooled], recipe.split.fractions, seed=recipe.split.seed)
        for entry, split in zip(pooled, splits, strict=True):
            entry.split = split


def _drop_group_leaks(entries: list[_Entry], drops: list[Drop]) -> list[_Entry]:
    splits_of: dict[str, set[str]] = defaultdict(set)
    for entry in entries:
        splits_of[entry.sample.group].add(entry.split)
    kept = []
    for entry in entries:
        others = sorted(splits_of[entry.sample.group] - {entry.split})
        if entry.split == TRAIN and others:
            s = entry.sample
            drops.append(Drop(s.source, s.item, DropReason.GROUP_LEAK, f"group {s.group!r} is also in {others}"))
            continue
        kept.append(entry)
    return kept


def _drop_near_duplicates(entries: list[_Entry], max_distance: int, drops: list[Drop]) -> list[_Entry]:
    ordered = sorted(entries, key=lambda e: (e.split == TRAIN, e.split, e.sample.source, e.sample.item))
    duplicates = near_duplicates([e.hash for e in ordered], max_distance)
    for index, original in duplicates.items():
        s, o = ordered[index].sample, ordered[original].sample
        drops.append(Drop(s.source, s.item, DropReason.NEAR_DUPLICATE, f"within {max_distance} bits of {o.item}"))
    return [e for i, e in enumerate(ordered) if i not in duplicates]


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise DatasetExistsError(f"{out} is not empty; choose another --out or pass --overwrite")
        for name in ("images", "labels"):
            shutil.rmtree(out / name, ignore_errors=True)
        (out / PASTES_NAME).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _write_sample(sample: Sample, split: str, out: Path, names: list[str], counts: dict[str, SplitCounts]) -> None:
    stem = f"{sample.source}__{Path(sample.item).stem}"
    image_dir, label_dir = out / "images" / split, out / "labels" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    (image_dir / (stem + sample.suffix)).write_bytes(sample.read())
    lines = [f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}" for c, x, y, w, h in sample.labels]
    (label_dir / (stem + ".txt")).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    counted = counts.setdefault(split, SplitCounts(images=0, background_images=0, boxes={}))
    counted.images += 1
    counted.background_images += int(len(sample.labels) == 0)
    for class_id in sample.labels[:, 0].astype(int):
        counted.boxes[names[class_id]] = counted.boxes.get(names[class_id], 0) + 1


def _write(entries: list[_Entry], out: Path, names: list[str], counts: dict[str, SplitCounts]) -> None:
    for entry in sorted(entries, key=lambda e: (e.split, e.sample.source, e.sample.item)):
        _write_sample(entry.sample, entry.split, out, names, counts)


def _sorted_counts(counts: dict[str, SplitCounts], names: list[str]) -> dict[str, SplitCounts]:
    for split in counts.values():
        split.boxes = {name: split.boxes.get(name, 0) for name in names}
    return dict(sorted(counts.items(), key=lambda kv: (kv[0] != TRAIN, kv[0])))


def _paste(
    recipe: DatasetRecipe,
    entries: list[_Entry],
    out: Path,
    counts: dict[str, SplitCounts],
    on_image: Callable[[str], None] | None,
) -> tuple[PasteSummary, SourceRecord]:
    """The recipe's copy-paste scenes, cut from and pasted onto train pictures only; written to train."""
    config = recipe.paste
    assert config is not None
    train = [e.sample for e in entries if e.split == TRAIN]
    backgrounds = [s for s in train if s.source in config.backgrounds]
    class_ids = {name: index for index, name in enumerate(recipe.names)}
    scenes: list[PastedScene] = []
    with (out / PASTES_NAME).open("w", encoding="utf-8") as f:
        for sample, scene in paste_scenes(config, train, backgrounds, class_ids):
            _write_sample(sample, TRAIN, out, recipe.names, counts)
            f.write(scene.model_dump_json() + "\n")
            scenes.append(scene)
            if on_image is not None:
                on_image(config.name)
    summary = summarise(config, scenes)
    used = sorted({o.donor_source for s in scenes for o in s.objects} | set(config.backgrounds))
    licences = sorted({c.licence for c in recipe.sources if c.name in used})
    record = SourceRecord(
        name=config.name,
        kind="paste",
        path=f"made from train pictures of {', '.join(used)} ({PASTES_NAME})",
        licence=f"{' + '.join(licences)} (adapted: objects cut and pasted)",
        attribution=f"adapted from the sources {', '.join(used)}; see their attribution",
        class_map={name: name for name in config.objects},
        images_read=len(scenes),
        images_kept=len(scenes),
        boxes_kept=sum(len(s.objects) for s in scenes),
        drops={},
    )
    return summary, record


def build_dataset(
    recipe: DatasetRecipe,
    out: Path,
    *,
    overwrite: bool = False,
    on_image: Callable[[str], None] | None = None,
) -> BuildResult:
    """Build the recipe's dataset into `out`; returns its manifest and every drop with its reason."""
    _prepare_out(out, overwrite)
    drops: list[Drop] = []
    entries: list[_Entry] = []
    read: Counter[str] = Counter()
    for config in recipe.sources:
        source = open_source(config, recipe)
        samples = source.samples(drops.append)
        if isinstance(config, SourceConfig) and config.copies_per_group is not None:
            samples = keep_copies(samples, config.copies_per_group, drops.append)
        for sample in samples:
            read[config.name] += 1
            # The decoded image is only needed for its hash: holding thousands of them would take gigabytes.
            entries.append(_Entry(replace(sample, image=_NO_IMAGE), dhash(sample.image)))
            if on_image is not None:
                on_image(config.name)
        read[config.name] += sum(1 for d in drops if d.source == config.name and d.line is None)
    _assign_splits(entries, recipe)
    entries = _drop_group_leaks(entries, drops)
    entries = _drop_near_duplicates(entries, recipe.dedupe_max_distance, drops)
    counts: dict[str, SplitCounts] = {}
    _write(entries, out, recipe.names, counts)
    paste, paste_record = _paste(recipe, entries, out, counts, on_image) if recipe.paste else (None, None)
    splits = _sorted_counts(counts, recipe.names)
    data_yaml = {"names": list(recipe.names), "nc": len(recipe.names)}
    data_yaml.update({split: f"images/{split}" for split in splits})
    (out / "data.yaml").write_text(yaml.safe_dump(data_yaml, sort_keys=False, allow_unicode=True), encoding="utf-8")
    with (out / "drops.jsonl").open("w", encoding="utf-8") as f:
        for drop in drops:
            f.write(json.dumps(drop.as_dict(), ensure_ascii=False) + "\n")
    sources = []
    for config in recipe.sources:
        mine = [e for e in entries if e.sample.source == config.name]
        sources.append(
            SourceRecord(
                name=config.name,
                kind=config.kind,
                path=str(config.path),
                url=config.url,
                licence=config.licence,
                attribution=config.attribution,
                class_map=dict(config.class_map),
                images_read=read[config.name],
                images_kept=len(mine),
                boxes_kept=int(sum(len(e.sample.labels) for e in mine)),
                drops=count_drops(d for d in drops if d.source == config.name),
            )
        )
    if paste_record is not None:
        sources.append(paste_record)
    manifest = DatasetManifest(
        name=recipe.name,
        names=list(recipe.names),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        made_by=f"citywatch {_citywatch_version()} (citywatch.datasets.builder)",
        sources=sources,
        splits=splits,
        drops=count_drops(drops),
        dedupe_max_distance=recipe.dedupe_max_distance,
        augment=recipe.augment,
        paste=paste,
        content_hash=content_hash(out, list(recipe.names)),
    )
    manifest.write(out)
    return BuildResult(out, manifest, drops)
