"""One case per problem on SQLite and PostgreSQL: related kinds at one place become one case (a pile by a bin), the
higher kind takes the case, the cooldown covers related kinds, and cases are matched by their first and last box."""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.synchronize
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from citywatch.cases.lifecycle import Action, LifecyclePolicy, Role
from citywatch.cases.queries import NO_RELATED, RelatedKinds
from citywatch.cases.records import Box, box_closeness
from citywatch.cases.store import CaseStore, EvidenceDraft, Observation, ObservationOutcome
from citywatch.cases.workflow import CaseWorkflow
from tests.clock import FakeClock

T0 = datetime(2026, 5, 4, 2, 0, tzinfo=UTC)
GARBAGE = RelatedKinds((("overflowing_bin", "exposed_garbage"),))
# Boxes the garbage model gave on the demo clip's first picture (serving/demo/garbage-demo.mp4 at 0 s, dome-1/bins):
# a pile of bags at the foot of two overflowing bins. IoU pile/bin is only 0.06: the pile is beside the bins.
PILE: Box = (204.0, 177.0, 429.0, 291.0)
LEFT_BIN: Box = (259.0, 74.0, 318.0, 212.0)
RIGHT_BIN: Box = (319.0, 86.0, 377.0, 208.0)
FAR_PILE: Box = (500.0, 300.0, 600.0, 350.0)


def sighting(kind: str, box: Box, minutes: float = 0, **changes: object) -> Observation:
    code, rule, class_name = {
        "exposed_garbage": ("06010", "exposed_garbage", "garbage"),
        "overflowing_bin": ("06042", "overflowing_bin", "overflow"),
        "motor_vehicle_illegal_parking": ("09009", "illegal_parking", "car"),
    }[kind]
    seen = T0 + timedelta(minutes=minutes)
    base = Observation(
        kind=kind,
        code=code,
        camera_id="dome-1",
        preset_id="bins",
        zone="bin-corner",
        rule=rule,
        class_name=class_name,
        confidence=0.8,
        box=box,
        first_seen=seen,
        last_seen=seen,
        model_version="m@1",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def drafts(tag: str) -> list[EvidenceDraft]:
    return [EvidenceDraft(role="annotated", sha256=tag * 64, size=10, content_type="image/jpeg")]


def key_for(case_id: int, draft: EvidenceDraft) -> str:
    return f"cases/{case_id}/{draft.role}-{draft.sha256[:12]}"


def file(
    store: CaseStore, obs: Observation, tag: str = "a", related: RelatedKinds = GARBAGE, min_iou: float = 0.3
) -> ObservationOutcome:
    return store.record_observation(obs, drafts(tag), key_for=key_for, related=related, min_iou=min_iou)


@pytest.fixture
def clock() -> FakeClock[datetime]:
    return FakeClock(T0 + timedelta(hours=1))


@pytest.fixture
def store(database_url: str, clock: FakeClock[datetime]) -> CaseStore:
    return CaseStore.from_url(database_url, clock=clock, policy=LifecyclePolicy(cooldown=timedelta(hours=24)))


def test_a_pile_by_a_bin_is_one_case_garbage_first(store: CaseStore) -> None:
    pile = file(store, sighting("exposed_garbage", PILE), "a")
    overflow = file(store, sighting("overflowing_bin", LEFT_BIN, minutes=1), "b")
    assert pile.created and (overflow.case_id, overflow.created) == (pile.case_id, False)
    assert [e.key for e in overflow.evidence] == [f"cases/{pile.case_id}/annotated-{'b' * 12}"]  # a picture of it

    [case] = store.list_cases()
    assert (case.kind, case.code, case.rule, case.class_name) == (
        "overflowing_bin",
        "06042",
        "overflowing_bin",
        "overflow",
    )
    assert case.also_seen_kinds == ("exposed_garbage",)
    assert case.box == LEFT_BIN and case.observations == 2
    assert (case.first_seen, case.last_seen) == (T0, T0 + timedelta(minutes=1))
    change = CaseWorkflow(store).audit_log(case.id)[-1]
    assert (change.action, change.actor, change.from_state, change.to_state) == (
        "correct_kind",
        "system:filing",
        "auto_filed",
        "auto_filed",
    )
    assert change.details == {
        "old_kind": "exposed_garbage",
        "old_code": "06010",
        "kind": "overflowing_bin",
        "code": "06042",
    }

    # The pile is never filed again while the case is open; the second bin is a second problem.
    again = file(store, sighting("exposed_garbage", PILE, minutes=2), "c")
    assert (again.case_id, again.created, again.evidence) == (case.id, False, ())
    right = file(store, sighting("overflowing_bin", RIGHT_BIN, minutes=2), "d")
    assert right.created
    [first, second] = sorted(store.list_cases(), key=lambda c: c.id)
    assert (first.also_seen_kinds, first.observations, first.box) == (("exposed_garbage",), 3, LEFT_BIN)
    assert (second.kind, second.also_seen_kinds) == ("overflowing_bin", ())


def test_a_pile_by_a_bin_is_one_case_bin_first(store: CaseStore) -> None:
    overflow = file(store, sighting("overflowing_bin", LEFT_BIN), "a")
    pile = file(store, sighting("exposed_garbage", PILE, minutes=1), "b")
    assert (pile.case_id, pile.created, pile.evidence) == (overflow.case_id, False, ())
    [case] = store.list_cases()
    assert (case.kind, case.also_seen_kinds, case.box, case.observations) == (
        "overflowing_bin",
        ("exposed_garbage",),
        LEFT_BIN,
        2,
    )
    assert [e.action for e in CaseWorkflow(store).audit_log(case.id)] == ["file"]  # no kind change
    assert [e.key for e in case.evidence] == [f"cases/{case.id}/annotated-{'a' * 12}"]


def test_a_related_sighting_far_away_is_a_separate_case(store: CaseStore) -> None:
    bin_case = file(store, sighting("overflowing_bin", LEFT_BIN)).case_id
    far = file(store, sighting("exposed_garbage", FAR_PILE, minutes=1), "b")
    assert far.created and far.case_id != bin_case
    elsewhere = file(store, sighting("exposed_garbage", PILE, minutes=1, zone="kerb"), "c")
    assert elsewhere.created  # the same box in another zone is not the same place
    assert {(c.kind, c.also_seen_kinds) for c in store.list_cases()} == {
        ("overflowing_bin", ()),
        ("exposed_garbage", ()),
    }


def test_unrelated_kinds_never_merge(store: CaseStore) -> None:
    car = file(store, sighting("motor_vehicle_illegal_parking", PILE))
    pile = file(store, sighting("exposed_garbage", PILE, minutes=1), "b")
    assert car.created and pile.created
    # Without related kinds (the filer's default) a pile by a bin is two cases, as before.
    pile_alone = file(store, sighting("exposed_garbage", PILE, preset_id="other"), "c", related=NO_RELATED)
    bin_alone = file(store, sighting("overflowing_bin", LEFT_BIN, preset_id="other"), "d", related=NO_RELATED)
    assert pile_alone.created and bin_alone.created
    assert store.count_cases() == 4


def test_a_case_a_person_acted_on_keeps_its_kind(store: CaseStore) -> None:
    pile = file(store, sighting("exposed_garbage", PILE)).case_id
    CaseWorkflow(store).act(pile, Action.REVIEW, actor="li", role=Role.INSPECTOR)
    overflow = file(store, sighting("overflowing_bin", LEFT_BIN, minutes=1), "b")
    assert (overflow.case_id, overflow.created, overflow.evidence) == (pile, False, ())
    case = store.get_case(pile)
    assert case is not None
    assert (case.kind, case.also_seen_kinds, case.box) == ("exposed_garbage", ("overflowing_bin",), PILE)
    assert "correct_kind" not in [e.action for e in CaseWorkflow(store).audit_log(pile)]


def test_the_cooldown_covers_related_kinds(store: CaseStore) -> None:
    pile = file(store, sighting("exposed_garbage", PILE)).case_id
    CaseWorkflow(store).act(pile, Action.REJECT, actor="li", role=Role.INSPECTOR, comment="a shadow")
    overflow = file(store, sighting("overflowing_bin", LEFT_BIN, minutes=1), "b")
    assert (overflow.case_id, overflow.suppressed, overflow.created) == (pile, True, False)
    far = file(store, sighting("overflowing_bin", FAR_PILE, minutes=1), "c")
    assert far.created and not far.suppressed
    assert store.count_cases() == 2


def test_a_drifting_case_leaves_the_other_cases_sighting_alone(store: CaseStore) -> None:
    """Issue 16 item 13: each attachment moves a case's last box, so two open cases of one problem kind drift into
    each other's way. A sighting is matched against each case's first box too."""
    car = "motor_vehicle_illegal_parking"
    b0: Box = (300.0, 100.0, 400.0, 200.0)
    a_case = file(store, sighting(car, (100.0, 100.0, 200.0, 200.0))).case_id
    b_case = file(store, sighting(car, b0), "b").case_id
    assert file(store, sighting(car, (352.0, 100.0, 452.0, 200.0), minutes=1)).case_id == b_case  # IoU 0.32 with b0
    for x in (130.0, 160.0, 190.0, 220.0, 248.15):  # A's last box creeps towards B, 0.54 IoU a step
        assert file(store, sighting(car, (x, 100.0, x + 100.0, 200.0), minutes=2)).case_id == a_case
    a_last = store.get_case(a_case)
    assert a_last is not None and a_last.box[0] == pytest.approx(248.15)
    # The vehicle of case B, where B was filed: IoU 0.35 with A's last box, 0.32 with B's, 1.0 with B's first.
    assert file(store, sighting(car, b0, minutes=3)).case_id == b_case


def test_a_sighting_matching_two_open_cases_attaches_to_the_best(store: CaseStore) -> None:
    car = "motor_vehicle_illegal_parking"
    left = file(store, sighting(car, (100.0, 100.0, 200.0, 200.0))).case_id
    right = file(store, sighting(car, (170.0, 100.0, 270.0, 200.0)), min_iou=0.9).case_id  # a second vehicle
    assert left != right
    # IoU 0.54 with the left case, 0.82 with the right one: the right one.
    assert file(store, sighting(car, (160.0, 100.0, 260.0, 200.0), minutes=1)).case_id == right
    # The same kind ranks before a related kind: a bin box inside a big pile's case (closeness 1.0) still joins
    # the bin case when its IoU there reaches min_iou (0.40).
    bins = file(store, sighting("overflowing_bin", LEFT_BIN, preset_id="p2")).case_id
    heap = file(store, sighting("exposed_garbage", (240.0, 30.0, 390.0, 260.0), preset_id="p2"), related=NO_RELATED)
    assert heap.case_id != bins
    moved = (284.0, 74.0, 343.0, 212.0)
    assert file(store, sighting("overflowing_bin", moved, minutes=1, preset_id="p2")).case_id == bins


def test_box_closeness() -> None:
    assert box_closeness(LEFT_BIN, PILE, 0.0) == pytest.approx((59 * 35) / (59 * 138))  # overlap / the bin
    assert box_closeness(PILE, LEFT_BIN, 0.0) == box_closeness(LEFT_BIN, PILE, 0.0)
    assert box_closeness((0, 0, 10, 10), (12, 0, 22, 10), 0.0) == 0.0  # a gap of 2
    assert box_closeness((0, 0, 10, 10), (12, 0, 22, 10), 0.25) > 0  # within a quarter of the box
    assert box_closeness((0, 0, 10, 10), (16, 0, 26, 10), 0.25) == 0.0
    assert box_closeness((2, 2, 4, 4), (0, 0, 10, 10), 0.0) == 1.0  # inside


def test_related_kinds_refuse_a_kind_in_two_groups() -> None:
    with pytest.raises(ValueError, match="'exposed_garbage' is in related kinds groups 0 and 1"):
        RelatedKinds((("overflowing_bin", "exposed_garbage"), ("accumulated_garbage", "exposed_garbage")))
    with pytest.raises(ValueError, match="two or more different kinds"):
        RelatedKinds((("overflowing_bin",),))
    assert GARBAGE.outranks("overflowing_bin", "exposed_garbage")
    assert not GARBAGE.outranks("exposed_garbage", "overflowing_bin")
    assert not GARBAGE.outranks("overflowing_bin", "motor_vehicle_illegal_parking")
    assert json.dumps(GARBAGE.group("motor_vehicle_illegal_parking")) == '["motor_vehicle_illegal_parking"]'


def _file_pile_or_bin(url: str, kind: str, start: multiprocessing.synchronize.Event) -> None:
    store = CaseStore.from_url(url)
    start.wait()
    for _ in range(6):
        file(store, sighting(kind, PILE if kind == "exposed_garbage" else LEFT_BIN), kind[0])


def test_processes_filing_a_pile_and_its_bin_at_once_make_one_case(database_url: str) -> None:
    """The lock that makes find-then-create atomic across replicas covers the related group, not one kind."""
    CaseStore.from_url(database_url).engine.dispose()  # tables first; no database handle crosses the fork
    context = multiprocessing.get_context("fork")
    start = context.Event()
    kinds = ["exposed_garbage", "overflowing_bin", "exposed_garbage", "overflowing_bin"]
    children = [context.Process(target=_file_pile_or_bin, args=(database_url, kind, start)) for kind in kinds]
    for child in children:
        child.start()
    start.set()
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    [case] = CaseStore.from_url(database_url).list_cases()
    assert (case.kind, case.also_seen_kinds, case.observations) == ("overflowing_bin", ("exposed_garbage",), 24)
