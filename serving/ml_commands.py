"""The retraining commands of `citywatch`: datasets, train, evaluate, models (registered by serving/cli.py).

Kept apart from the serving commands so that the two grow without touching each other. Heavy work
(ultralytics) happens in `citywatch.models.training` and `citywatch.models.export`, imported lazily.
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from citywatch.datasets.builder import DatasetExistsError, build_dataset
from citywatch.datasets.recipe import RecipeError, load_recipe
from citywatch.datasets.stats import dataset_stats, stats_png, stats_table
from citywatch.datasets.yolo import DatasetError, YoloDataset
from citywatch.models.builtin import resolve_model
from citywatch.models.evaluate import EvalReport, comparison_chart, comparison_table
from citywatch.models.registry import ModelRegistry, RegistryError
from citywatch.models.training import EpochReport, TrainingUnavailable
from citywatch.pipelines.train import RunError, TrainConfig, evaluate_on_dataset, run_training
from citywatch.vision.detector import ModelLoadError, OnnxDetector

console = Console()
datasets_app = typer.Typer(help="Build YOLO datasets from recipes; show their statistics.", no_args_is_help=True)
models_app = typer.Typer(help="The model registry: add, list, promote, roll back.", no_args_is_help=True)

RegistryRoot = Annotated[Path, typer.Option("--root", help="Registry directory")]
DEFAULT_REGISTRY = Path("var/models")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@datasets_app.command("build")
def datasets_build(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (e.g. datasets/recipes/garbage-v1.yaml)")],
    out: Annotated[Path, typer.Option(help="Output folder")],
    overwrite: Annotated[bool, typer.Option(help="Replace the images and labels already in --out")] = False,
) -> None:
    """Import the recipe's sources onto its classes, check labels, split by group, dedupe; report drops."""
    try:
        loaded = load_recipe(recipe)
        with _progress() as progress:
            task = progress.add_task("reading images", total=None)
            result = build_dataset(loaded, out, overwrite=overwrite, on_image=lambda _: progress.advance(task))
    except (RecipeError, DatasetExistsError) as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None
    manifest = result.manifest
    console.print(f"built [bold]{manifest.short()}[/] in {out}")
    drops = Table("source", "reason", "dropped", title="dropped (details: drops.jsonl)")
    for source in manifest.sources:
        for reason, count in source.drops.items():
            drops.add_row(source.name, reason, str(count))
    console.print(drops if drops.row_count else "nothing dropped")
    _print_stats(out, manifest.name)


def _print_stats(root: Path, title: str, png: Path | None = None) -> None:
    stats = dataset_stats(YoloDataset.open(root))
    console.print(stats_table(stats, title))
    path = stats_png(stats, png or root / "stats.png", title)
    console.print(f"plot: {path}")


@datasets_app.command("stats")
def datasets_stats(
    root: Annotated[Path, typer.Argument(help="Dataset folder with data.yaml")],
    png: Annotated[Path | None, typer.Option(help="Where to write the plot (default: <root>/stats.png)")] = None,
) -> None:
    """Images, boxes per class and box sizes of each split, as a table and a PNG."""
    try:
        _print_stats(root, root.name, png)
    except DatasetError as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None


def train(
    data: Annotated[Path, typer.Argument(help="Dataset folder (citywatch datasets build)")],
    weights: Annotated[Path, typer.Option(help="Starting checkpoint, a local .pt file")],
    name: Annotated[str, typer.Option(help="Run name: var/runs/<name>; the same name resumes the run")],
    model_name: Annotated[str | None, typer.Option(help="Model name in metadata and card (default: run name)")] = None,
    model_version: Annotated[str, typer.Option(help="Model version in metadata and card")] = "0.1.0",
    epochs: Annotated[int, typer.Option(help="Training epochs")] = 25,
    imgsz: Annotated[int, typer.Option(help="Training and export size")] = 320,
    batch: Annotated[int, typer.Option(help="Images per batch")] = 16,
    seed: Annotated[int, typer.Option(help="Seed")] = 0,
    device: Annotated[str, typer.Option(help="auto (GPU if any), cpu, or a CUDA index")] = "auto",
    workers: Annotated[int, typer.Option(help="Data-loader workers")] = 2,
    runs_dir: Annotated[Path, typer.Option(help="Where runs live")] = Path("var/runs"),
) -> None:
    """Train a YOLO model on a dataset, export it to ONNX, evaluate it with the serving detector, write its card."""
    config = TrainConfig(
        data=data,
        weights=weights,
        name=name,
        model_name=model_name or name,
        model_version=model_version,
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        seed=seed,
        device=device,
        workers=workers,
        runs_dir=runs_dir,
    )
    with _progress() as progress:
        epochs_task = progress.add_task("epochs", total=epochs)
        batch_task = progress.add_task("batches", total=None)

        def on_progress(report: EpochReport) -> None:
            progress.update(epochs_task, total=report.epochs, completed=report.epoch - (0 if report.epoch_done else 1))
            progress.update(
                batch_task, total=report.batches, completed=report.batch, description=f"epoch {report.epoch}"
            )
            if report.epoch_done:
                shown = {k.split("/")[-1].removesuffix("(B)"): v for k, v in report.metrics.items()}
                progress.console.print(
                    f"epoch {report.epoch}/{report.epochs}: "
                    + ", ".join(
                        f"{k} {v:.3f}" for k, v in shown.items() if k in ("box_loss", "cls_loss", "mAP50", "mAP50-95")
                    )
                )

        try:
            result = run_training(
                config, on_progress=on_progress, on_stage=lambda s: progress.console.print(f"[bold]{s}[/]")
            )
        except (RunError, TrainingUnavailable, FileNotFoundError) as error:
            console.print(f"[red]error:[/] {error}")
            raise typer.Exit(2) from None
    console.print(comparison_table([result.evaluation]))
    console.print(f"model: {result.onnx}\ncard: {result.card}\ntraining time: {result.train_seconds / 60:.1f} min")


def _open_model(spec: str, tmp: Path, imgsz: int) -> OnnxDetector:
    """An ONNX path or builtin:<name>; a .pt is exported to ONNX first (needs the train extra)."""
    path = resolve_model(spec, base_dir=Path.cwd())
    if path.suffix == ".pt":
        from citywatch.models.export import export_onnx

        onnx_path = tmp / (path.stem + ".onnx")
        export_onnx(path, onnx_path, imgsz=imgsz, model_name=path.stem, model_version="unregistered", source=str(path))
        path = onnx_path
    return OnnxDetector.from_path(path)


def evaluate(
    models: Annotated[list[str], typer.Argument(help="Models: ONNX paths, builtin:<name>, or .pt (exported first)")],
    data: Annotated[Path, typer.Option(help="Dataset folder with data.yaml")],
    split: Annotated[str, typer.Option(help="Split to score on")] = "val",
    png: Annotated[Path | None, typer.Option(help="Write a side-by-side mAP chart here")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the reports here (JSON list)")] = None,
    imgsz: Annotated[int, typer.Option(help="Export size for .pt models")] = 320,
) -> None:
    """Score models on the same images with the serving detector; P, R, mAP50, mAP50-95 per class, side by side."""
    reports: list[EvalReport] = []
    with tempfile.TemporaryDirectory(prefix="citywatch-eval-") as tmp:
        for spec in models:
            try:
                detector = _open_model(spec, Path(tmp), imgsz)
                images = len(YoloDataset.open(data).images(split))
            except (ModelLoadError, ValueError, DatasetError) as error:
                console.print(f"[red]error:[/] {error}")
                raise typer.Exit(2) from None
            with _progress() as progress:
                task = progress.add_task(f"{Path(detector.info.path).name}", total=images)
                advance = partial(progress.advance, task)
                reports.append(evaluate_on_dataset(detector, data, split, on_image=advance))
    console.print(comparison_table(reports))
    if png is not None:
        console.print(f"chart: {comparison_chart(reports, png)}")
    if json_out is not None:
        json_out.write_text("[" + ",\n".join(r.model_dump_json(indent=2) for r in reports) + "]\n", encoding="utf-8")


def _entries_table(registry: ModelRegistry, name: str | None) -> Table:
    table = Table("model", "version", "active", "classes", "sha256", "added", title=str(registry.root))
    for entry in registry.list(name):
        classes = ", ".join(entry.classes[:6]) + (f" … ({len(entry.classes)})" if len(entry.classes) > 6 else "")
        table.add_row(
            entry.name, entry.version, "●" if entry.active else "", classes, entry.sha256[:12], entry.added_at[:19]
        )
    return table


@models_app.command("list")
def models_list(
    name: Annotated[str | None, typer.Argument(help="Only this model")] = None,
    root: RegistryRoot = DEFAULT_REGISTRY,
) -> None:
    """Registered versions; ● marks the promoted one."""
    console.print(_entries_table(ModelRegistry(root), name))


@models_app.command("add")
def models_add(
    model: Annotated[Path, typer.Argument(help="ONNX file (its card.json / MODEL_CARD.md beside it are kept)")],
    name: Annotated[str | None, typer.Option(help="Default: citywatch_model in the metadata")] = None,
    version: Annotated[str | None, typer.Option(help="Default: citywatch_version in the metadata")] = None,
    root: RegistryRoot = DEFAULT_REGISTRY,
) -> None:
    """Load, smoke-test and store a model as a new version (not promoted yet)."""
    try:
        entry = ModelRegistry(root).add(model, name=name, version=version)
    except RegistryError as error:
        console.print(f"[red]refused:[/] {error}")
        raise typer.Exit(1) from None
    console.print(f"added {entry.name} {entry.version} ({entry.path})")


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument()],
    version: Annotated[str, typer.Argument()],
    root: RegistryRoot = DEFAULT_REGISTRY,
) -> None:
    """Make a version the active one (smoke-tested again first)."""
    try:
        entry = ModelRegistry(root).promote(name, version)
    except RegistryError as error:
        console.print(f"[red]refused:[/] {error}")
        raise typer.Exit(1) from None
    console.print(f"{entry.name}: {entry.version} is active")


@models_app.command("rollback")
def models_rollback(name: Annotated[str, typer.Argument()], root: RegistryRoot = DEFAULT_REGISTRY) -> None:
    """Go back to the version promoted before the current one."""
    try:
        entry = ModelRegistry(root).rollback(name)
    except RegistryError as error:
        console.print(f"[red]refused:[/] {error}")
        raise typer.Exit(1) from None
    console.print(f"{entry.name}: back to {entry.version}")


def register(app: typer.Typer) -> None:
    """Add these commands to the main `citywatch` app."""
    app.add_typer(datasets_app, name="datasets")
    app.add_typer(models_app, name="models")
    app.command()(train)
    app.command()(evaluate)
