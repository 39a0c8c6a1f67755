"""The simulated PTZ camera, driven by the real ONVIF client: presets change the picture, moves are grey."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from itertools import groupby
from pathlib import Path

import numpy as np
import pytest

from citywatch.pipelines.camera import RtspReader
from citywatch.pipelines.ptz import OnvifPtz, PtzError, goto_and_wait
from citywatch.stack.processes import free_port
from citywatch.stack.ptz_head import frame_age_s, is_moving_frame
from citywatch.stack.ptz_sim import PtzCameraSim, PtzSimEndpoint
from citywatch.stack.rtsp import rtsp_available
from tests.waiting import wait_until_async

MOVE_TIME = 0.8
# BGR means of the two preset clips (flat colours: a frame says which preset it shows).
PRESET_COLOURS = {"1": (200, 60, 20), "2": (30, 90, 210)}


def colour_clip(path: Path, bgr: tuple[int, int, int]) -> Path:
    blue, green, red = bgr
    source = f"color=c=0x{red:02x}{green:02x}{blue:02x}:size=320x180:rate=10"
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            source,
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
        timeout=60,
    )
    return path


def shows(image: np.ndarray) -> str:
    """Which preset a frame of the simulator shows: '1', '2' or 'moving'."""
    if is_moving_frame(image):
        return "moving"
    body = image[24:].reshape(-1, 3).mean(axis=0)
    return min(PRESET_COLOURS, key=lambda token: float(np.abs(body - PRESET_COLOURS[token]).sum()))


@pytest.fixture(scope="module")
def preset_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if reason := rtsp_available() or (None if shutil.which("ffmpeg") else "needs ffmpeg"):
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("presets")
    return {token: colour_clip(folder / f"preset-{token}.mp4", bgr) for token, bgr in PRESET_COLOURS.items()}


@pytest.fixture(scope="module")
def ptz_camera(preset_clips: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[PtzSimEndpoint]:
    sim = PtzCameraSim(
        preset_clips,
        name="dome",
        move_time=MOVE_TIME,
        user="operator",
        password="s3cret",
        stamp=True,
        log_dir=tmp_path_factory.mktemp("ptz-logs"),
    )
    try:
        yield sim.start()
    finally:
        sim.stop()


def onvif(endpoint: PtzSimEndpoint, password: str = "s3cret", timeout: float = 5.0) -> OnvifPtz:
    return OnvifPtz("dome-1", endpoint.onvif, user="operator", password=password, timeout=timeout)


def test_presets_and_status_over_onvif(ptz_camera: PtzSimEndpoint) -> None:
    async def scenario() -> None:
        ptz = onvif(ptz_camera)
        try:
            assert [p.token for p in await ptz.presets()] == ["1", "2"]
            await ptz.goto_preset("2")
            moving = await ptz.status()
            assert moving.moving and moving.utc_time is not None
            await goto_and_wait(ptz, "2", still_timeout=30)  # already on the way: waits for the rest
            at_two = await ptz.status()
            assert not at_two.moving and at_two.pan is not None
            took = await goto_and_wait(ptz, "1", still_timeout=30)
            assert took >= MOVE_TIME  # it waited for the move, not only for the command
            at_one = await ptz.status()
            assert not at_one.moving and at_one.pan != at_two.pan  # the head turned
        finally:
            await ptz.close()

    asyncio.run(scenario())


def test_picture_follows_the_preset_and_is_grey_while_moving(ptz_camera: PtzSimEndpoint) -> None:
    reader = RtspReader("dome-1", ptz_camera.rtsp_url, open_timeout=3, read_timeout=3)
    reader.start()

    async def shown() -> str:
        return shows((await asyncio.to_thread(reader.read, timeout=10)).image)

    async def shows_preset_one() -> bool:
        return await shown() == "1"

    async def scenario() -> tuple[list[str], list[float | None]]:
        ptz = onvif(ptz_camera)
        try:
            await goto_and_wait(ptz, "1", still_timeout=30)
            # The encoder and the RTSP path deliver with some delay: wait for the picture to show preset 1.
            await wait_until_async(shows_preset_one, 60, "the picture of preset 1")
            await ptz.goto_preset("2")
            seen = ["1"]
            while seen[-1] != "2":
                seen.append(await shown())
                assert len(seen) < 600, f"no picture of preset 2 in {len(seen)} frames: {seen[:20]}…"
            after = [await asyncio.to_thread(reader.read, timeout=10) for _ in range(5)]
            now = time.time()
            return seen + [shows(frame.image) for frame in after], [frame_age_s(frame.image, now) for frame in after]
        finally:
            await ptz.close()

    try:
        views, ages = asyncio.run(scenario())
    finally:
        reader.stop()
    # Preset 1, then grey while the head turns, then preset 2 and nothing else.
    assert [view for view, _ in groupby(views)] == ["1", "moving", "2"]
    assert None not in ages and ages == sorted(ages, reverse=True)  # each read a picture no older than the last


def test_bad_credentials_unknown_preset_and_unreachable_camera_raise_ptz_errors(
    ptz_camera: PtzSimEndpoint,
) -> None:
    async def scenario() -> None:
        wrong = onvif(ptz_camera, password="guess")
        with pytest.raises(PtzError, match=r"(?i)camera 'dome-1': GotoPreset '1' failed.*not authorized"):
            await wrong.goto_preset("1")
        await wrong.close()
        ptz = onvif(ptz_camera)
        with pytest.raises(PtzError, match=r"camera 'dome-1': GotoPreset '9' failed.*no preset"):
            await ptz.goto_preset("9")
        assert (await ptz.status()).utc_time is not None  # the session recovers after a fault
        await ptz.close()
        gone = OnvifPtz("dome-gone", f"127.0.0.1:{free_port()}", user="u", password="p", timeout=2)
        with pytest.raises(PtzError, match="camera 'dome-gone': GetStatus failed"):
            await gone.status()
        await gone.close()

    asyncio.run(scenario())
