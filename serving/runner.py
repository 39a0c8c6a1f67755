"""Start and stop a city on Ray Serve: preflight checks, `ray.init`, `serve.run`, clean shutdown."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from citywatch.models.builtin import resolve_model
from citywatch.pipelines.config import CityConfig
from citywatch.vision.detector import ModelLoadError, OnnxDetector

log = logging.getLogger(__name__)


def preflight(config: CityConfig) -> list[str]:
    """Problems that would stop part of the city, found before Ray starts: each names what is wrong and where."""
    problems = []
    for name, detector in config.detectors.items():
        try:
            OnnxDetector.from_path(resolve_model(detector.model), threads=1)
        except ModelLoadError as error:
            users = [camera_id for camera_id, camera in config.cameras.items() if camera.detector == name]
            problems.append(f"detectors → {name}: {error} (cameras affected: {', '.join(users) or 'none'})")
    return problems


@contextmanager
def running_city(
    config: CityConfig, *, num_cpus: int | None = None, app_name: str = "citywatch", verbose: bool = False
) -> Iterator[str]:
    """Run the city's Serve application until the block exits; yields the API's base URL.

    `config` must be anchored (absolute paths): replicas run in other processes.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local runs: no token-auth warning
    import ray  # imported here: `citywatch check` and the tests of plain pieces need no Ray
    from ray import serve

    from citywatch.serving.app import build_app

    serving = config.serving
    ray.init(
        num_cpus=num_cpus or os.cpu_count() or 2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        logging_level=logging.WARNING,
        log_to_driver=True,
    )
    try:
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
