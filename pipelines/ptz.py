"""PTZ control over ONVIF: go to a preset, then wait until the head reports it is still.

The client is `onvif-zeep-async` (module `onvif`, the maintained ONVIF client; it ships its WSDL files and
we pass their folder explicitly). Every failure — refused connection, SOAP fault, bad credentials, timeout,
a head that never stops — surfaces as `PtzError` naming the camera.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)


class PtzError(RuntimeError):
    """A PTZ command failed or the camera did not come to rest; the message names the camera."""


@dataclass(frozen=True)
class PtzPresetInfo:
    token: str
    name: str


@dataclass(frozen=True)
class PtzStatus:
    moving: bool
    """True while pan/tilt or zoom reports MOVING (a camera that reports no MoveStatus counts as still)."""
    utc_time: datetime | None
    pan: float | None
    tilt: float | None
    zoom: float | None


class PtzControl(Protocol):
    """What a patrol needs from a PTZ head (OnvifPtz, or a test double)."""

    camera_id: str

    async def goto_preset(self, token: str) -> None: ...

    async def status(self) -> PtzStatus: ...


def wsdl_dir() -> Path:
    """The WSDL folder shipped with the onvif client."""
    import onvif  # type: ignore[import-untyped]

    return Path(onvif.__file__).parent / "wsdl"


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"ONVIF endpoint must be host:port, got {endpoint!r}")
    return host, int(port)


class OnvifPtz:
    """One camera's ONVIF PTZ service, connected lazily and reconnected after a failure."""

    def __init__(
        self,
        camera_id: str,
        endpoint: str,
        *,
        user: str | None = None,
        password: str | None = None,
        profile: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.camera_id = camera_id
        self.host, self.port = parse_endpoint(endpoint)
        self.user = user
        self.password = password
        self.profile = profile
        self.timeout = timeout
        self._camera: Any = None
        self._ptz: Any = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> Any:
        if self._ptz is not None:
            return self._ptz
        from onvif import ONVIFCamera  # imported late: the package configures logging on import

        camera = ONVIFCamera(self.host, self.port, self.user, self.password, str(wsdl_dir()), no_cache=True)
        try:
            await camera.update_xaddrs()
            media = await camera.create_media_service()
            if self.profile is None:
                profiles = await media.GetProfiles()
                if not profiles:
                    raise PtzError(f"camera {self.camera_id!r}: ONVIF reports no media profile")
                self.profile = str(profiles[0].token)
            self._ptz = await camera.create_ptz_service()
        except BaseException:
            await camera.close()
            raise
        self._camera = camera
        return self._ptz

    async def _call(self, what: str, operation: str, request: dict[str, Any]) -> Any:
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout):
                    ptz = await self._connect()
                    return await getattr(ptz, operation)({"ProfileToken": self.profile, **request})
            except PtzError:
                raise
            except Exception as error:  # zeep faults, aiohttp and ONVIF errors, timeouts: all one layer
                await self._reset()
                reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
                raise PtzError(f"camera {self.camera_id!r}: {what} failed: {reason}") from error

    async def _reset(self) -> None:
        camera, self._camera, self._ptz = self._camera, None, None
        if camera is not None:
            try:
                await camera.close()
            except Exception:  # closing a broken session must not hide the first error
                log.debug("camera %s: closing the ONVIF session failed", self.camera_id, exc_info=True)

    async def presets(self) -> list[PtzPresetInfo]:
        answer = await self._call("GetPresets", "GetPresets", {})
        return [PtzPresetInfo(str(p.token), str(p.Name or "")) for p in answer or []]

    async def goto_preset(self, token: str) -> None:
        await self._call(f"GotoPreset {token!r}", "GotoPreset", {"PresetToken": token})

    async def status(self) -> PtzStatus:
        answer = await self._call("GetStatus", "GetStatus", {})
        move = getattr(answer, "MoveStatus", None)
        states = [str(getattr(move, axis, None) or "IDLE").upper() for axis in ("PanTilt", "Zoom")]
        position = getattr(answer, "Position", None)
        pan_tilt = getattr(position, "PanTilt", None)
        zoom = getattr(position, "Zoom", None)
        return PtzStatus(
            moving="MOVING" in states,
            utc_time=getattr(answer, "UtcTime", None),
            pan=getattr(pan_tilt, "x", None),
            tilt=getattr(pan_tilt, "y", None),
            zoom=getattr(zoom, "x", None),
        )

    async def close(self) -> None:
        async with self._lock:
            await self._reset()


async def goto_and_wait(ptz: PtzControl, token: str, *, still_timeout: float, poll_every: float = 0.2) -> float:
    """GotoPreset, then poll GetStatus until the head is still; returns the seconds it took.

    The first polls may still say IDLE before the camera starts moving; a camera must report still on two
    polls in a row, the first at least `poll_every` after the command.
    """
    started = time.monotonic()
    await ptz.goto_preset(token)
    still_in_a_row = 0
    while True:
        await asyncio.sleep(poll_every)
        status = await ptz.status()
        still_in_a_row = 0 if status.moving else still_in_a_row + 1
        if still_in_a_row >= 2:
            return time.monotonic() - started
        if time.monotonic() - started > still_timeout:
            raise PtzError(f"camera {ptz.camera_id!r}: still moving {still_timeout:.0f} s after GotoPreset {token!r}")
