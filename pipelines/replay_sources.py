"""Recorded footage for `citywatch replay`: video files and RTSP (PyAV), picture folders (OpenCV, EXIF by PIL).

Every source yields `Picture`s in time order. Time:
- a video: its presentation timestamps (pts × time_base, from the first frame) added to the run's start;
- an RTSP URL: read for `seconds` of stream time; pts offsets added to the start as well;
- a picture: its EXIF DateTimeOriginal (local time of the config's timezone unless EXIF names an offset),
  else the previous picture's time + `step` (the first one: the start).
A source that cannot be read raises `SourceError` naming the file and what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property, partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import av
import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from citywatch.pipelines.camera import RTSP_OPTIONS, redact

PICTURE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 0x9003
_OFFSET_TIME_ORIGINAL = 0x9011


class SourceError(RuntimeError):
    """A source could not be read; the message names it and says why."""


@dataclass(frozen=True)
class Picture:
    load: Callable[[], np.ndarray]
    """Converts the decoded picture to H×W×3 uint8 BGR (only frames that are analysed pay for it)."""
    captured_at: datetime
    name: str
    """Where it came from: `clip.mp4@12.40s`, `folder/photo.jpg`, `rtsp://…@3.20s`."""
    time_from: str
    """pts, exif or step."""

    @cached_property
    def image(self) -> np.ndarray:
        return self.load()


def is_stream(source: str) -> bool:
    return source.startswith(("rtsp://", "rtsps://"))


def read_video(path: Path, start: datetime) -> Iterator[Picture]:
    """Every decoded frame of a video file, timed by its pts."""
    if not path.is_file():
        raise SourceError(f"{path}: no such video file")
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        raise SourceError(f"{path}: not a readable video ({error})") from None
    yield from _decode(container, str(path), start, None)


def read_stream(url: str, start: datetime, seconds: float) -> Iterator[Picture]:
    """`seconds` of an RTSP stream, timed by its pts (the product's reader options: TCP, short probe)."""
    try:
        container = av.open(url, options=RTSP_OPTIONS, timeout=(10.0, 10.0))
    except av.FFmpegError as error:
        raise SourceError(f"{redact(url)}: cannot open the stream ({error})") from None
    yield from _decode(container, redact(url), start, seconds)


def _decode(
    container: av.container.InputContainer, name: str, start: datetime, seconds: float | None
) -> Iterator[Picture]:
    try:
        if not container.streams.video:
            raise SourceError(f"{name}: has no video stream")
        stream = container.streams.video[0]
        first: float | None = None
        try:
            for frame in container.decode(stream):
                if frame.pts is None or frame.time_base is None:
                    continue
                at = float(frame.pts * frame.time_base)
                first = at if first is None else first
                offset = at - first
                if seconds is not None and offset > seconds:
                    return
                yield Picture(
                    partial(_bgr, frame),
                    start + timedelta(seconds=offset),
                    f"{name}@{offset:.2f}s",
                    "pts",
                )
        except av.FFmpegError as error:
            raise SourceError(f"{name}: decoding failed after {0 if first is None else 1}+ frames: {error}") from None
        if first is None:
            raise SourceError(f"{name}: no decodable video frame")
    finally:
        container.close()


def _bgr(frame: Any) -> np.ndarray:
    image: np.ndarray = frame.to_ndarray(format="bgr24")
    return image


def _same(image: np.ndarray) -> np.ndarray:
    return image


def picture_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES)


def read_folder(folder: Path, start: datetime, step: timedelta, timezone: str) -> Iterator[Picture | SourceError]:
    """The folder's pictures by name, each timed by EXIF or by `step`; an unreadable one is yielded as its error
    (the other pictures still run)."""
    files = picture_files(folder)
    if not files:
        raise SourceError(f"{folder}: no pictures ({', '.join(sorted(PICTURE_SUFFIXES))})")
    at = start
    for index, path in enumerate(files):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            yield SourceError(f"{path}: not a readable picture")
            continue
        exif = exif_time(path, timezone)
        at = exif if exif is not None else (at if index == 0 else at + step)
        yield Picture(partial(_same, image), at, f"{folder.name}/{path.name}", "exif" if exif is not None else "step")


def exif_time(path: Path, timezone: str) -> datetime | None:
    """EXIF DateTimeOriginal as UTC (its OffsetTimeOriginal if present, else `timezone`), or None."""
    try:
        with Image.open(path) as image:
            exif = image.getexif().get_ifd(_EXIF_IFD)
    except (OSError, UnidentifiedImageError):
        return None
    text = exif.get(_DATETIME_ORIGINAL)
    if not isinstance(text, str):
        return None
    try:
        local = datetime.strptime(text.strip(), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    offset = exif.get(_OFFSET_TIME_ORIGINAL)
    if isinstance(offset, str):
        try:
            return datetime.strptime(f"{text.strip()} {offset.strip()}", "%Y:%m:%d %H:%M:%S %z").astimezone(
                ZoneInfo("UTC")
            )
        except ValueError:
            pass
    return local.replace(tzinfo=ZoneInfo(timezone)).astimezone(ZoneInfo("UTC"))
