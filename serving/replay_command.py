"""`citywatch replay`: a thin typer shell over `pipelines.replay` and `pipelines.replay_report`."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from citywatch.pipelines.config import ConfigError
from citywatch.pipelines.replay import DEFAULT_START, Replay, ReplayError, ReplayOptions, default_out, replay_config
from citywatch.pipelines.replay import split_camera as _split
from citywatch.pipelines.replay_report import LabelsError, summary_line, write_report
from citywatch.vision.detector import ModelLoadError

console = Console(soft_wrap=True)  # paths and the summary stay on one line, whatever the terminal


class _Bar:
    """Rich progress over analysed frames, one task per source."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: int | None = None

    def source(self, name: str, total: int | None) -> None:
        if self.task is not None:
            self.progress.stop_task(TaskID(self.task))
        self.task = int(self.progress.add_task(name[-60:], total=total))

    def advance(self, frames: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(TaskID(self.task), frames)


def _start(text: str | None) -> datetime:
    if text is None:
        return DEFAULT_START
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def replay(
    config: Annotated[Path, typer.Argument(help="The city's YAML config (storage and camera addresses are not used)")],
    sources: Annotated[
        list[str], typer.Argument(help="Video files, picture folders, rtsp:// URLs", show_default=False)
    ],
    camera: Annotated[str, typer.Option(help="CAM or CAM/PRESET whose serving path runs")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default var/replay/<timestamp>)")] = None,
    start: Annotated[
        str | None, typer.Option(help=f"Time of the first frame, ISO 8601 (default {DEFAULT_START:%Y-%m-%dT%H:%M:%SZ})")
    ] = None,
    step: Annotated[float, typer.Option(help="Seconds between pictures without EXIF time")] = 2.0,
    seconds: Annotated[float, typer.Option(help="Seconds of an RTSP source to read")] = 10.0,
    every_frame: Annotated[bool, typer.Option(help="Analyse every decoded frame, not a patrol's samples")] = False,
    labels: Annotated[Path | None, typer.Option(help="CSV: case (id or evidence file), correct (true/false)")] = None,
    emit_labels_template: Annotated[Path | None, typer.Option(help="Also copy the labels template here")] = None,
) -> None:
    """Run one preset's serving path (detector, zones, rules, warnings, filing) on recorded footage; write a report."""
    logging.getLogger("citywatch").setLevel(logging.WARNING)
    try:
        city = replay_config(config).anchored(Path.cwd())
        camera_id, preset_id = _split(city, camera)
        folder = out or default_out()
        runner = Replay(city, camera_id, preset_id, folder, config_name=str(config))
        options = ReplayOptions(_start(start), timedelta(seconds=step), seconds, every_frame)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("frames"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            result = asyncio.run(runner.run(sources, options, _Bar(progress)))
        html, facts = write_report(result, runner.scene.zones, labels)
    except (ConfigError, ReplayError, ModelLoadError, LabelsError, ValueError) as error:
        console.print(f"[red]replay:[/] {error}")
        raise typer.Exit(2) from None
    for problem in result.errors:
        console.print(f"[red]unreadable source:[/] {problem}")
    if emit_labels_template is not None:
        emit_labels_template.write_bytes((folder / "labels-template.csv").read_bytes())
    for kind, row in (facts["precision"] or {}).items():
        value = "—" if row["precision"] is None else f"{row['precision']:.2f}"
        console.print(f"precision {kind}: {value} ({row['true']} of {row['labelled']} labelled)")
    console.print(summary_line(facts, html))
    raise typer.Exit(1 if result.errors else 0)
