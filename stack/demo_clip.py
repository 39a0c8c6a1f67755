"""Build the demo cameras' clips from CC BY 4.0 data sets (see serving/demo/ATTRIBUTION.md).

    python stack/demo_clip.py [--dataset DIR] [--out FILE]          # parking-demo.mp4
    python stack/demo_clip.py --garbage [--dataset DIR] [--out FILE]  # garbage-demo.mp4

`garbage-demo.mp4` (the PTZ demo camera's second preset) is a slideshow of the first GARBAGE_FRAMES
validation images of the "公开数据集111" garbage set (shared/data/garbage_bins_atanu), by file name, each
shown GARBAGE_HOLD_S seconds, scaled to 360x360 and centred on a 640x360 dark canvas, same encoder flags.

The data set (shared/data/parking_occupancy_kurss, see shared/SOURCES.md) holds frames of one fixed
camera over a parking lot; file names carry the source frame index
``parking_lot_1_mp4-<N>_jpg.rf.<hash>.jpg``. Training frames come twice: the original and a
Roboflow augmentation (cropped, rotated, sheared, so smaller than 854x480). We keep, per index, the
copy at the native 854x480 (the original), order by index and encode a clip that a looping
``ffmpeg -re -stream_loop -1 -i clip -c copy -f rtp ...`` publisher can send forever:
SPS/PPS in-band on every keyframe, a keyframe every 10 frames, no B-frames.

Needs ffmpeg with libx264 and OpenCV (only to read image sizes). Serving never runs this.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]  # a checkout: the clips are built into serving/demo/
DATASET = REPO.parent / "shared" / "data" / "parking_occupancy_kurss"
OUT = REPO / "serving" / "demo" / "parking-demo.mp4"
NATIVE = (480, 854)  # (height, width) of the un-augmented frames
SOURCE_FPS = "2.5"  # each source frame held 0.4 s: 130 frames -> 52 s at 10 fps
MAX_BYTES = 2_000_000  # shipped inside the wheel
GARBAGE_DATASET = REPO.parent / "shared" / "data" / "garbage_bins_atanu"
GARBAGE_OUT = REPO / "serving" / "demo" / "garbage-demo.mp4"
GARBAGE_FRAMES = 20
GARBAGE_HOLD_S = 2.5
_INDEX_RE = re.compile(r"parking_lot_1_mp4-(\d+)_jpg\.rf\.[0-9a-f]+\.jpg$")


def pick_frames(dataset: Path) -> list[Path]:
    """One image per source frame index, ordered by index: the native-size copy, first by name."""
    by_index: dict[int, list[Path]] = {}
    for path in sorted(dataset.glob("images/*/*.jpg")):
        if match := _INDEX_RE.search(path.name):
            by_index.setdefault(int(match.group(1)), []).append(path)
    if not by_index:
        raise SystemExit(f"no parking_lot_1_mp4-<N>_jpg.rf.<hash>.jpg images under {dataset}/images")
    chosen: list[Path] = []
    for index in sorted(by_index):
        candidates = sorted(by_index[index], key=lambda p: p.name)
        native = [p for p in candidates if _shape(p) == NATIVE]
        if not native:
            raise SystemExit(f"source frame {index}: no {NATIVE[1]}x{NATIVE[0]} copy among {candidates}")
        chosen.append(native[0])
    return chosen


def _shape(path: Path) -> tuple[int, int]:
    image = cv2.imread(str(path), cv2.IMREAD_REDUCED_GRAYSCALE_2)
    if image is None:
        raise SystemExit(f"cannot read {path}")
    return image.shape[0] * 2, image.shape[1] * 2


# Flags both clips share: a keyframe every 10 frames with SPS/PPS in-band and no B-frames (a looping
# `-c copy` publisher can send them forever); one thread and bitexact, so rebuilding gives the same bytes with
# the same ffmpeg/x264.
_X264_FLAGS = (
    "-c:v libx264 -preset slow -crf {crf} -g 10 -keyint_min 10 -sc_threshold 0 -bf 0 -x264-params repeat-headers=1"
    " -threads 1 -fflags +bitexact -flags:v +bitexact -map_metadata -1 -an -movflags +faststart"
)


def _encode_command(pattern: str, out: Path, framerate: str, filters: str, crf: int) -> list[str]:
    head = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-framerate", framerate, "-i", pattern]
    return [*head, "-vf", filters, *_X264_FLAGS.format(crf=crf).split(), str(out)]


def ffmpeg_command(pattern: str, out: Path) -> list[str]:
    """The exact encode; ATTRIBUTION.md quotes it."""
    # 640x360 keeps the file under 2 MB with a keyframe every second; the detector letterboxes to 640 anyway.
    # fps=10 repeats each source frame 4 times.
    return _encode_command(pattern, out, SOURCE_FPS, "scale=640:360:flags=area,fps=10,format=yuv420p", crf=29)


def build(dataset: Path, out: Path) -> list[str]:
    frames = pick_frames(dataset)
    command = _encode_frames(frames, out, ffmpeg_command)
    print(f"{out}: {len(frames)} source frames (index {_index(frames[0])}..{_index(frames[-1])})")
    return command


def _encode_frames(frames: list[Path], out: Path, command_for: Callable[[str, Path], list[str]]) -> list[str]:
    """Encode `frames` in order into `out` with `command_for(pattern, out)`; the command, once `out` fits."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cw-clip-") as tmp:
        # image2 wants a numbered sequence; symlinks keep the data set's files untouched.
        for i, frame in enumerate(frames):
            (Path(tmp) / f"{i:04d}.jpg").symlink_to(frame.resolve())
        command = command_for(str(Path(tmp) / "%04d.jpg"), out)
        subprocess.run(command, check=True)
    size = out.stat().st_size
    print(f"{out}: {size} bytes")
    if size > MAX_BYTES:
        raise SystemExit(f"{out} is {size} bytes, over the {MAX_BYTES} byte budget: raise -crf")
    return command


def garbage_command(pattern: str, out: Path) -> list[str]:
    """The slideshow encode; ATTRIBUTION.md quotes it."""
    filters = "scale=360:360:flags=area,pad=640:360:140:0:color=0x202020,fps=10,format=yuv420p"
    return _encode_command(pattern, out, str(1 / GARBAGE_HOLD_S), filters, crf=30)


def build_garbage(dataset: Path, out: Path) -> list[str]:
    frames = sorted((dataset / "images" / "val").glob("*.jpg"))[:GARBAGE_FRAMES]
    if len(frames) < GARBAGE_FRAMES:
        raise SystemExit(f"need {GARBAGE_FRAMES} images under {dataset}/images/val, found {len(frames)}")
    command = _encode_frames(frames, out, garbage_command)
    print(f"{out}: {len(frames)} images ({frames[0].name} .. {frames[-1].name})")
    return command


def _index(path: Path) -> int:
    match = _INDEX_RE.search(path.name)
    assert match is not None
    return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the demo camera clip from the parking data set.")
    parser.add_argument("--garbage", action="store_true", help="build garbage-demo.mp4 instead")
    parser.add_argument("--dataset", type=Path, help=f"default: {DATASET} (--garbage: {GARBAGE_DATASET})")
    parser.add_argument("--out", type=Path, help=f"default: {OUT} (--garbage: {GARBAGE_OUT})")
    args = parser.parse_args(argv)
    if args.garbage:
        command = build_garbage(args.dataset or GARBAGE_DATASET, args.out or GARBAGE_OUT)
    else:
        command = build(args.dataset or DATASET, args.out or OUT)
    print("command:", shlex.join(command).replace(tempfile.gettempdir(), "$TMP"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
