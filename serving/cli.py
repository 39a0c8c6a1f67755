"""The `citywatch` command."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from citywatch.pipelines.config import ConfigError
from citywatch.serving.check_command import check
from citywatch.serving.ml_commands import register as register_ml_commands
from citywatch.serving.replay_command import replay
from citywatch.serving.stopping import install_stop_handlers
from citywatch.serving.users_cli import users_app

app = typer.Typer(help="citywatch: city cameras → YOLO → rules → enforcement cases.", no_args_is_help=True)
console = Console()

# Accounts of the case API (issue 6): `citywatch users add|list|api-key`.
app.add_typer(users_app, name="users")

# Retraining (issue 8): `citywatch datasets build|stats`, `train`, `evaluate`, `models list|add|promote|rollback`.
register_ml_commands(app)

# Trying a config on recorded footage (issue 15): `citywatch replay CONFIG --camera CAM[/PRESET] SOURCE…`.
app.command()(replay)

# Is a config ready to run (issue 16): fields, models, rule classes, and with --cameras the streams.
app.command()(check)


def _logging(verbose: bool) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API poll is noise
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps its database, objects and logs")] = Path(
        "var/demo"
    ),
    port: Annotated[int, typer.Option(help="Port of the HTTP API")] = 8000,
    run_for: Annotated[float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C)")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start an empty city (deletes the workdir's city)")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the demo city: an S3 server, an RTSP camera streaming the shipped clip, detection, cases, API.

    The city in --workdir continues from the last run (cases, evidence, accounts); --fresh starts an empty one.
    Stops on Ctrl-C or SIGTERM.
    """
    install_stop_handlers()
    _logging(verbose)
    from citywatch.serving.demo import run_demo

    try:
        result = run_demo(workdir.resolve(), port=port, run_for=run_for, console=console, verbose=verbose, fresh=fresh)
    except KeyboardInterrupt:  # during start-up: everything started so far has been stopped
        console.print("demo interrupted")
        raise typer.Exit(130) from None
    # A run that was given time and filed nothing failed; a stop asked for by a signal is a clean stop.
    raise typer.Exit(1 if run_for is not None and not result.interrupted and result.cases == 0 else 0)


@app.command()
def serve(
    config: Annotated[Path, typer.Argument(help="The city's YAML config")],
    num_cpus: Annotated[int | None, typer.Option(help="CPUs Ray may use (default: all)")] = None,
    models: Annotated[Path, typer.Option(help="Model registry of `model: registry:<name>` detectors")] = Path(
        "var/models"
    ),
    watch_every: Annotated[float, typer.Option(help="Seconds between looks at the config file and registry")] = 2.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a city from its config until Ctrl-C; changes to the file (or a model promotion) apply while it runs.

    Cameras, presets, rules and detector models/thresholds change in place (only changed cameras restart);
    an invalid file, or a change of other sections, is refused and the running config stays. SIGHUP: look now.
    SIGTERM stops it as Ctrl-C does.
    """
    install_stop_handlers()
    _logging(verbose)
    from citywatch.serving.runner import ConfigWatcher, load_city, preflight, publish_config, running_city

    try:
        city = load_city(config, base_dir=Path.cwd(), models_root=models.resolve())
    except ConfigError as error:
        console.print(f"[red]config error:[/] {error}")
        raise typer.Exit(2) from None
    for problem in preflight(city):
        console.print(f"[red]problem:[/] {problem}")
    look = threading.Event()
    signal.signal(signal.SIGHUP, lambda *_: look.set())
    try:
        with running_city(city, num_cpus=num_cpus, verbose=verbose, stop_signals=True) as url:
            console.print(f"citywatch serving at [cyan]{url}[/] — Ctrl-C to stop; watching {config} for changes")
            watcher = ConfigWatcher(config, city, publish_config, base_dir=Path.cwd(), models_root=models.resolve())
            while True:
                look.wait(watch_every)
                forced = look.is_set()
                look.clear()
                try:
                    message = watcher.poll(force=forced)
                except Exception as error:  # the app may be redeploying: try again at the next look
                    message = f"[red]could not publish the config change:[/] {error!r}"
                if message:
                    console.print(message)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, while running or starting: the city has been stopped
        console.print("citywatch stopped")


if __name__ == "__main__":
    app()
