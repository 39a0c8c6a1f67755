"""A dataset from reviewed cases: real SQLite store, real S3 evidence (SeaweedFS), the real filer and workflow."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from citywatch.cases.evidence import EvidenceStore
from citywatch.cases.filing import CaseFiler
from citywatch.cases.lifecycle import Action, Role
from citywatch.cases.queries import RelatedKinds
from citywatch.cases.spool import EvidenceSpool
from citywatch.cases.store import CaseStore
from citywatch.cases.workflow import CaseWorkflow
from citywatch.datasets.builder import build_dataset
from citywatch.datasets.recipe import RecipeError, load_recipe
from citywatch.datasets.validate import DropReason
from citywatch.stack.s3 import S3Endpoint
from citywatch.vision.evidence import render_evidence
from citywatch.vision.frame import Frame
from citywatch.vision.taxonomy import kind as taxonomy_kind
from citywatch.vision.violation import Violation

T0 = datetime(2026, 5, 4, 2, 0, tzinfo=UTC)
BOX = (32.0, 40.0, 80.0, 88.0)  # in a 128×96 frame: cx 0.4375, cy 0.667, w 0.375, h 0.5
PARKING, STALL, GARBAGE = "motor_vehicle_illegal_parking", "road_occupying_business", "exposed_garbage"
INSPECTOR: dict[str, Any] = {"actor": "wang", "role": Role.INSPECTOR}


def scene(seed: int) -> np.ndarray:
    """A smooth random street picture: different seeds are different scenes to dHash."""
    small = np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (128, 96), interpolation=cv2.INTER_CUBIC)


def violation(camera: str, seed: int, *, kind: str = PARKING, zone: str = "lane") -> Violation:
    return Violation(
        kind=kind,
        code=taxonomy_kind(kind).code,
        rule="r",
        zone=zone,
        class_name="car",
        confidence=0.8,
        box=BOX,
        first_seen=T0,
        last_seen=T0 + timedelta(minutes=6),
        frame=Frame(scene(seed), camera, "main", T0, seed),
        zone_polygon=np.array([[0, 0], [127, 0], [127, 95]], dtype=np.int32),
    )


@pytest.fixture
def seeded(s3_server: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, dict[str, int]]:
    """Cases filed and reviewed; returns (database URL, bucket, case ids by name)."""
    bucket = f"cw-ds-{uuid.uuid4().hex[:12]}"
    evidence = EvidenceStore.from_endpoint(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, bucket)
    evidence.ensure_bucket()
    url = f"sqlite:///{tmp_path / 'cases.db'}"
    store = CaseStore.from_url(url)
    filer = CaseFiler(store, evidence, EvidenceSpool(tmp_path / "spool"))

    def file(v: Violation) -> int:
        images = {role: (item.data, item.content_type) for role, item in render_evidence(v).items()}
        return filer.file(v, images).case_id

    ids = {
        "confirmed": file(violation("cam-a", 1)),
        "corrected": file(violation("cam-b", 2)),
        "rejected": file(violation("cam-c", 3)),
        "unreviewed": file(violation("cam-d", 4)),
        "duplicate": file(violation("cam-a", 1, zone="sidewalk")),  # the same picture as "confirmed"
        "closed_rejected": file(violation("cam-d", 5, zone="sidewalk")),
        "unmapped_kind": file(violation("cam-c", 6, kind=GARBAGE)),
    }
    workflow = CaseWorkflow(store)
    workflow.act(ids["confirmed"], Action.CONFIRM, **INSPECTOR)
    workflow.correct_kind(ids["corrected"], kind=STALL, code=taxonomy_kind(STALL).code, **INSPECTOR)
    workflow.act(ids["corrected"], Action.CONFIRM, **INSPECTOR)
    workflow.act(ids["corrected"], Action.DISPATCH, actor="li", role=Role.SUPERVISOR)
    workflow.act(ids["rejected"], Action.REJECT, comment="a delivery van loading", **INSPECTOR)
    workflow.act(ids["duplicate"], Action.CONFIRM, **INSPECTOR)
    workflow.act(ids["closed_rejected"], Action.REJECT, comment="permitted", **INSPECTOR)
    workflow.act(ids["closed_rejected"], Action.CLOSE, actor="li", role=Role.SUPERVISOR)
    workflow.act(ids["unmapped_kind"], Action.CONFIRM, **INSPECTOR)
    monkeypatch.setenv("CW_TEST_S3_KEY", s3_server.access_key)
    monkeypatch.setenv("CW_TEST_S3_SECRET", s3_server.secret_key)
    return url, bucket, ids


def write_recipe(tmp_path: Path, database: str, endpoint: str, bucket: str) -> Path:
    recipe = {
        "name": "street-v1",
        "names": ["vehicle", "stall"],
        "sources": [
            {
                "name": "reviewed",
                "kind": "cases",
                "database": database,
                "evidence": {
                    "endpoint": endpoint,
                    "bucket": bucket,
                    "access_key": "${CW_TEST_S3_KEY}",
                    "secret_key": "${CW_TEST_S3_SECRET}",
                },
                "class_map": {PARKING: "vehicle", STALL: "stall", GARBAGE: None},
            }
        ],
        "split": {"fractions": {"train": 0.5, "val": 0.5}, "seed": 0},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_dataset_from_reviewed_cases(
    seeded: tuple[str, str, dict[str, int]], s3_server: S3Endpoint, tmp_path: Path
) -> None:
    database, bucket, ids = seeded
    result = build_dataset(load_recipe(write_recipe(tmp_path, database, s3_server.endpoint, bucket)), tmp_path / "out")
    out = result.root

    labels: dict[int, tuple[str, str]] = {}  # case id → (split, label text)
    for label in sorted((out / "labels").rglob("*.txt")):
        case_id = int(label.stem.split("__case-")[1].split("-")[0])
        assert (out / "images" / label.parent.name / f"{label.stem}.jpg").is_file()
        labels[case_id] = (label.parent.name, label.read_text())
    assert sorted(labels) == sorted([ids["confirmed"], ids["corrected"], ids["rejected"], ids["closed_rejected"]])
    assert labels[ids["confirmed"]][1] == "0 0.437500 0.666667 0.375000 0.500000\n"
    assert labels[ids["corrected"]][1].startswith("1 ")  # the inspector's kind (stall), not the filed parking
    assert labels[ids["rejected"]][1] == "" and labels[ids["closed_rejected"]][1] == ""  # hard negatives

    cameras = {
        "cam-a": {ids["confirmed"]},
        "cam-b": {ids["corrected"]},
        "cam-c": {ids["rejected"]},
        "cam-d": {ids["closed_rejected"]},
    }
    for camera, case_ids in cameras.items():
        assert len({labels[i][0] for i in case_ids}) == 1, f"{camera} is in two splits"
    assert {split for split, _ in labels.values()} == {"train", "val"}

    (duplicate,) = [d for d in result.drops if d.reason is DropReason.NEAR_DUPLICATE]
    assert duplicate.item.startswith(f"case-{ids['duplicate']:07d}-")

    (source,) = result.manifest.sources
    assert (source.name, source.kind, source.path) == ("reviewed", "cases", database)
    assert (source.images_read, source.images_kept, source.boxes_kept) == (5, 4, 2)
    assert result.manifest.splits["train"].images + result.manifest.splits["val"].images == 4


def test_recipe_needs_its_environment_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CW_TEST_S3_KEY", raising=False)
    path = write_recipe(tmp_path, "sqlite:///x.db", "127.0.0.1:1", "b")
    with pytest.raises(RecipeError, match="CW_TEST_S3_KEY"):
        load_recipe(path)


def test_a_set_of_a_merged_related_kind_is_left_out(
    s3_server: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pile filed as exposed garbage, then its bin's overflow took the case (`filing → related_kinds`): only the
    overflow's evidence set becomes an overflow label; the pile's set is left out, not labelled as a bin."""
    bucket = f"cw-ds-{uuid.uuid4().hex[:12]}"
    evidence = EvidenceStore.from_endpoint(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, bucket)
    evidence.ensure_bucket()
    database = f"sqlite:///{tmp_path / 'cases.db'}"
    store = CaseStore.from_url(database)
    related = RelatedKinds((("overflowing_bin", GARBAGE),))
    filer = CaseFiler(store, evidence, EvidenceSpool(tmp_path / "spool"), related=related)
    overflow = replace(
        violation("cam-e", 8, kind="overflowing_bin"),
        box=(40.0, 30.0, 90.0, 80.0),
        last_seen=T0 + timedelta(minutes=30),
    )
    ids = set()
    for v in (violation("cam-e", 7, kind=GARBAGE), overflow):
        ids.add(filer.file(v, {r: (i.data, i.content_type) for r, i in render_evidence(v).items()}).case_id)
    (case_id,) = ids
    case = store.get_case(case_id)
    assert case is not None and (case.kind, case.also_seen_kinds) == ("overflowing_bin", (GARBAGE,))
    CaseWorkflow(store).act(case_id, Action.CONFIRM, **INSPECTOR)
    monkeypatch.setenv("CW_TEST_S3_KEY", s3_server.access_key)
    monkeypatch.setenv("CW_TEST_S3_SECRET", s3_server.secret_key)
    recipe = yaml.safe_load(write_recipe(tmp_path, database, s3_server.endpoint, bucket).read_text())
    recipe["names"] = ["garbage", "overflow"]
    recipe["sources"][0]["class_map"] = {GARBAGE: "garbage", "overflowing_bin": "overflow"}
    recipe["split"] = {"fractions": {"train": 1.0}, "seed": 0}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))

    result = build_dataset(load_recipe(tmp_path / "recipe.yaml"), tmp_path / "out")
    (label,) = (result.root / "labels").rglob("*.txt")
    assert label.read_text() == "1 0.507812 0.572917 0.390625 0.520833\n"  # the bin's box, as overflow
    (left_out,) = [d for d in result.drops if d.reason is DropReason.UNMAPPED_CLASS]
    assert "its box shows exposed_garbage, a related kind merged" in left_out.detail
