"""Model cards: what a model is, what it was trained on, how, how well it does, and under which licence.

Written with every model (`citywatch train` writes ``MODEL_CARD.md`` and ``card.json`` beside
``model.onnx``; the registry keeps them with each version). The dataset part quotes the dataset's manifest
(sources, licences, class map, counts, content hash) as JSON, so this module needs nothing from
`citywatch.datasets`.
"""

from __future__ import annotations

import hashlib
import os
import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, Field

from citywatch.models.augment import TrainAugment
from citywatch.models.evaluate import EvalReport
from citywatch.vision.detector import ModelInfo

__all__ = ["CARD_JSON", "CARD_MD", "ModelCard", "TrainingRecord", "hardware_summary"]

CARD_JSON = "card.json"
CARD_MD = "MODEL_CARD.md"
LICENCE = (
    "AGPL-3.0: the weights derive from Ultralytics YOLO11 (AGPL-3.0, https://ultralytics.com/license) and the "
    "model was trained with Ultralytics' trainer. Redistribution outside AGPL terms needs an Ultralytics "
    "Enterprise licence. Training data licences are listed under Data."
)


class _Manifest(Protocol):
    def model_dump(self, *, mode: str = ...) -> dict[str, Any]: ...


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def hardware_summary(device: str = "cpu") -> str:
    """CPU model and cores available to this process, and the GPU torch sees (if torch is importable)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f"GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        gpu = "GPU unknown (torch not installed)"
    return f"{cpu}, {cores} cores; {gpu}; device {device}"


class TrainingRecord(BaseModel):
    base_weights: str = Field(description="Checkpoint training started from")
    epochs: int
    imgsz: int
    batch: int
    seed: int
    device: str = Field(description="Hardware it trained on")
    train_seconds: float
    augment: TrainAugment | None = Field(
        None, description="Augmentation passed to ultralytics (from the dataset's recipe); null: ultralytics' defaults"
    )
    command: str = Field(description="The command that reproduces the run")
    ultralytics: str | None = Field(default_factory=lambda: _package_version("ultralytics"))
    torch: str | None = Field(default_factory=lambda: _package_version("torch"))


class ModelCard(BaseModel):
    name: str
    version: str
    file: str
    sha256: str
    bytes: int
    classes: list[str]
    input_size: tuple[int, int]
    batch: str = Field(description="'dynamic' or the fixed batch size")
    created_at: str
    citywatch: str | None = Field(default_factory=lambda: _package_version("citywatch"))
    dataset: dict[str, Any] = Field(description="The training dataset's manifest")
    training: TrainingRecord | None = None
    evaluation: EvalReport | None = Field(None, description="Scored with OnnxDetector on the dataset's val split")
    licence: str = LICENCE
    notes: list[str] = Field(default_factory=list, description="Known weaknesses and caveats, in plain words")

    @classmethod
    def build(
        cls,
        path: Path,
        *,
        info: ModelInfo,
        dataset: _Manifest,
        training: TrainingRecord | None,
        evaluation: EvalReport | None,
        notes: list[str] | None = None,
        name: str | None = None,
    ) -> ModelCard:
        data = path.read_bytes()
        return cls(
            name=name or path.stem,
            version=info.version,
            file=path.name,
            sha256=hashlib.sha256(data).hexdigest(),
            bytes=len(data),
            classes=list(info.class_names),
            input_size=info.input_size,
            batch="dynamic" if info.batch is None else str(info.batch),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            dataset=dataset.model_dump(mode="json"),
            training=training,
            evaluation=evaluation,
            notes=notes or [],
        )

    def write(self, folder: Path) -> Path:
        """Write card.json and MODEL_CARD.md into `folder`; returns the Markdown path."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CARD_JSON).write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        path = folder / CARD_MD
        path.write_text(self.markdown(), encoding="utf-8")
        return path

    @classmethod
    def read(cls, folder: Path) -> ModelCard:
        return cls.model_validate_json((folder / CARD_JSON).read_text(encoding="utf-8"))

    def markdown(self) -> str:
        lines = [
            f"# {self.name} {self.version}",
            "",
            "| | |",
            "|---|---|",
            f"| file | `{self.file}` |",
            f"| sha256 | `{self.sha256}` |",
            f"| size | {self.bytes:,} bytes |",
            f"| classes | {', '.join(f'{i} {n}' for i, n in enumerate(self.classes))} |",
            f"| input | {self.input_size[0]}×{self.input_size[1]}, batch {self.batch} |",
            f"| made | {self.created_at}, citywatch {self.citywatch} |",
            "",
            "## Data",
            *self._data_lines(),
            "",
        ]
        if self.training is not None:
            t = self.training
            lines += [
                "## Training",
                f"- from `{t.base_weights}`; {t.epochs} epochs, imgsz {t.imgsz}, batch {t.batch}, seed {t.seed}",
                f"- hardware: {t.device}",
                f"- augmentation: {t.augment.summary() if t.augment is not None else 'ultralytics defaults'}",
                f"- training time: {t.train_seconds / 60:.1f} min ({t.train_seconds:.0f} s)",
                f"- ultralytics {t.ultralytics}, torch {t.torch}",
                f"- command: `{t.command}`",
                "",
            ]
        if self.evaluation is not None:
            lines += ["## Metrics", *self._metric_lines(self.evaluation), ""]
        if self.notes:
            lines += ["## Limits", *(f"- {note}" for note in self.notes), ""]
        lines += ["## Licence", self.licence, ""]
        return "\n".join(lines)

    def _data_lines(self) -> list[str]:
        d = self.dataset
        lines = [f"Dataset **{d.get('name')}**, content sha256 `{d.get('content_hash')}` (manifest.json)."]
        for source in d.get("sources", []):
            mapped = ", ".join(f"{k} → {v if v is not None else 'dropped'}" for k, v in source["class_map"].items())
            lines.append(
                f"- source `{source['name']}`: {source.get('url') or source['path']} ({source['licence']}); "
                f"{source['images_kept']} of {source['images_read']} images, {source['boxes_kept']} boxes; "
                f"class map: {mapped}; drops: {source['drops'] or 'none'}"
            )
            if source.get("attribution"):
                lines.append(f"  - attribution: {source['attribution']}")
        paste = d.get("paste")
        if paste:
            objects = ", ".join(f"{k} {v}" for k, v in paste["objects"].items())
            lines.append(
                f"- copy-paste: {paste['scenes']} train scenes from {paste['background_pictures']} backgrounds, "
                f"objects cut from {paste['donor_pictures']} train pictures ({objects}); area "
                f"{paste['config']['area'][0]}–{paste['config']['area'][1]} of the scene; "
                f"{paste['night_scenes']} at night, {paste['blurred_scenes']} blurred"
            )
        for split, counts in d.get("splits", {}).items():
            boxes = ", ".join(f"{k} {v}" for k, v in counts["boxes"].items())
            lines.append(
                f"- {split}: {counts['images']} images ({counts['background_images']} without boxes); boxes: {boxes}"
            )
        return lines

    @staticmethod
    def _metric_lines(report: EvalReport) -> list[str]:
        def f(value: float | None) -> str:
            return "—" if value is None else f"{value:.3f}"

        lines = [
            f"Measured with `citywatch evaluate` (OnnxDetector, the serving code path) on **{report.dataset}** "
            f"({report.images} images), conf ≥ {report.conf}, NMS IoU {report.iou}; P and R at conf "
            f"{report.pr_conf:.3f} (best mean F1). mAP is COCO 101-point over IoU 0.50:0.95.",
            "",
            "| class | images | boxes | P | R | mAP50 | mAP50-95 |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in [*report.classes, report.all]:
            lines.append(
                f"| {s.name} | {s.images} | {s.instances} | {f(s.precision)} | {f(s.recall)} | "
                f"{f(s.map50)} | {f(s.map50_95)} |"
            )
        lines.append("")
        lines.append(f"detect() took {report.ms_per_image:.1f} ms per image (batch 1) while measuring.")
        return lines
