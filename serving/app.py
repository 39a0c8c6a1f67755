"""The typed app builder: one config in, one Ray Serve application out."""

from __future__ import annotations

from typing import cast

from ray.serve import Application, Deployment

from citywatch.pipelines.config import CityConfig
from citywatch.serving import deployments

# `@serve.deployment` turns each class into a Deployment; Ray's stubs do not say so.
Detector = cast(Deployment, deployments.Detector)
CameraFleet = cast(Deployment, deployments.CameraFleet)
FleetHealthBoard = cast(Deployment, deployments.FleetHealthBoard)
ConfigBoard = cast(Deployment, deployments.ConfigBoard)
Api = cast(Deployment, deployments.Api)


def fleet_deployment(config: CityConfig) -> Deployment:
    """The camera fleet, sharded over `serving.fleet_replicas`, with the city config as its user_config."""
    serving = config.serving
    return CameraFleet.options(
        num_replicas=serving.fleet_replicas,
        user_config={"config": config.model_dump(mode="json")},
        ray_actor_options={"num_cpus": serving.fleet_cpus},
    )


def build_app(config: CityConfig) -> Application:
    """Detectors (one deployment per configured model) ← camera fleet (sharded) ← HTTP ingress.

    The fleet gets the config as `user_config`; `CameraFleet.reconfigure` applies it with `Fleet.apply`, so
    when Serve updates running replicas in place only the changed cameras restart. `serve.run` of a rebuilt
    app replaces every replica instead (a new random code version per imperative deploy), so a running city
    changes through the ConfigBoard: `runner.publish_config` posts a new config there, and the fleet and
    detector replicas poll it and apply it in place (`deployments` module docstring).
    """
    serving = config.serving
    config_board = ConfigBoard.bind(config.model_dump(mode="json"))
    detectors = {
        name: Detector.options(
            name=f"Detector-{name}",
            num_replicas=serving.detector_replicas,
            # Room for two full batches in flight, or @serve.batch never fills.
            max_ongoing_requests=2 * serving.max_batch_size,
            ray_actor_options={"num_cpus": serving.detector_cpus},
            user_config={"detector": detector.model_dump(mode="json")},
        ).bind(name, detector, serving.max_batch_size, serving.batch_wait_s, config_board)
        for name, detector in config.detectors.items()
    }
    board = FleetHealthBoard.bind()
    fleet = fleet_deployment(config).bind(detectors, board, 2.0, config_board)
    return Api.bind(config, fleet, detectors)
