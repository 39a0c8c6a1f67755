"""`citywatch check`: is a city's config ready to run? Fields, models, rule classes, and (with `--cameras`)
the streams, each problem named with its place, before anything starts.

A rule's classes are matched by name against the class names in the ONNX metadata of every detector that
runs the rule (a preset's own detector, else its camera's); a name no such model has (`truk`) is a rule that
can never fire, reported with the close names the model does have.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from citywatch.models.builtin import resolve_model
from citywatch.pipelines.camera import CameraUnavailable, probe, redact
from citywatch.pipelines.config import CityConfig, ConfigError, load_config
from citywatch.vision.detector import ModelLoadError, OnnxDetector

console = Console()


def detector_classes(config: CityConfig, models_root: Path) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """Each loadable detector's class names, and why the others' classes could not be read.

    A model that does not load is preflight's to report (with the cameras it leaves blind); here it only goes
    unchecked. A `registry:` model that does not resolve (nothing promoted yet) is named as such."""
    from citywatch.serving.runner import REGISTRY_PREFIX, resolve_registry_models

    names: dict[str, tuple[str, ...]] = {}
    notes: list[str] = []
    for name, detector in config.detectors.items():
        spec = detector.model
        if spec.startswith(REGISTRY_PREFIX):
            try:
                only = config.model_copy(update={"detectors": {name: detector}})
                spec = resolve_registry_models(only, models_root).detectors[name].model
            except ConfigError as error:
                notes.append(f"{error}; the classes of its rules are not checked")
                continue
        try:
            names[name] = OnnxDetector.from_path(resolve_model(spec, base_dir=Path.cwd()), threads=1).info.class_names
        except (ModelLoadError, ValueError):
            continue
    return names, notes


def class_problems(config: CityConfig, classes: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Rule classes that a detector running the rule does not have, with the close names it does have."""
    where: dict[tuple[str, str, str], list[str]] = defaultdict(list)  # (rule, class, detector) → presets
    for camera_id, camera in config.cameras.items():
        for preset_id, preset in camera.presets.items():
            detector = config.preset_detector(camera_id, preset_id)
            if detector not in classes:
                continue
            rules = {rule for zone in preset.zones.values() for rule in zone.rules}
            for rule in sorted(rules):
                for name in sorted(config.rules[rule].classes - set(classes[detector])):
                    where[(rule, name, detector)].append(f"{camera_id}/{preset_id}")
    problems = []
    for (rule, name, detector), presets in where.items():
        close = difflib.get_close_matches(name, classes[detector], n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        problems.append(
            f"rules → {rule} → classes: {name!r} is not a class of detector {detector!r} "
            f"(used by {', '.join(presets)}){hint}"
        )
    return problems


def camera_table(config: CityConfig, *, timeout: float) -> tuple[Table, list[str]]:
    """Open every camera's stream once: its resolution, or the exact error."""
    table = Table("camera", "stream", "result")
    problems = []
    for camera_id, camera in config.cameras.items():
        try:
            width, height = probe(camera_id, camera.rtsp, timeout=timeout)
        except CameraUnavailable as error:
            table.add_row(camera_id, redact(camera.rtsp), f"[red]{error}[/]")
            problems.append(str(error))
            continue
        table.add_row(camera_id, redact(camera.rtsp), f"{width}×{height}")
    return table, problems


def check(
    config: Annotated[Path, typer.Argument(help="The city's YAML config")],
    cameras: Annotated[bool, typer.Option("--cameras", help="Open each camera's stream once; show its size")] = False,
    models: Annotated[Path, typer.Option(help="Model registry of `model: registry:<name>` detectors")] = Path(
        "var/models"
    ),
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each camera (with --cameras)")] = 5.0,
) -> None:
    """Validate a config file, load its models and check its rules' classes against them; print what would run."""
    from citywatch.serving.runner import REGISTRY_PREFIX, preflight

    try:
        city = load_config(config)
    except ConfigError as error:
        console.print(f"[red]config error:[/] {error}")
        raise typer.Exit(2) from None
    table = Table("camera", "detector", "presets", "zones")
    for camera_id, camera in city.cameras.items():
        zones = sum(len(p.zones) for p in camera.presets.values())
        table.add_row(camera_id, camera.detector, ", ".join(camera.presets), str(zones))
    console.print(table)
    classes, problems = detector_classes(city, models.resolve())
    # Registry models are checked above (they resolve only against the registry); preflight loads the rest.
    files = {n: d for n, d in city.detectors.items() if not d.model.startswith(REGISTRY_PREFIX)}
    problems += preflight(city.model_copy(update={"detectors": files}).anchored(Path.cwd()))
    problems += class_problems(city, classes)
    if cameras:
        streams, unreachable = camera_table(city, timeout=timeout)
        console.print(streams)
        problems += unreachable
    for problem in problems:
        console.print(f"[red]problem:[/] {problem}")
    raise typer.Exit(1 if problems else 0)
