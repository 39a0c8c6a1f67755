"""Violation kinds that inspectors recognise, with their code in GB/T 47678.5-2026.

One table. For each kind it says which detector classes evidence it and how far to trust that evidence:
`DIRECT` (the class is the thing itself), `COCO_PROXY` (COCO classes that usually go with it, judged by a
combination or persistence rule) or `NEEDS_MODEL` (nothing in COCO: the classes named are those a fine-tuned
model is expected to have). These classes are a starting point for configuration, not a binding: which classes
a rule counts, and which kind it files, is the rule's `classes` and `kind` in the config, so a fine-tuned model
with new class names plugs in without code changes.

`docs/taxonomy.md` is generated from this table: ``python -m citywatch.vision.taxonomy docs/taxonomy.md``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType


class Trust(StrEnum):
    """How directly the detector's classes show the violation."""

    DIRECT = "direct"
    """The detector class is the object itself (a car in a fire lane)."""
    COCO_PROXY = "COCO proxy"
    """COCO classes that usually make up or accompany it (umbrella + table for a stall): weaker evidence."""
    NEEDS_MODEL = "needs a trained model"
    """COCO has nothing for it; the classes are those of a fine-tuned model (see the retraining issue)."""


@dataclass(frozen=True)
class ViolationKind:
    key: str
    code: str
    """Five-digit problem code of GB/T 47678.5-2026 (urban-management problem classification)."""
    name_zh: str
    name_en: str
    trust: Trust
    classes: tuple[str, ...]
    """Detector classes that evidence it: COCO names for DIRECT and COCO_PROXY, a fine-tuned model's otherwise."""
    rule: str
    """The rule type that judges it (dwell, presence, persistence, group)."""
    evidence: str
    """What the evidence is and its known weaknesses, in a sentence an inspector can read."""

    def __post_init__(self) -> None:
        if len(self.code) != 5 or not self.code.isdigit():
            raise ValueError(f"Violation kind {self.key!r}: code must be 5 digits; got {self.code!r}")
        if not self.classes:
            raise ValueError(f"Violation kind {self.key!r}: name at least one evidencing class")
        if self.rule not in ("dwell", "presence", "persistence", "group"):
            raise ValueError(f"Violation kind {self.key!r}: rule is dwell/presence/persistence/group; not {self.rule}")


_KINDS = (
    ViolationKind(
        "exposed_garbage", "06010", "暴露垃圾", "Exposed garbage",
        Trust.NEEDS_MODEL, ("garbage",), "presence",
        "a garbage-trained model's 'garbage' box in the zone; COCO has no such class",
    ),
    ViolationKind(
        "accumulated_garbage", "06011", "积存垃圾渣土", "Accumulated garbage or spoil",
        Trust.NEEDS_MODEL, ("garbage",), "persistence",
        "the same 'garbage' box at the same place in k of the last n visits (a pile that stays, not litter)",
    ),
    ViolationKind(
        "stacked_materials", "06036", "乱堆物料", "Stacked materials",
        Trust.COCO_PROXY, ("suitcase", "bench"), "persistence",
        "weak: COCO 'suitcase'/'bench' staying at one place across visits; no labelled set yet",
    ),
    ViolationKind(
        "overflowing_bin", "06042", "垃圾满溢", "Overflowing garbage station or bin",
        Trust.NEEDS_MODEL, ("overflow",), "presence",
        "a garbage-trained model's 'overflow' box (a bin with waste around or above it)",
    ),
    ViolationKind(
        "illegal_outdoor_advertising", "07003", "违规户外广告", "Illegal outdoor advertising",
        Trust.NEEDS_MODEL, ("advertising_sign",), "persistence",
        "no detector class yet; a fine-tuned 'advertising_sign' persisting across visits",
    ),
    ViolationKind(
        "unlicensed_mobile_vending", "09001", "无照经营游商", "Unlicensed mobile vending",
        Trust.COCO_PROXY, ("person", "umbrella", "bicycle", "motorcycle"), "group",
        "weak: a person with an umbrella or a (cargo) bike or tricycle staying together in a sidewalk zone",
    ),
    ViolationKind(
        "out_of_store_business", "09005", "店外经营", "Out-of-store business",
        Trust.COCO_PROXY, ("dining table", "chair", "umbrella"), "group",
        "medium: tables, chairs or umbrellas together in the zone in front of a shop across visits",
    ),
    ViolationKind(
        "road_occupying_business", "09006", "占道经营", "Road-occupying business",
        Trust.COCO_PROXY, ("umbrella", "dining table", "chair"), "group",
        "medium: at least two of umbrella/table/chair together on a sidewalk zone across visits (a stall)",
    ),
    ViolationKind(
        "motor_vehicle_illegal_parking", "09009", "机动车乱停放", "Motor-vehicle illegal parking",
        Trust.DIRECT, ("car", "truck", "bus"), "dwell",
        "strong: a vehicle whose bottom-centre stays in a no-parking zone (car/truck/bus count as one group)",
    ),
    ViolationKind(
        "non_motor_vehicle_disorderly_parking", "09010", "非机动车乱停放", "Non-motor-vehicle disorderly parking",
        Trust.DIRECT, ("bicycle", "motorcycle"), "dwell",
        "medium: a bicycle or motorcycle staying in a zone (e-bikes often read as motorcycle)",
    ),
)  # fmt: skip

KINDS: MappingProxyType[str, ViolationKind] = MappingProxyType({kind.key: kind for kind in _KINDS})


def kind(key: str) -> ViolationKind:
    """The taxonomy entry for `key`; KeyError lists the known keys."""
    try:
        return KINDS[key]
    except KeyError:
        raise KeyError(f"unknown violation kind {key!r}; known kinds: {', '.join(sorted(KINDS))}") from None


def markdown() -> str:
    """The taxonomy as the Markdown page `docs/taxonomy.md`."""
    lines = [
        "# Violation taxonomy",
        "",
        "<!-- Generated from citywatch/vision/taxonomy.py by `python -m citywatch.vision.taxonomy docs/taxonomy.md`;",
        "     do not edit by hand (a test checks that this page matches the code). -->",
        "",
        "The kinds of urban-management problems citywatch files, with their code in GB/T 47678.5-2026. "
        "*Trust* says how directly the detector sees the problem:",
        "",
        *(f"- **{trust.value}**: {_TRUST_NOTES[trust]}" for trust in Trust),
        "",
        "*Classes* are those that evidence the kind today (COCO names for the shipped model) or that a fine-tuned "
        "model is expected to have. They are a starting point: a rule's `classes` and `kind` in the config say "
        "which detector classes file which kind, so a model with new class names needs no code change.",
        "",
        "| code | key | 中文 | English | trust | classes | rule | evidence |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in sorted(_KINDS, key=lambda k: k.code):
        classes = ", ".join(f"`{c}`" for c in entry.classes)
        lines.append(
            f"| {entry.code} | `{entry.key}` | {entry.name_zh} | {entry.name_en} | {entry.trust.value} | "
            f"{classes} | {entry.rule} | {entry.evidence} |"
        )
    return "\n".join(lines) + "\n"


_TRUST_NOTES = {
    Trust.DIRECT: "the detector class is the object itself",
    Trust.COCO_PROXY: "COCO classes that usually make it up or go with it, judged together or across visits "
    "(weaker: an inspector should look at the picture)",
    Trust.NEEDS_MODEL: "COCO has no class for it; the shipped model cannot file it until a fine-tuned model "
    "with these classes is deployed",
}


def main(argv: list[str]) -> int:
    """Write the Markdown page to the path given, or print it."""
    text = markdown()
    if argv:
        Path(argv[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
