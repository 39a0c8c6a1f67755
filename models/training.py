"""The one place that drives ultralytics' trainer (`citywatch.pipelines.train` orchestrates the run).

ultralytics and torch are imported inside the functions: importing this module costs nothing, and the
serving install (which has neither) can still import `citywatch.models`.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from citywatch.models.augment import TrainAugment

__all__ = [
    "EpochReport",
    "TrainingUnavailable",
    "checkpoint_finished",
    "configure_ultralytics",
    "resolve_device",
    "train_ultralytics",
]


class TrainingUnavailable(RuntimeError):
    """ultralytics (the `train` extra) is not installed."""


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    """1-based."""
    epochs: int
    batch: int
    """Batches done in this epoch (== batches at the epoch's end)."""
    batches: int
    metrics: dict[str, float]
    """Losses after each batch; after an epoch also val precision, recall, mAP50, mAP50-95."""
    epoch_done: bool


def configure_ultralytics(var_dir: Path) -> None:
    """Environment and settings before ultralytics is imported: offline, no auto-install, quiet progress
    bars, config/datasets/runs/weights dirs under `var_dir` (never ./runs or ~/.config)."""
    var_dir = var_dir.resolve()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_VERBOSE", "False")  # our rich progress bar replaces ultralytics' own
    os.environ.setdefault("YOLO_CONFIG_DIR", str(var_dir / "ultralytics-config"))
    try:
        from ultralytics import settings
    except ImportError as error:
        raise TrainingUnavailable(
            f"ultralytics is not installed ({error}); install the train extra: pip install -e '.[train]'"
        ) from None
    settings.update(
        {
            "datasets_dir": str(var_dir / "datasets"),
            "runs_dir": str(var_dir / "runs"),
            "weights_dir": str(var_dir / "weights"),
            "sync": False,
        }
    )


def resolve_device(device: str) -> str:
    """ "auto" → the first CUDA GPU when torch sees one, else "cpu"; anything else is passed through."""
    if device != "auto":
        return device
    import torch

    return "0" if torch.cuda.is_available() else "cpu"


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _batch_metrics(trainer: Any) -> dict[str, float]:
    """Running mean losses of the epoch (ultralytics 8.4 keeps them as a dict of name → tensor)."""
    loss = getattr(trainer, "tloss", None)
    if isinstance(loss, dict):
        return {f"train/{name}": float(value) for name, value in loss.items()}
    return {}


def train_ultralytics(
    *,
    var_dir: Path,
    weights: Path,
    data_yaml: Path,
    run_dir: Path,
    resume: bool,
    epochs: int,
    imgsz: int,
    batch: int,
    seed: int,
    device: str,
    workers: int,
    patience: int,
    augment: TrainAugment | None = None,
    on_progress: Callable[[EpochReport], None] | None = None,
) -> Path:
    """Train (or resume) a YOLO detect model; returns the path of the best checkpoint.

    `resume` continues from ``run_dir/weights/last.pt`` with the arguments saved in it. `augment` None keeps
    ultralytics' own augmentation defaults.
    """
    configure_ultralytics(var_dir)
    from ultralytics import YOLO

    seed_everything(seed)
    model = YOLO(str(run_dir / "weights" / "last.pt") if resume else str(weights))

    def batch_end(trainer: Any) -> None:
        if on_progress is not None:
            done = int(getattr(trainer, "_cw_batches", 0)) + 1
            trainer._cw_batches = done
            total = len(trainer.train_loader)
            metrics = _batch_metrics(trainer)
            on_progress(EpochReport(trainer.epoch + 1, trainer.epochs, done, total, metrics, False))

    def epoch_end(trainer: Any) -> None:
        trainer._cw_batches = 0
        if trainer.epoch + 1 > trainer.epochs:
            return  # ultralytics calls this once more after the last epoch, for the final validation of best.pt
        if on_progress is not None:
            metrics = {**_batch_metrics(trainer), **{k: float(v) for k, v in (trainer.metrics or {}).items()}}
            total = len(trainer.train_loader)
            on_progress(EpochReport(trainer.epoch + 1, trainer.epochs, total, total, metrics, True))

    model.add_callback("on_train_batch_end", batch_end)
    model.add_callback("on_fit_epoch_end", epoch_end)
    if resume:
        model.train(resume=True)
    else:
        model.train(
            data=str(data_yaml),
            epochs=epochs,
            imgsz=imgsz,
            batch=batch,
            seed=seed,
            deterministic=True,
            device=resolve_device(device),
            workers=workers,
            patience=patience,
            project=str(run_dir.parent),
            name=run_dir.name,
            exist_ok=True,
            plots=True,
            verbose=False,
            **(augment.ultralytics_args() if augment is not None else {}),
        )
    best = run_dir / "weights" / "best.pt"
    if not best.exists():
        raise RuntimeError(f"{run_dir}: training ended without weights/best.pt; see {run_dir}/results.csv")
    return best


def checkpoint_finished(path: Path) -> bool:
    """Whether an ultralytics checkpoint is from a finished run (the trainer strips it: epoch -1, no optimizer)."""
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    return int(checkpoint.get("epoch", -1)) == -1 or checkpoint.get("optimizer") is None
