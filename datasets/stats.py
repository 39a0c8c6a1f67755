"""Dataset statistics: images, boxes per class, box sizes; as a rich table and a matplotlib PNG."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rich.table import Table

from citywatch.datasets.yolo import YoloDataset

__all__ = ["DatasetStats", "SplitStats", "dataset_stats", "stats_png", "stats_table"]


@dataclass
class SplitStats:
    images: int = 0
    background_images: int = 0
    boxes: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, list[float]] = field(default_factory=dict)
    """Per class: sqrt(box area) in pixels of the original image."""
    rel_sizes: dict[str, list[float]] = field(default_factory=dict)
    """Per class: sqrt(box area / image area)."""


@dataclass
class DatasetStats:
    names: tuple[str, ...]
    splits: dict[str, SplitStats]


def dataset_stats(dataset: YoloDataset) -> DatasetStats:
    stats: dict[str, SplitStats] = {}
    for split in dataset.splits:
        s = SplitStats(
            boxes=dict.fromkeys(dataset.names, 0),
            sizes={n: [] for n in dataset.names},
            rel_sizes={n: [] for n in dataset.names},
        )
        for path in dataset.images(split):
            image = cv2.imread(str(path), cv2.IMREAD_REDUCED_GRAYSCALE_2)  # only the size is needed
            height, width = (2 * image.shape[0], 2 * image.shape[1]) if image is not None else (0, 0)
            labels = dataset.labels(path)
            s.images += 1
            s.background_images += int(len(labels) == 0)
            for class_id, _, _, w, h in labels:
                name = dataset.names[int(class_id)]
                s.boxes[name] += 1
                s.rel_sizes[name].append(float(np.sqrt(w * h)))
                s.sizes[name].append(float(np.sqrt(w * width * h * height)))
        stats[split] = s
    return DatasetStats(dataset.names, stats)


def stats_table(stats: DatasetStats, title: str = "dataset") -> Table:
    table = Table(title=title)
    for column in ("split", "class", "images", "boxes", "box size px (p10 / median / p90)", "of image side (median)"):
        table.add_column(column, justify="left" if column in ("split", "class") else "right")
    for split, s in stats.splits.items():
        table.add_row(split, "(all)", f"{s.images} ({s.background_images} empty)", str(sum(s.boxes.values())), "", "")
        for name in stats.names:
            sizes = np.array(s.sizes[name])
            spread = "—" if not len(sizes) else " / ".join(f"{v:.0f}" for v in np.percentile(sizes, [10, 50, 90]))
            rel = "—" if not s.rel_sizes[name] else f"{np.median(s.rel_sizes[name]):.2f}"
            table.add_row("", name, "", str(s.boxes[name]), spread, rel, end_section=name == stats.names[-1])
    return table


def stats_png(stats: DatasetStats, out: Path, title: str = "dataset") -> Path:
    """Boxes per class per split (bars) and box-size distributions per class (histograms)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (bars, hist) = plt.subplots(1, 2, figsize=(11, 4.2))
    x = np.arange(len(stats.names))
    width = 0.8 / max(1, len(stats.splits))
    for i, (split, s) in enumerate(stats.splits.items()):
        bars.bar(x + i * width, [s.boxes[n] for n in stats.names], width, label=f"{split} ({s.images} images)")
    bars.set_xticks(x + width * (len(stats.splits) - 1) / 2, stats.names)
    bars.set_title("boxes per class")
    bars.legend(fontsize=8)
    for name in stats.names:
        values = [v for s in stats.splits.values() for v in s.rel_sizes[name]]
        if values:
            hist.hist(
                values, bins=np.linspace(0, 1, 26), histtype="step", linewidth=1.5, label=f"{name} ({len(values)})"
            )
    hist.set_xlabel("sqrt(box area / image area)")
    hist.set_title("box sizes (all splits)")
    hist.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
