"""The taxonomy: codes as issued, the generated page up to date, and classes as configuration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import supervision as sv

from citywatch.vision import taxonomy
from citywatch.vision.frame import Frame
from citywatch.vision.rules import DwellRule, PresenceRule
from citywatch.vision.scene import PresetScene, WatchedZone
from citywatch.vision.taxonomy import KINDS, Trust
from citywatch.vision.zones import Zone

DOC = Path(__file__).resolve().parents[2] / "docs" / "taxonomy.md"


def test_codes_are_the_ones_of_gbt_47678_5_we_use() -> None:
    codes = sorted(entry.code for entry in KINDS.values())
    expected = ["06010", "06011", "06036", "06042", "07003", "09001", "09005", "09006", "09009", "09010"]
    assert codes == expected
    assert all(entry.name_zh and entry.name_en and entry.evidence for entry in KINDS.values())


def test_trust_is_direct_only_where_a_coco_class_is_the_object() -> None:
    direct = sorted(key for key, entry in KINDS.items() if entry.trust is Trust.DIRECT)
    assert direct == ["motor_vehicle_illegal_parking", "non_motor_vehicle_disorderly_parking"]


def test_the_markdown_page_is_generated_from_the_table() -> None:
    assert DOC.read_text(encoding="utf-8") == taxonomy.markdown(), (
        "docs/taxonomy.md is stale: run `python -m citywatch.vision.taxonomy docs/taxonomy.md`"
    )


def test_a_fine_tuned_model_with_new_class_names_needs_no_code_change() -> None:
    # A made-up model whose classes the taxonomy has never heard of: the rules' classes and kind map them.
    zone = Zone("corner", ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)))
    rules = (
        PresenceRule(name="heaps", kind="exposed_garbage", classes=frozenset({"litter_heap_v7"})),
        DwellRule(
            name="scooters",
            kind="non_motor_vehicle_disorderly_parking",
            classes=frozenset({"shared_scooter"}),
            min_dwell=timedelta(0),
            identity="overlap",
        ),
    )
    scene = PresetScene("cam-9", None, [WatchedZone(zone, rules)])
    detections = sv.Detections(
        xyxy=np.array([[10.0, 10.0, 40.0, 40.0], [60.0, 20.0, 90.0, 50.0], [50.0, 50.0, 70.0, 70.0]]),
        confidence=np.array([0.8, 0.9, 0.9]),
        class_id=np.array([0, 1, 2]),
        data={"class_name": np.array(["litter_heap_v7", "shared_scooter", "pigeon"])},
    )
    image = np.zeros((100, 100, 3), np.uint8)
    fired = scene.observe(Frame(image, "cam-9", None, datetime(2026, 5, 4, tzinfo=UTC)), detections)
    assert sorted((v.code, v.class_name) for v in fired) == [("06010", "litter_heap_v7"), ("09010", "shared_scooter")]
