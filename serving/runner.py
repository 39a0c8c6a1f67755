"""Start and stop a city on Ray Serve: preflight checks, `ray.init`, `serve.run`, clean shutdown; and change a
running city: `ConfigWatcher` follows the config file and the model registry and publishes each valid change
to the app's ConfigBoard (`publish_config`), from which the replicas apply it in place.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from citywatch.models.builtin import resolve_model
from citywatch.models.registry import INDEX, ModelRegistry, RegistryError
from citywatch.pipelines.config import CityConfig, ConfigError, load_config
from citywatch.serving.stopping import install_stop_handlers
from citywatch.vision.detector import ModelLoadError, OnnxDetector

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"

REGISTRY_PREFIX = "registry:"
"""`model: registry:<name>` serves the promoted version of <name> from the model registry."""
HOT_SECTIONS = frozenset({"cameras", "rules", "detectors"})
"""Config sections a running city takes without a restart (detectors: their models and thresholds, not names)."""


def resolve_registry_models(config: CityConfig, models_root: Path) -> CityConfig:
    """A copy whose `registry:<name>` detector models point at the promoted version's file (ConfigError if none)."""
    registry = ModelRegistry(models_root)
    detectors = {}
    problems: list[str] = []
    for name, detector in config.detectors.items():
        if detector.model.startswith(REGISTRY_PREFIX):
            model = detector.model.removeprefix(REGISTRY_PREFIX)
            try:
                entry = registry.active(model)
            except RegistryError as error:
                entry, problems = None, [*problems, f"detectors → {name} → model: {error}"]
            if entry is None:
                problems.append(f"detectors → {name} → model: no promoted version of {model!r} in {models_root}")
                continue
            detector = detector.model_copy(update={"model": str(entry.path.resolve())})
        detectors[name] = detector
    if problems:
        raise ConfigError("; ".join(dict.fromkeys(problems)))
    return config.model_copy(update={"detectors": detectors})


def load_city(path: Path, *, base_dir: Path, models_root: Path) -> CityConfig:
    """Read, validate and anchor a city config, with registry models resolved (ConfigError if anything fails)."""
    return resolve_registry_models(load_config(path), models_root).anchored(base_dir)


def needs_restart(running: CityConfig, new: CityConfig) -> list[str]:
    """What in `new` a running city cannot take in place (empty: it can)."""
    problems = [
        f"{section}: changes take effect at the next start"
        for section in type(running).model_fields
        if section not in HOT_SECTIONS and getattr(running, section) != getattr(new, section)
    ]
    if set(running.detectors) != set(new.detectors):
        added, removed = (
            sorted(set(new.detectors) - set(running.detectors)),
            sorted(set(running.detectors) - set(new.detectors)),
        )
        problems.append(f"detectors: adding {added} or removing {removed} a detector needs a restart")
    return problems


class ConfigWatcher:
    """Follows a running city's config file and model registry; publishes each valid change.

    `poll()` looks at the file's and the registry index's modification times; when either moved it loads the
    config again. An invalid file, or a change the running city cannot take (`needs_restart`), is refused
    with the reason and the running config stays. Call it every few seconds (`citywatch serve` does).
    """

    def __init__(
        self,
        path: Path,
        running: CityConfig,
        publish: Callable[[CityConfig], int],
        *,
        base_dir: Path,
        models_root: Path,
    ) -> None:
        self.path = path
        self.running = running
        self.publish = publish
        self.base_dir = base_dir
        self.models_root = models_root
        self._stamp: tuple[int | None, ...] = self._stamp_now()

    def _stamp_now(self) -> tuple[int | None, ...]:
        stamps: list[int | None] = []
        for file in (self.path, self.models_root / INDEX):
            try:
                stat = file.stat()
                stamps += [stat.st_mtime_ns, stat.st_size]
            except OSError:
                stamps += [None, None]
        return tuple(stamps)

    def poll(self, *, force: bool = False) -> str | None:
        """A line saying what happened, or None when nothing changed."""
        stamp = self._stamp_now()
        if stamp == self._stamp and not force:
            return None
        self._stamp = stamp
        try:
            new = load_city(self.path, base_dir=self.base_dir, models_root=self.models_root)
        except ConfigError as error:
            return f"config change refused, the running config stays: {error}"
        if new == self.running:
            return None
        problems = needs_restart(self.running, new)
        if problems:
            return "config change refused, the running config stays: " + "; ".join(problems)
        try:
            revision = self.publish(new)
        except Exception:
            self._stamp = ()  # not published: try again at the next poll
            raise
        changed = [
            section for section in sorted(HOT_SECTIONS) if getattr(new, section) != getattr(self.running, section)
        ]
        self.running = new
        return f"config revision {revision} published ({', '.join(changed)} changed)"


def publish_config(config: CityConfig, app_name: str = "citywatch") -> int:
    """Post `config` (anchored) to the running app's ConfigBoard; returns its revision."""
    from ray import serve

    board = serve.get_deployment_handle("ConfigBoard", app_name=app_name)
    revision: int = board.publish.remote(config.model_dump(mode="json")).result()
    return revision


def preflight(config: CityConfig) -> list[str]:
    """Problems that would stop part of the city, found before Ray starts: each names what is wrong and where."""
    problems = []
    for name, detector in config.detectors.items():
        try:
            OnnxDetector.from_path(resolve_model(detector.model), threads=1)
        except ModelLoadError as error:
            users = [
                f"{camera_id}/{preset_id}" if camera.presets[preset_id].detector else camera_id
                for camera_id, camera in config.cameras.items()
                for preset_id in camera.presets
                if config.preset_detector(camera_id, preset_id) == name
            ]
            users = list(dict.fromkeys(users))  # a camera once, however many of its presets use it
            problems.append(f"detectors → {name}: {error} (cameras affected: {', '.join(users) or 'none'})")
    return problems


RAY_TOKEN_FILE = "ray-auth-token"
"""Where a local city keeps its Ray token (mode 0600) in its state dir, unless the environment gives one."""


def ray_token_file(path: Path) -> Path:
    """`path`, holding a random token (made on first use, readable by this user only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            raise ConfigError(f"Ray token file {path} is readable by others: chmod 600 it") from None
        if not path.read_text().strip():
            raise ConfigError(f"Ray token file {path} is empty: delete it to have a new one made") from None
        return path
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_hex(32))
    return path


def local_ray_settings(state_dir: Path) -> None:
    """Settings for a Ray cluster of this machine only, made in this process's environment (children inherit it).

    - Every Ray server listens on 127.0.0.1. `ray.init(_node_ip_address="127.0.0.1")` alone does not do it:
      ray.init turns a loopback address into the machine's address, and the GCS, raylets and workers then
      listen on every interface. Ray's switch for a one-machine cluster (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0,
      the default on macOS and Windows) keeps the node's address at 127.0.0.1, and with it each server's.
    - Token authentication (RAY_AUTH_MODE=token): every gRPC and HTTP call between Ray's processes carries the
      token. RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH from the environment win; otherwise the token is the file
      `state_dir/ray-auth-token`. Once set in a process it stays (Ray caches the token it loaded).
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_AUTH_MODE"] = "token"
    if not os.environ.get("RAY_AUTH_TOKEN") and not os.environ.get("RAY_AUTH_TOKEN_PATH"):
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(ray_token_file(state_dir / RAY_TOKEN_FILE).resolve())
    if "ray" in sys.modules:  # Ray read both settings when it was imported: read them again
        import ray._private.ray_constants as ray_constants
        from ray._raylet import Config  # type: ignore[attr-defined]

        ray_constants.ENABLE_RAY_CLUSTER = False
        Config.initialize("")


@contextmanager
def running_city(
    config: CityConfig,
    *,
    num_cpus: int | None = None,
    app_name: str = "citywatch",
    verbose: bool = False,
    state_dir: Path | None = None,
    stop_signals: bool = False,
) -> Iterator[str]:
    """Run the city's Serve application until the block exits; yields the API's base URL.

    `config` must be anchored (absolute paths): replicas run in other processes. Ray runs on this machine only,
    on 127.0.0.1 with token authentication (`local_ray_settings`; the token file goes in `state_dir`, default
    the database's folder or `var/`). `stop_signals`: SIGTERM and SIGINT stop the city like Ctrl-C
    (`serving.stopping`; installed again after `ray.init`, which sets its own SIGTERM handler).
    """
    local_ray_settings(state_dir or _default_state_dir(config))
    import ray  # imported here: `citywatch check` and the tests of plain pieces need no Ray
    from ray import serve

    from citywatch.serving.app import build_app

    serving = config.serving
    ray.init(
        num_cpus=num_cpus or os.cpu_count() or 2,
        include_dashboard=False,
        _node_ip_address=LOOPBACK,
        logging_level=logging.WARNING,
        log_to_driver=True,
    )
    try:
        if stop_signals:
            install_stop_handlers()
        # No access log line per detector call: at a few calls a second per camera it drowns everything else.
        logging_config = {"enable_access_log": False, "log_level": "INFO" if verbose else "WARNING"}
        if not verbose:
            logging.getLogger("ray.serve").setLevel(logging.WARNING)
        serve.start(http_options={"host": serving.host, "port": serving.port}, logging_config=logging_config)
        serve.run(build_app(config), name=app_name, route_prefix="/", logging_config=logging_config)
        yield f"http://{serving.host}:{serving.port}"
    finally:
        try:
            serve.shutdown()  # type: ignore[no-untyped-call]
        finally:
            ray.shutdown()


def _default_state_dir(config: CityConfig) -> Path:
    database = config.storage.database
    if database.startswith("sqlite:///"):
        return Path(database.removeprefix("sqlite:///")).parent.resolve()
    return Path("var").resolve()
