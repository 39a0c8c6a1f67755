"""Violation kinds that inspectors recognise, with their code in GB/T 47678.5-2026.

Which detector classes evidence a kind is configuration (a rule's `classes`), so a fine-tuned model with new
classes plugs in without code changes. `evidence` says what the shipped COCO model can actually see, so an
inspector knows how far to trust a case of that kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class ViolationKind:
    key: str
    code: str
    """Five-digit problem code of GB/T 47678.5-2026 (urban-management problem classification)."""
    name_zh: str
    name_en: str
    evidence: str
    """Which detector classes evidence this kind today, and how direct that evidence is."""

    def __post_init__(self) -> None:
        if len(self.code) != 5 or not self.code.isdigit():
            raise ValueError(f"Violation kind {self.key!r}: code must be 5 digits; got {self.code!r}")


_KINDS = (
    ViolationKind(
        "exposed_garbage",
        "06010",
        "暴露垃圾",
        "Exposed garbage",
        "needs a garbage-trained model (class 'garbage'); COCO has no such class",
    ),
    ViolationKind(
        "accumulated_garbage",
        "06011",
        "积存垃圾渣土",
        "Accumulated garbage or spoil",
        "needs a garbage-trained model (class 'garbage' persisting across visits)",
    ),
    ViolationKind(
        "stacked_materials",
        "06036",
        "乱堆物料",
        "Stacked materials",
        "no labelled set yet; proxy: COCO 'suitcase'/'bench' persisting across visits (weak)",
    ),
    ViolationKind(
        "overflowing_bin",
        "06042",
        "垃圾满溢",
        "Overflowing garbage station or bin",
        "needs a garbage-trained model (class 'overflow')",
    ),
    ViolationKind(
        "illegal_outdoor_advertising",
        "07003",
        "违规户外广告",
        "Illegal outdoor advertising",
        "no detector class yet",
    ),
    ViolationKind(
        "unlicensed_mobile_vending",
        "09001",
        "无照经营游商",
        "Unlicensed mobile vending",
        "proxy: COCO 'person' with 'umbrella'/'handbag'/'bicycle' staying in a sidewalk zone (weak)",
    ),
    ViolationKind(
        "out_of_store_business",
        "09005",
        "店外经营",
        "Out-of-store business",
        "proxy: COCO 'dining table'/'chair'/'umbrella' in the zone in front of a shop across visits (medium)",
    ),
    ViolationKind(
        "road_occupying_business",
        "09006",
        "占道经营",
        "Road-occupying business",
        "proxy: COCO 'umbrella'/'dining table'/'chair' together on a sidewalk zone across visits (medium)",
    ),
    ViolationKind(
        "motor_vehicle_illegal_parking",
        "09009",
        "机动车乱停放",
        "Motor-vehicle illegal parking",
        "direct: COCO 'car'/'truck'/'bus' whose bottom-centre stays in a no-parking zone (strong)",
    ),
    ViolationKind(
        "non_motor_vehicle_disorderly_parking",
        "09010",
        "非机动车乱停放",
        "Non-motor-vehicle disorderly parking",
        "direct: COCO 'bicycle'/'motorcycle' staying in a zone (medium: e-bikes often read as motorcycle)",
    ),
)

KINDS: MappingProxyType[str, ViolationKind] = MappingProxyType({kind.key: kind for kind in _KINDS})


def kind(key: str) -> ViolationKind:
    """The taxonomy entry for `key`; KeyError lists the known keys."""
    try:
        return KINDS[key]
    except KeyError:
        raise KeyError(f"unknown violation kind {key!r}; known kinds: {', '.join(sorted(KINDS))}") from None
