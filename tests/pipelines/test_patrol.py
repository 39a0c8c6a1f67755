"""Patrols: a PTZ camera visiting two presets through the real ONVIF client, simulator and RTSP; and the
visit loop on a controllable clock (misses and their reasons, one patrol per camera)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
import supervision as sv

from citywatch.pipelines.camera import CameraHealth, CameraUnavailable
from citywatch.pipelines.config import parse_config
from citywatch.pipelines.fleet import Fleet
from citywatch.pipelines.patrol import CameraPatrol, PresetVisit
from citywatch.pipelines.ptz import PtzError, PtzStatus
from citywatch.pipelines.schedule import CameraBusy, CameraLeases, ManualClock, Schedule
from citywatch.stack.ptz_head import is_moving_frame
from citywatch.stack.ptz_sim import PtzCameraSim, PtzSimEndpoint
from citywatch.stack.rtsp import rtsp_available
from citywatch.vision.frame import Frame
from citywatch.vision.scene import PresetScene
from citywatch.vision.violation import Violation
from tests.configs import no_store
from tests.waiting import wait_until_async

COLOURS = {"1": (200, 60, 20), "2": (30, 90, 210)}  # BGR of each preset's picture
T0 = datetime(2026, 5, 4, 1, 0, tzinfo=UTC)
WEST = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]
EAST = [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]


def shows(image: np.ndarray) -> str:
    if is_moving_frame(image):
        return "moving"
    mean = image.reshape(-1, 3).mean(axis=0)
    return min(COLOURS, key=lambda token: float(np.abs(mean - COLOURS[token]).sum()))


def car_at(x1: float, x2: float, width: int, height: int) -> sv.Detections:
    return sv.Detections(
        xyxy=np.array([[x1 * width, 0.4 * height, x2 * width, 0.9 * height]]),
        confidence=np.array([0.9]),
        class_id=np.array([2]),
        data={"class_name": np.array(["car"])},
    )


@pytest.fixture(scope="module")
def two_preset_camera(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PtzSimEndpoint]:
    if reason := rtsp_available() or (None if shutil.which("ffmpeg") else "needs ffmpeg"):
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("ptz-patrol")
    clips = {}
    for token, (blue, green, red) in COLOURS.items():
        clips[token] = folder / f"{token}.mp4"
        subprocess.run(
            [
                "ffmpeg",
                "-hide_banner",
                "-loglevel",
                "error",
                "-f",
                "lavfi",
                "-t",
                "2",
                "-i",
                f"color=c=0x{red:02x}{green:02x}{blue:02x}:size=320x180:rate=10",
                "-pix_fmt",
                "yuv420p",
                str(clips[token]),
            ],
            check=True,
            timeout=60,
        )
    sim = PtzCameraSim(clips, name="dome", move_time=0.8, user="op", password="pw", log_dir=folder)
    try:
        yield sim.start()
    finally:
        sim.stop()


def city(camera: PtzSimEndpoint) -> dict[str, Any]:
    visit = {"schedule": {"every": "5s"}, "settle": "0.6s", "samples": 3, "sample_every": "0.3s"}
    return {
        "storage": no_store(),
        "rules": {
            "car": {
                "type": "presence",
                "kind": "motor_vehicle_illegal_parking",
                "classes": ["car"],
                "repeat_every": "0s",
            }
        },
        "cameras": {
            "dome-1": {
                "rtsp": camera.rtsp_url,
                "ptz": {"onvif": camera.onvif, "user": camera.user, "password": camera.password},
                "presets": {
                    "west": {**visit, "token": "1", "zones": {"west-kerb": {"polygon": WEST, "rules": ["car"]}}},
                    "east": {**visit, "token": "2", "zones": {"east-kerb": {"polygon": EAST, "rules": ["car"]}}},
                },
            }
        },
    }


def test_ptz_patrol_applies_each_presets_zones_and_never_analyses_moving_frames(
    two_preset_camera: PtzSimEndpoint,
) -> None:
    config = parse_config(city(two_preset_camera))
    analysed: list[str] = []
    violations: list[Violation] = []

    async def detect(image: np.ndarray) -> sv.Detections:
        view = shows(image)
        analysed.append(view)
        height, width = image.shape[:2]
        # Preset 1 shows a car on the left, preset 2 on the right; a moving frame would show one in the middle.
        x1, x2 = {"1": (0.1, 0.3), "2": (0.7, 0.9), "moving": (0.4, 0.6)}[view]
        return car_at(x1, x2, width, height)

    async def sink(violation: Violation) -> None:
        violations.append(violation)

    async def scenario() -> dict[str, Any]:
        fleet = Fleet(detect_for=lambda _name: detect, sink=sink)
        await fleet.apply(config)
        try:
            patrol = fleet.patrols["dome-1"]

            def four_visits_done() -> bool:
                return len([r for r in patrol.history if r.outcome == "done"]) >= 4

            await wait_until_async(four_visits_done, 120, "four visits done", every=0.2)
            return fleet.health()[0]
        finally:
            await fleet.stop()

    health = asyncio.run(asyncio.wait_for(scenario(), 180))
    assert "moving" not in analysed  # every analysed frame was taken after the head stopped and settled
    assert set(analysed) == {"1", "2"}
    assert len(analysed) >= 12
    by_preset = {(v.preset_id, v.zone, shows(v.frame.image)) for v in violations}
    assert by_preset == {("west", "west-kerb", "1"), ("east", "east-kerb", "2")}
    patrol = health["patrol"]
    assert patrol["missed"] == 0 and patrol["visits"] >= 4
    visited = [v["preset_id"] for v in patrol["recent_visits"]]
    assert all(a != b for a, b in pairwise(visited))  # alternating, in order
    # Each visit that turned the head waited for it to stop: at least the simulator's 0.8 s move (no upper bound: a
    # busy machine may take longer to notice, and timing is a benchmark's business, not a test's). The patrol's
    # very first visit may go to the preset the head already points at (which one comes first depends on the
    # wall clock: visits sit on a grid from the epoch), and then there is no move to wait for.
    recent = patrol["recent_visits"]
    first_ever_included = patrol["visits"] + patrol["missed"] == len(recent)
    turned = recent[1:] if first_ever_included else recent
    assert len(turned) >= 3 and all(v["move_s"] >= 0.8 for v in turned), recent


class FakeReader:
    """A stream on the manual clock: frames stamped with the clock's time; can be switched off."""

    def __init__(self, camera_id: str, clock: ManualClock) -> None:
        self.camera_id = camera_id
        self.url = "rtsp://fake/" + camera_id
        self.clock = clock
        self.down = False
        self.opened = 0

    @property
    def health(self) -> CameraHealth:
        return CameraHealth(self.camera_id, not self.down, None, None, 0, 0, None, 64, 48)

    def start(self) -> None:
        self.opened += 1

    def stop(self, timeout: float = 10.0) -> None:
        pass

    def set_active(self, active: bool) -> None:
        pass

    def read(self, preset_id: str | None = None, timeout: float | None = None) -> Frame:
        if self.down:
            raise CameraUnavailable(f"camera {self.camera_id!r}: cannot open {self.url}")
        return Frame(np.zeros((48, 64, 3), np.uint8), self.camera_id, preset_id, self.clock.now(), 0)


class FlakyPtz:
    camera_id = "cam-x"

    def __init__(self) -> None:
        self.fail = False
        self.gotos: list[str] = []

    async def goto_preset(self, token: str) -> None:
        if self.fail:
            raise PtzError(f"camera {self.camera_id!r}: GotoPreset {token!r} failed: ClientConnectorError")
        self.gotos.append(token)

    async def status(self) -> PtzStatus:
        return PtzStatus(False, None, 0.0, 0.0, 0.0)


def test_misses_are_recorded_with_their_reasons_on_a_manual_clock() -> None:
    clock = ManualClock(T0)
    reader, ptz = FakeReader("cam-x", clock), FlakyPtz()

    async def no_detections(image: np.ndarray) -> sv.Detections:
        return sv.Detections.empty()

    async def sink(violation: Violation) -> None:
        pass

    every = Schedule(timedelta(minutes=10))
    presets = [
        PresetVisit(
            name, PresetScene("cam-x", name, []), token=token, schedule=every, samples=2, sample_every=1, settle=2
        )
        for name, token in (("a", "1"), ("b", "2"))
    ]
    patrol = CameraPatrol(reader, presets, detect=no_detections, sink=sink, ptz=ptz, clock=clock)

    async def walk(until: datetime) -> None:
        while clock.now() < until:
            await patrol.step()

    asyncio.run(walk(T0 + timedelta(minutes=30)))
    assert patrol.stats.missed == 0 and patrol.stats.visits == 6 and ptz.gotos[:2] in (["1", "2"], ["2", "1"])
    reader.down = True
    asyncio.run(walk(T0 + timedelta(minutes=50)))
    reader.down, ptz.fail = False, True
    asyncio.run(walk(T0 + timedelta(minutes=70)))
    ptz.fail = False
    asyncio.run(walk(T0 + timedelta(minutes=90)))
    missed = [r for r in patrol.history if r.outcome == "missed"]
    assert {r.reason.split(":")[0] for r in missed} == {"camera offline", "PTZ"}
    assert len(missed) == 8 and patrol.stats.missed_reasons == {"camera offline": 4, "PTZ": 4}
    assert patrol.history[-1].outcome == "done"  # and back to normal
    # Simulated 90 minutes; the visits of each preset stayed on their 10-minute grid.
    dues = sorted(r.due for r in patrol.history if r.preset_id == "a")
    assert {b - a for a, b in pairwise(dues)} == {timedelta(minutes=10)}


def test_a_second_patrol_on_the_same_camera_is_refused() -> None:
    clock = ManualClock(T0)
    leases = CameraLeases()

    async def no_detections(image: np.ndarray) -> sv.Detections:
        return sv.Detections.empty()

    async def sink(violation: Violation) -> None:
        pass

    def patrol() -> CameraPatrol:
        preset = PresetVisit("only", PresetScene("cam-y", "only", []), samples=1, sample_every=1)
        return CameraPatrol(
            FakeReader("cam-y", clock), [preset], detect=no_detections, sink=sink, clock=clock, leases=leases
        )

    async def scenario() -> None:
        first = asyncio.create_task(patrol().run())
        await wait_until_async(lambda: leases.holder("cam-y"), 30, "the first patrol to hold the camera")
        with pytest.raises(CameraBusy, match="cam-y"):
            await patrol().run()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first

    asyncio.run(scenario())
