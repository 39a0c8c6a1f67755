"""A training run: dataset → ultralytics training → ONNX export → evaluation with the serving detector → card.

    citywatch train var/datasets/garbage-v1 --weights ../shared/weights/yolo11n-coco-reconstructed.pt \
        --name garbage-yolo11n --epochs 25 --imgsz 320

A run lives in ``var/runs/<name>/`` and every stage is resumable: run the same command again and it
continues an interrupted training from ``weights/last.pt``, then does whichever of export, evaluation and card
is still missing. The run directory holds ultralytics' files (``results.csv``, plots, ``weights/``) plus
``run.json`` (the config, hardware, timing), ``model.onnx``, ``eval.json`` and ``MODEL_CARD.md``.

ultralytics is driven by `citywatch.models.training` (imported lazily there), so this module stays importable
without the `train` extra.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from citywatch.datasets.manifest import DatasetManifest
from citywatch.datasets.yolo import YoloDataset, ground_truth
from citywatch.models.augment import TrainAugment
from citywatch.models.card import ModelCard, TrainingRecord, hardware_summary
from citywatch.models.evaluate import EvalReport, evaluate_detector
from citywatch.models.export import export_onnx
from citywatch.models.training import EpochReport, checkpoint_finished, train_ultralytics
from citywatch.vision.detector import OnnxDetector

__all__ = ["RunError", "TrainConfig", "TrainResult", "run_training"]


class RunError(RuntimeError):
    """A run directory conflicts with the config given, or a stage failed; the message says what to do."""


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data: Path = Field(description="Dataset folder with data.yaml and manifest.json (citywatch datasets build)")
    weights: Path = Field(description="Starting checkpoint (.pt); a bare name like yolo11n.pt would download")
    name: str = Field(description="Run name: the run lives in <runs_dir>/<name>")
    model_name: str = Field(description="Name written into the ONNX metadata and the card")
    model_version: str = Field("0.1.0", description="Version written into the ONNX metadata (ModelInfo.version)")
    runs_dir: Path = Field(Path("var/runs"), description="Where run directories live")
    epochs: int = Field(25, ge=1, description="Training epochs")
    imgsz: int = Field(320, ge=32, description="Square training and export size (multiple of 32)")
    batch: int = Field(16, ge=1, description="Images per batch")
    seed: int = Field(0, description="Seed for python, numpy, torch and ultralytics")
    device: str = Field("auto", description="'auto' (first CUDA GPU, else CPU), 'cpu', or a CUDA index like '0'")
    workers: int = Field(2, ge=0, description="Data-loader worker processes")
    patience: int = Field(100, ge=1, description="Stop early after this many epochs without improvement")
    eval_split: str = Field("val", description="Dataset split the card's metrics are measured on")

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.name

    @property
    def var_dir(self) -> Path:
        return self.runs_dir.resolve().parent


class TrainResult(BaseModel):
    run_dir: Path
    onnx: Path
    card: Path
    evaluation: EvalReport
    train_seconds: float
    resumed: bool


def _comparable(config: TrainConfig) -> dict[str, object]:
    return json.loads(config.model_dump_json(exclude={"runs_dir"}))  # type: ignore[no-any-return]


def _load_or_start_record(config: TrainConfig) -> dict[str, object]:
    path = config.run_dir / "run.json"
    if path.exists():
        record: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
        if record.get("config") != _comparable(config):
            raise RunError(
                f"{config.run_dir} was started with another config ({path}); pass the same options to resume it, "
                "or choose another --name"
            )
        return record
    config.run_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "config": _comparable(config),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "hardware": hardware_summary(config.device),
        "python": platform.python_version(),
        "train_seconds": 0.0,
    }
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def _save_record(config: TrainConfig, record: dict[str, object]) -> None:
    (config.run_dir / "run.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _train_stage(
    config: TrainConfig,
    record: dict[str, object],
    augment: TrainAugment | None,
    on_progress: Callable[[EpochReport], None] | None,
) -> tuple[Path, bool]:
    last = config.run_dir / "weights" / "last.pt"
    best = config.run_dir / "weights" / "best.pt"
    if last.exists() and best.exists() and checkpoint_finished(last):
        return best, False
    resume = last.exists()
    started = time.monotonic()
    try:
        best = train_ultralytics(
            var_dir=config.var_dir,
            weights=config.weights,
            data_yaml=config.data / "data.yaml",
            run_dir=config.run_dir.resolve(),
            resume=resume,
            epochs=config.epochs,
            imgsz=config.imgsz,
            batch=config.batch,
            seed=config.seed,
            device=config.device,
            workers=config.workers,
            patience=config.patience,
            augment=augment,
            on_progress=on_progress,
        )
    finally:
        record["train_seconds"] = float(record.get("train_seconds", 0.0)) + time.monotonic() - started  # type: ignore[arg-type]
        _save_record(config, record)
    record["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    _save_record(config, record)
    return best, resume


def evaluate_on_dataset(
    detector: OnnxDetector,
    data: Path,
    split: str,
    *,
    on_image: Callable[[], None] | None = None,
) -> EvalReport:
    """Score a detector on a dataset split with the serving code path (OnnxDetector.detect)."""
    dataset = YoloDataset.open(data)
    manifest = DatasetManifest.read(data) if (data / "manifest.json").exists() else None
    return evaluate_detector(
        detector,
        ground_truth(dataset, split),
        dataset_names=dataset.names,
        dataset=f"{manifest.name if manifest else data.name}:{split}",
        dataset_hash=manifest.content_hash if manifest else None,
        on_image=on_image,
    )


def run_training(
    config: TrainConfig,
    *,
    on_progress: Callable[[EpochReport], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> TrainResult:
    """Run (or resume) every stage that is not done yet; see the module docstring."""
    if not config.weights.is_file():
        raise RunError(f"{config.weights}: starting weights not found (give a local .pt file; nothing is downloaded)")
    manifest = DatasetManifest.read(config.data)
    record = _load_or_start_record(config)

    def stage(name: str) -> None:
        if on_stage is not None:
            on_stage(name)

    stage("train")
    # The dataset says how to augment it (its recipe's `augment:`); older datasets leave ultralytics' defaults.
    best, resumed = _train_stage(config, record, manifest.augment, on_progress)
    onnx_path = config.run_dir / "model.onnx"
    if not onnx_path.exists():
        stage("export")
        export_onnx(
            best,
            onnx_path,
            imgsz=config.imgsz,
            model_name=config.model_name,
            model_version=config.model_version,
            source=f"trained by citywatch train from {config.weights.name} on dataset {manifest.short()}",
            var_dir=config.var_dir,
        )
    stage("evaluate")
    detector = OnnxDetector.from_path(onnx_path)
    evaluation = evaluate_on_dataset(detector, config.data, config.eval_split)
    (config.run_dir / "eval.json").write_text(evaluation.model_dump_json(indent=2) + "\n", encoding="utf-8")
    stage("card")
    training = TrainingRecord(
        base_weights=str(config.weights),
        epochs=config.epochs,
        imgsz=config.imgsz,
        batch=config.batch,
        seed=config.seed,
        device=str(record["hardware"]),
        train_seconds=float(record["train_seconds"]),  # type: ignore[arg-type]
        augment=manifest.augment,
        command=(
            f"citywatch train {config.data} --weights {config.weights} --name {config.name} "
            f"--model-name {config.model_name} --model-version {config.model_version} --epochs {config.epochs} "
            f"--imgsz {config.imgsz} --batch {config.batch} --seed {config.seed} --device {config.device}"
        ),
    )
    card = ModelCard.build(
        onnx_path,
        info=detector.info,
        dataset=manifest,
        training=training,
        evaluation=evaluation,
        name=config.model_name,
    )
    card_path = card.write(config.run_dir)
    return TrainResult(
        run_dir=config.run_dir,
        onnx=onnx_path,
        card=card_path,
        evaluation=evaluation,
        train_seconds=training.train_seconds,
        resumed=resumed,
    )
