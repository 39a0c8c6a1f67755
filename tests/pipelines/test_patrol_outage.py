"""A camera outage as a patrol lives it, on a real RTSP server that is killed and comes back: one warning for
the whole outage (however many visits it misses), and the patrol's `last_error` clears once frames come again."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np
import pytest
import supervision as sv

from citywatch.pipelines.camera import RtspReader
from citywatch.pipelines.patrol import CameraPatrol, PresetVisit
from citywatch.vision.scene import PresetScene
from citywatch.vision.violation import Violation
from tests.conftest import RtspFactory
from tests.waiting import wait_until_async


async def no_detections(image: np.ndarray) -> sv.Detections:
    return sv.Detections.empty()


async def sink(violation: Violation) -> None:
    pass


def test_an_outage_warns_once_and_last_error_clears_when_the_camera_is_back(
    rtsp_server_factory: RtspFactory, demo_clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="citywatch")
    server = rtsp_server_factory({"street": demo_clip})
    reader = RtspReader("cam-out", server.urls["street"], open_timeout=2, read_timeout=1.5, backoff_min=0.2)
    preset = PresetVisit("only", PresetScene("cam-out", "only", []), samples=1, sample_every=0.2)
    patrol = CameraPatrol(reader, [preset], detect=no_detections, sink=sink)

    async def scenario() -> None:
        task = asyncio.create_task(patrol.run())
        try:
            await wait_until_async(lambda: patrol.stats.visits >= 2, 60, "visits while the camera is up")
            for process in server.processes:
                if "publisher" not in process.name:
                    process.kill()  # the server dies; the publisher keeps sending into nothing
            await wait_until_async(lambda: patrol.stats.missed >= 3, 90, "several visits missed in the outage")
            assert (patrol.stats.last_error or "").startswith("camera offline")
            await asyncio.to_thread(server.restart_server)
            visits = patrol.stats.visits
            await wait_until_async(lambda: patrol.stats.visits > visits + 1, 90, "visits after the camera is back")
            assert patrol.stats.last_error is None, patrol.stats.last_error
            assert patrol.health()["last_error"] is None
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("citywatch") and r.levelno >= logging.WARNING and "cam-out" in r.getMessage()
    ]
    assert len(warnings) == 1, warnings  # one warning for the outage, from the reader
    assert "offline" in warnings[0]
