"""Score a detector on labelled images with the code path serving uses, and compare models side by side.

`evaluate_detector` runs `OnnxDetector.detect` (letterbox, onnxruntime, NMS: exactly what a camera frame goes
through) at a low confidence (0.001, as for any mAP) and scores the result with `citywatch.models.metrics`.
Model classes are matched to the dataset's by *name*: a dataset class the model does not have is reported
as such (no numbers), and model classes the dataset does not label (COCO's cars on a garbage set) are
ignored rather than counted as false positives.

The dataset side is plain arrays (`GroundTruthImage`), so this module does not depend on how a dataset is
stored; `citywatch.datasets.yolo.ground_truth` reads a YOLO split into them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field
from rich.table import Table

from citywatch.models.metrics import ImageDetections, detection_metrics
from citywatch.vision.detector import CLASS_NAME, OnnxDetector

__all__ = [
    "EVAL_CONF",
    "ClassScore",
    "EvalReport",
    "GroundTruthImage",
    "comparison_chart",
    "comparison_table",
    "evaluate_detector",
]

EVAL_CONF = 0.001
"""Confidence floor for mAP: low, so the precision-recall curve reaches as far as the model can."""


@dataclass(frozen=True)
class GroundTruthImage:
    id: str
    image: np.ndarray
    """BGR uint8 H×W×3."""
    boxes: np.ndarray
    """N×4 xyxy in pixels."""
    class_ids: np.ndarray
    """N dataset class ids."""


class ClassScore(BaseModel):
    name: str
    in_model: bool = Field(description="Whether the model has a class of this name")
    images: int
    instances: int
    precision: float | None = None
    recall: float | None = None
    map50: float | None = None
    map50_95: float | None = None


class EvalReport(BaseModel):
    model: str = Field(description="Model file")
    model_version: str
    model_sha256: str
    dataset: str = Field(description="Dataset name and split")
    dataset_hash: str | None = None
    images: int
    conf: float = Field(description="Detection confidence floor")
    iou: float = Field(description="NMS IoU")
    pr_conf: float = Field(description="Confidence at which precision and recall are read (best mean F1)")
    classes: list[ClassScore]
    all: ClassScore = Field(description="Mean over the classes the model has and the dataset labels")
    ms_per_image: float = Field(description="Wall time of detect() per image, batch 1, on this machine")


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def evaluate_detector(
    detector: OnnxDetector,
    images: Iterable[GroundTruthImage],
    *,
    dataset_names: Sequence[str],
    dataset: str,
    dataset_hash: str | None = None,
    conf: float = EVAL_CONF,
    on_image: Callable[[], None] | None = None,
) -> EvalReport:
    """Per-class P, R, mAP50, mAP50-95 of `detector` on `images` (see the module docstring)."""
    names = list(dataset_names)
    to_dataset = {name: names.index(name) for name in detector.info.class_names if name in names}
    results: list[ImageDetections] = []
    seconds = 0.0
    for item in images:
        started = time.perf_counter()
        detections = detector.detect([item.image], conf=conf)[0]
        seconds += time.perf_counter() - started
        model_names = detections.data.get(CLASS_NAME, np.array([], dtype=str))
        keep = np.array([name in to_dataset for name in model_names], dtype=bool)
        classes = np.array([to_dataset[name] for name in model_names[keep]], dtype=int)
        confidence = detections.confidence if detections.confidence is not None else np.zeros(len(detections))
        results.append(
            ImageDetections(
                gt_boxes=item.boxes.reshape(-1, 4),
                gt_classes=item.class_ids.astype(int),
                boxes=detections.xyxy[keep],
                scores=confidence[keep],
                classes=classes,
            )
        )
        if on_image is not None:
            on_image()
    per_class, pr_conf = detection_metrics(results, len(names))
    scores = []
    for name, metrics in zip(names, per_class, strict=True):
        in_model = name in to_dataset
        scores.append(
            ClassScore(
                name=name,
                in_model=in_model,
                images=metrics.images,
                instances=metrics.instances,
                precision=metrics.precision if in_model else None,
                recall=metrics.recall if in_model else None,
                map50=metrics.ap50 if in_model else None,
                map50_95=metrics.ap50_95 if in_model else None,
            )
        )
    counted = [s for s in scores if s.in_model and s.instances > 0]
    overall = ClassScore(
        name="all",
        in_model=bool(counted),
        images=len(results),
        instances=sum(s.instances for s in scores),
        precision=_mean(s.precision for s in counted),
        recall=_mean(s.recall for s in counted),
        map50=_mean(s.map50 for s in counted),
        map50_95=_mean(s.map50_95 for s in counted),
    )
    return EvalReport(
        model=str(detector.info.path),
        model_version=detector.info.version,
        model_sha256=detector.info.sha256,
        dataset=dataset,
        dataset_hash=dataset_hash,
        images=len(results),
        conf=conf,
        iou=detector.iou,
        pr_conf=pr_conf,
        classes=scores,
        all=overall,
        ms_per_image=1000 * seconds / max(1, len(results)),
    )


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _label(report: EvalReport) -> str:
    return f"{Path(report.model).name} ({report.model_version})"


def comparison_table(reports: Sequence[EvalReport], title: str | None = None) -> Table:
    """One row per class, P/R/mAP50/mAP50-95 columns per model; '—' where a model lacks the class."""
    if not reports:
        raise ValueError("comparison_table: give at least one report")
    models = "; ".join(
        (f"{chr(ord('A') + i)} = " if len(reports) > 1 else "") + _label(r) for i, r in enumerate(reports)
    )
    table = Table(title=title or f"{reports[0].dataset}: {reports[0].images} images", caption=models)
    table.add_column("class")
    table.add_column("images", justify="right")
    table.add_column("boxes", justify="right")
    for index in range(len(reports)):
        short = chr(ord("A") + index) if len(reports) > 1 else ""
        for metric in ("P", "R", "mAP50", "mAP50-95"):
            table.add_column(f"{short} {metric}".strip(), justify="right")
    rows = [*[s.name for s in reports[0].classes], "all"]
    for name in rows:
        first = reports[0].all if name == "all" else next(s for s in reports[0].classes if s.name == name)
        cells = [name, str(first.images), str(first.instances)]
        for report in reports:
            score = report.all if name == "all" else next(s for s in report.classes if s.name == name)
            cells += [_fmt(score.precision), _fmt(score.recall), _fmt(score.map50), _fmt(score.map50_95)]
        table.add_row(*cells, end_section=name == rows[-2])
    return table


def comparison_chart(reports: Sequence[EvalReport], out: Path) -> Path:
    """Grouped bars of mAP50 and mAP50-95 per class, one colour per model, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [*[s.name for s in reports[0].classes], "all"]
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(names) * 2), 4.5), sharey=True)
    width = 0.8 / len(reports)
    x = np.arange(len(names))
    for ax, metric, label in zip(axes, ("map50", "map50_95"), ("mAP50", "mAP50-95"), strict=True):
        for i, report in enumerate(reports):
            lookup = {s.name: s for s in [*report.classes, report.all]}
            values = [getattr(lookup[n], metric) for n in names]
            bars = ax.bar(x + i * width, [v or 0.0 for v in values], width, label=_label(report))
            for bar, value in zip(bars, values, strict=True):
                text = "n/a" if value is None else f"{value:.2f}"
                anchor = (bar.get_x() + bar.get_width() / 2, bar.get_height())
                ax.annotate(text, anchor, ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x + width * (len(reports) - 1) / 2, names, rotation=20)
        ax.set_title(label)
        ax.set_ylim(0, 1.05)
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"{reports[0].dataset} ({reports[0].images} images)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
