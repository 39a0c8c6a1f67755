"""Evidence for a violation: the annotated frame, a crop of the object, the untouched frame and a JSON sidecar.

Line widths and text scale follow the frame size so the drawing is legible from 480p to 1080p.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import cv2
import numpy as np
import supervision as sv

from citywatch.vision.taxonomy import kind as taxonomy_kind
from citywatch.vision.violation import Violation

JPEG = "image/jpeg"


class EvidenceItem(NamedTuple):
    """Bytes and their content type; a plain tuple so stores need not import this module."""

    data: bytes
    content_type: str


def render_evidence(violation: Violation, *, jpeg_quality: int = 85) -> dict[str, EvidenceItem]:
    """All evidence for one violation, by role: annotated, crop, frame, sidecar."""
    image = violation.frame.image
    return {
        "annotated": EvidenceItem(_jpeg(annotate(violation), jpeg_quality), JPEG),
        "crop": EvidenceItem(_jpeg(crop(image, violation.box), jpeg_quality), JPEG),
        "frame": EvidenceItem(_jpeg(image, jpeg_quality), JPEG),
        "sidecar": EvidenceItem(sidecar(violation), "application/json"),
    }


def annotate(violation: Violation) -> np.ndarray:
    """The frame with the zone shaded around the object, its box and a short label, and a banner: what and when.

    The zone's tint and outline stop at the offending box (every member's box, for a group): the object keeps
    its own colour, so a blue car still looks blue.
    """
    original = violation.frame.image
    image = original.copy()
    short_side = min(image.shape[:2])
    thickness = max(2, round(short_side / 240))
    text_scale = max(0.4, short_side / 900)
    zone_color = sv.Color.from_hex("#ffd400")
    image = sv.draw_filled_polygon(image, violation.zone_polygon, color=zone_color, opacity=0.2)
    image = sv.draw_polygon(image, violation.zone_polygon, color=zone_color, thickness=thickness)
    for box in [member.box for member in violation.members] or [violation.box]:
        x1, y1, x2, y2 = _pixels(box, image.shape)
        image[y1:y2, x1:x2] = original[y1:y2, x1:x2]
    red = sv.Color.from_hex("#e8112d")
    labeler = sv.LabelAnnotator(
        color=sv.ColorPalette([red]),
        text_scale=text_scale,
        text_thickness=max(1, thickness // 2),
        text_padding=max(4, thickness * 2),
        smart_position=True,  # keeps the label inside the frame
    )
    if violation.members:
        # A group: every member box with its own label, and the group's outline in the zone colour.
        image = sv.draw_rectangle(image, sv.Rect.from_xyxy(violation.box), zone_color, thickness)
        members = sv.Detections(
            xyxy=np.array([m.box for m in violation.members], dtype=float),
            confidence=np.array([m.confidence for m in violation.members]),
            class_id=np.zeros(len(violation.members), dtype=int),
        )
        image = sv.BoxAnnotator(color=sv.ColorPalette([red]), thickness=thickness).annotate(image, members)
        labels = [f"{m.class_name} {m.confidence:.2f}" for m in violation.members]
        labels[0] = f"{labels[0]} | {_how_long(violation)}"
        image = labeler.annotate(image, members, labels=labels)
    else:
        detections = sv.Detections(
            xyxy=np.array([violation.box], dtype=float),
            confidence=np.array([violation.confidence]),
            class_id=np.array([0]),
        )
        image = sv.BoxAnnotator(color=sv.ColorPalette([red]), thickness=thickness).annotate(image, detections)
        label = f"{violation.class_name} {violation.confidence:.2f} | {_how_long(violation)}"
        image = labeler.annotate(image, detections, labels=[label])
    return _banner(image, violation, text_scale, max(1, thickness // 2))


def _pixels(box: tuple[float, float, float, float], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """A box's pixel slice bounds (rounded outwards), clipped to an image of `shape`."""
    height, width = shape[:2]
    x1, y1 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    return x1, y1, min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))


def _how_long(violation: Violation) -> str:
    """How long it has been there: minutes of dwell, and visits for rules judged across visits."""
    seconds = violation.dwell_seconds
    duration = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
    if violation.seen_in is None:
        return duration
    return f"{violation.seen_in[0]}/{violation.seen_in[1]} visits, {duration}"


def _banner(image: np.ndarray, violation: Violation, text_scale: float, text_thickness: int) -> np.ndarray:
    """A dark band across the top: code, kind, camera, zone and UTC time (Hershey fonts have no CJK glyphs).

    One line when it fits the width; otherwise two (what and when; where), shrunk only if a line still overflows,
    so a long camera id never pushes the time out of a 640-pixel frame.
    """
    entry = taxonomy_kind(violation.kind)
    when = violation.last_seen.strftime("%Y-%m-%d %H:%M:%S UTC")
    preset = f"/{violation.preset_id}" if violation.preset_id else ""
    what, where = f"{entry.code} {entry.name_en}", f"{violation.camera_id}{preset} | {violation.zone}"
    font, room = cv2.FONT_HERSHEY_SIMPLEX, image.shape[1] - 16

    def width(line: str) -> int:
        return int(cv2.getTextSize(line, font, text_scale, text_thickness)[0][0])

    lines = [f"{what} | {where} | {when}"]
    if width(lines[0]) > room:
        lines = [f"{what} | {when}", where]
        text_scale *= min(1.0, room / max(width(line) for line in lines))
    (_, text_height), baseline = cv2.getTextSize(lines[0], font, text_scale, text_thickness)
    step = text_height + baseline + 6
    overlay = image.copy()
    cv2.rectangle(overlay, (0, 0), (image.shape[1], step * len(lines) + 6), (24, 24, 24), thickness=-1)
    image = cv2.addWeighted(overlay, 0.75, image, 0.25, 0)
    for row, line in enumerate(lines):
        origin = (8, 6 + text_height + row * step)
        cv2.putText(image, line, origin, font, text_scale, (255, 255, 255), text_thickness, cv2.LINE_AA)
    return image


def crop(image: np.ndarray, box: tuple[float, float, float, float], *, pad: float = 0.15) -> np.ndarray:
    """The object with some context around it, clipped to the frame."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    pad_x, pad_y = (x2 - x1) * pad, (y2 - y1) * pad
    left, top = max(0, int(x1 - pad_x)), max(0, int(y1 - pad_y))
    right, bottom = min(width, int(np.ceil(x2 + pad_x))), min(height, int(np.ceil(y2 + pad_y)))
    if right <= left or bottom <= top:
        raise ValueError(f"box {box} lies outside the {width}×{height} frame")
    return image[top:bottom, left:right]


def sidecar(violation: Violation) -> bytes:
    """Machine-readable facts about the violation, stored beside its images."""
    entry = taxonomy_kind(violation.kind)
    facts = {
        "camera_id": violation.camera_id,
        "preset_id": violation.preset_id,
        "captured_at": violation.frame.captured_at.isoformat(),
        "frame_sequence": violation.frame.sequence,
        "frame_size": [violation.frame.width, violation.frame.height],
        "kind": entry.key,
        "code": entry.code,
        "name_zh": entry.name_zh,
        "name_en": entry.name_en,
        "rule": violation.rule,
        "zone": violation.zone,
        "zone_polygon": violation.zone_polygon.tolist(),
        "class_name": violation.class_name,
        "confidence": round(violation.confidence, 4),
        "box_xyxy": [round(v, 1) for v in violation.box],
        "track_id": violation.track_id,
        "first_seen": violation.first_seen.isoformat(),
        "last_seen": violation.last_seen.isoformat(),
        "dwell_seconds": round(violation.dwell_seconds, 1),
        "model_version": violation.model_version,
        "seen_in_visits": list(violation.seen_in) if violation.seen_in is not None else None,
        "members": [
            {"class_name": m.class_name, "confidence": round(m.confidence, 4), "box_xyxy": [round(v, 1) for v in m.box]}
            for m in violation.members
        ],
    }
    return json.dumps(facts, ensure_ascii=False, indent=2).encode("utf-8")


def _jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"could not encode a {image.shape} image as JPEG")
    return encoded.tobytes()
