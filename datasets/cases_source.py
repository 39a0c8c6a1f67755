"""Reviewed enforcement cases as a dataset source (issue 8): inspectors' verdicts become labels.

- A confirmed case (confirmed, dispatched, handled, verified, or closed after verification) is a positive: its
  frame with one box of its *current* kind, which is the inspector's corrected kind when the kind was corrected
  (`CaseWorkflow.correct_kind` rewrites the case row and writes the audit line).
  A set filed for a related kind merged into the case (a pile of garbage before its bin's overflow took the
  case, `filing → related_kinds`) shows that kind's box: it is left out.
- A rejected case (rejected, or closed after rejection) is a hard negative: its frame with an empty label file.
  Only kinds the recipe maps onto a model class give either: a rejected parking case teaches a garbage model
  nothing. Caveat: the whole frame becomes background, so a camera whose frames also show true objects of the
  model's classes should not feed negatives to that model (the recipe can leave the kind out).
- Cases not yet reviewed (auto_filed, under_review, reopened) and device cases (no frame) are skipped.

Each evidence set of a case (one per `evidence_every` while it stayed open) gives one image: the untouched
`frame` object from the evidence store, with the box from the same set's `sidecar`. The case row's box follows
the latest sighting, which need not be a frame that was kept, so the sidecar is the box that fits the picture.
Near-duplicate sets (a car standing still) are removed by the builder's dHash pass. The group is the camera id,
so no camera is in two splits.

The database is opened without migrating it: building a dataset never changes the case store.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime

import cv2
import numpy as np

from citywatch.cases.evidence import EvidenceNotFound, EvidenceStore
from citywatch.cases.lifecycle import Action, State
from citywatch.cases.records import CaseRecord, EvidenceRecord
from citywatch.cases.store import CaseStore
from citywatch.cases.workflow import CaseWorkflow
from citywatch.datasets.recipe import CasesSourceConfig, DatasetRecipe
from citywatch.datasets.sample import Sample
from citywatch.datasets.validate import Drop, DropReason, check_labels

__all__ = ["CaseReviewSource", "verdict"]

POSITIVE_STATES = frozenset({State.CONFIRMED, State.DISPATCHED, State.HANDLED, State.VERIFIED})
_PAGE = 500


def verdict(case: CaseRecord, workflow: CaseWorkflow) -> bool | None:
    """True: confirmed (a positive); False: rejected (a hard negative); None: not reviewed (left out).

    A closed case is judged by the state it was closed from (verified or rejected), read from its audit log.
    """
    if case.state in POSITIVE_STATES:
        return True
    if case.state == State.REJECTED:
        return False
    if case.state == State.CLOSED:
        closes = [e for e in workflow.audit_log(case.id) if e.action == Action.CLOSE.value]
        if closes:
            return {State.VERIFIED.value: True, State.REJECTED.value: False}.get(closes[-1].from_state or "")
    return None


class CaseReviewSource:
    """The reviewed cases of one case store, as samples on a recipe's classes."""

    def __init__(
        self,
        name: str,
        store: CaseStore,
        evidence: EvidenceStore,
        class_ids: Mapping[str, int | None],
    ) -> None:
        """`class_ids`: case kind → model class id (None or absent: cases of that kind are left out)."""
        self.name = name
        self.store = store
        self.evidence = evidence
        self.class_ids = dict(class_ids)
        self.workflow = CaseWorkflow(store)

    @classmethod
    def from_config(cls, config: CasesSourceConfig, recipe: DatasetRecipe) -> CaseReviewSource:
        store = CaseStore.from_url(config.database, migrate=False)  # read what is there
        s3 = config.evidence
        evidence = EvidenceStore.from_endpoint(s3.endpoint, s3.access_key, s3.secret_key, s3.bucket, secure=s3.secure)
        return cls(config.name, store, evidence, recipe.class_ids(config))

    def cases(self) -> Iterator[CaseRecord]:
        """Every case, oldest first."""
        found: list[CaseRecord] = []
        while page := self.store.list_cases(limit=_PAGE, offset=len(found)):
            found.extend(page)
        yield from sorted({case.id: case for case in found}.values(), key=lambda case: case.id)

    def samples(self, report: Callable[[Drop], None]) -> Iterator[Sample]:
        """One sample per kept evidence set of each reviewed case; everything left out goes to `report`."""
        for case in self.cases():
            if case.source != "camera":
                continue
            class_id = self.class_ids.get(case.kind)
            if class_id is None:
                continue  # a kind the model does not learn: neither label nor negative
            positive = verdict(case, self.workflow)
            if positive is None:
                continue
            for captured_at, roles in _evidence_sets(case).items():
                sample = self._sample(case, captured_at, roles, class_id if positive else None, report)
                if sample is not None:
                    yield sample

    def _sample(
        self,
        case: CaseRecord,
        captured_at: datetime,
        roles: Mapping[str, EvidenceRecord],
        class_id: int | None,
        report: Callable[[Drop], None],
    ) -> Sample | None:
        item = f"case-{case.id:07d}-{captured_at:%Y%m%dT%H%M%S%f}"
        frame = roles.get("frame")
        if frame is None or (class_id is not None and "sidecar" not in roles):
            report(Drop(self.name, item, DropReason.UNREADABLE_IMAGE, "evidence set lacks its frame or sidecar"))
            return None
        try:
            data = self.evidence.get(frame.key)
        except EvidenceNotFound:
            report(Drop(self.name, item, DropReason.UNREADABLE_IMAGE, f"no evidence object {frame.key}"))
            return None
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            report(Drop(self.name, item, DropReason.UNREADABLE_IMAGE, f"cv2 cannot decode {frame.key}"))
            return None
        labels = np.zeros((0, 5), dtype=np.float64)
        if class_id is not None:
            facts = json.loads(self.evidence.get(roles["sidecar"].key))
            seen = facts.get("kind")
            if seen != case.kind and seen in case.also_seen_kinds:
                why = f"its box shows {seen}, a related kind merged into this {case.kind} case"
                report(Drop(self.name, item, DropReason.UNMAPPED_CLASS, why))
                return None
            height, width = image.shape[:2]
            x1, y1, x2, y2 = (float(v) for v in facts["box_xyxy"])
            line = f"0 {(x1 + x2) / 2 / width} {(y1 + y2) / 2 / height} {(x2 - x1) / width} {(y2 - y1) / height}"
            # the same checks (clipping, degenerate and outside boxes) as every other source's labels
            labels, drops = check_labels(
                line,
                image_size=(height, width),
                source_names=(case.kind,),
                class_map={case.kind: class_id},
                source=self.name,
                item=item,
            )
            for drop in drops:
                report(drop)
            if len(labels) == 0:
                return None  # a positive whose box was refused would teach "nothing here"
        return Sample(
            source=self.name,
            item=item,
            suffix=".jpg" if frame.content_type == "image/jpeg" else ".png",
            read=lambda: data,
            image=image,
            labels=labels,
            group=f"camera/{case.camera_id}",
            split=None,
        )


def _evidence_sets(case: CaseRecord) -> dict[datetime, dict[str, EvidenceRecord]]:
    """The case's evidence by set (the roles of one set share their capture time), only uploaded objects."""
    sets: dict[datetime, dict[str, EvidenceRecord]] = defaultdict(dict)
    for record in case.evidence:
        if record.uploaded:
            sets[record.captured_at][record.role] = record
    return dict(sorted(sets.items()))
