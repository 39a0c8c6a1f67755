"""The typed app builder: one config in, one Ray Serve application out."""

from __future__ import annotations

from typing import cast

from ray.serve import Application, Deployment

from citywatch.pipelines.config import CityConfig
from citywatch.serving import deployments

# `@serve.deployment` turns each class into a Deployment; Ray's stubs do not say so.
Detector = cast(Deployment, deployments.Detector)
CameraFleet = cast(Deployment, deployments.CameraFleet)
Api = cast(Deployment, deployments.Api)


def build_app(config: CityConfig) -> Application:
    """Detectors (one deployment per configured model) ← camera fleet ← HTTP ingress."""
    serving = config.serving
    detectors = {
        name: Detector.options(
            name=f"Detector-{name}",
            num_replicas=serving.detector_replicas,
            # Room for two full batches in flight, or @serve.batch never fills.
            max_ongoing_requests=2 * serving.max_batch_size,
            ray_actor_options={"num_cpus": serving.detector_cpus},
        ).bind(name, detector, serving.max_batch_size, serving.batch_wait_s)
        for name, detector in config.detectors.items()
    }
    fleet = CameraFleet.bind(config, detectors)
    return Api.bind(config, fleet, detectors)
