"""The case workflow on SQLite and PostgreSQL: the transition table, roles, stage limits, cooldown, audit log."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from citywatch.cases.lifecycle import (
    TRANSITIONS,
    Action,
    CommentRequired,
    LifecycleError,
    LifecyclePolicy,
    NotPermitted,
    Role,
    State,
    TransitionRefused,
    allowed_actions,
    transition_for,
)
from citywatch.cases.store import CaseFilter, CaseStore
from citywatch.cases.workflow import CaseNotFound, CaseWorkflow
from tests.cases.test_store import T0, observation
from tests.clock import FakeClock

OBSERVATION = observation(model_version="")


@pytest.fixture
def clock() -> FakeClock[datetime]:
    return FakeClock(T0)


@pytest.fixture
def store(database_url: str, clock: FakeClock[datetime]) -> CaseStore:
    policy = LifecyclePolicy(
        stage_limits={State.AUTO_FILED: timedelta(hours=2), State.DISPATCHED: timedelta(hours=48)},
        cooldown=timedelta(hours=1),
    )
    return CaseStore.from_url(database_url, clock=clock, policy=policy)


@pytest.fixture
def workflow(store: CaseStore) -> CaseWorkflow:
    return CaseWorkflow(store)


def file(store: CaseStore, **changes: object) -> int:
    outcome = store.record_observation(replace(OBSERVATION, **changes), [], key_for=lambda _i, _d: "")  # type: ignore[arg-type]
    return outcome.case_id


# -- the table, without a database ---------------------------------------------------------------------------


def test_every_state_but_closed_ones_can_move_and_every_target_is_reachable() -> None:
    sources = {t.source for t in TRANSITIONS}
    targets = {t.target for t in TRANSITIONS}
    assert set(State) - {State.AUTO_FILED} <= targets
    assert set(State) <= sources | {State.CLOSED}


@pytest.mark.parametrize(
    ("state", "action", "role", "comment", "error"),
    [
        (State.AUTO_FILED, Action.CLOSE, Role.ADMIN, "", TransitionRefused),  # not before verification
        (State.CONFIRMED, Action.CONFIRM, Role.ADMIN, "", TransitionRefused),
        (State.CLOSED, Action.DISPATCH, Role.ADMIN, "", TransitionRefused),
        (State.AUTO_FILED, Action.CONFIRM, Role.VIEWER, "", NotPermitted),
        (State.AUTO_FILED, Action.CONFIRM, Role.SERVICE, "", NotPermitted),
        (State.CONFIRMED, Action.DISPATCH, Role.INSPECTOR, "", NotPermitted),
        (State.VERIFIED, Action.CLOSE, Role.INSPECTOR, "", NotPermitted),
        (State.CLOSED, Action.REOPEN, Role.INSPECTOR, "why", NotPermitted),
        (State.AUTO_FILED, Action.REJECT, Role.INSPECTOR, "  ", CommentRequired),
        (State.CLOSED, Action.REOPEN, Role.SUPERVISOR, "", CommentRequired),
        ("bogus", Action.REVIEW, Role.ADMIN, "", TransitionRefused),
    ],
)
def test_refusals(state: str, action: Action, role: Role, comment: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        transition_for(state, action, role, comment)


def test_refusal_lists_what_is_possible() -> None:
    with pytest.raises(TransitionRefused, match=r"possible: dispatch"):
        transition_for(State.CONFIRMED, Action.CLOSE, Role.ADMIN)
    assert allowed_actions(State.AUTO_FILED, Role.VIEWER) == []
    assert allowed_actions(State.AUTO_FILED, Role.INSPECTOR) == [Action.REVIEW, Action.CONFIRM, Action.REJECT]


# -- in the database -----------------------------------------------------------------------------------------


def test_full_workflow_is_audited_with_stage_deadlines(
    store: CaseStore, workflow: CaseWorkflow, clock: FakeClock[datetime]
) -> None:
    case_id = file(store)
    filed = store.get_case(case_id)
    assert filed is not None
    assert (filed.state, filed.due_at) == ("auto_filed", T0 + timedelta(hours=2))
    steps = [
        (Action.REVIEW, Role.INSPECTOR, "ana", "", "under_review", None),
        (Action.CONFIRM, Role.INSPECTOR, "ana", "car on fire lane", "confirmed", None),
        (Action.DISPATCH, Role.SUPERVISOR, "bo", "", "dispatched", timedelta(hours=48)),
        (Action.HANDLE, Role.INSPECTOR, "ana", "towed", "handled", None),
        (Action.VERIFY, Role.INSPECTOR, "ana", "", "verified", None),
        (Action.CLOSE, Role.SUPERVISOR, "bo", "", "closed", None),
    ]
    for minute, (action, role, actor, comment, state, limit) in enumerate(steps, start=1):
        clock.now = T0 + timedelta(minutes=minute)
        case = workflow.act(case_id, action, actor=actor, role=role, comment=comment)
        assert case.state == state
        assert case.state_changed_at == clock.now
        assert case.due_at == (None if limit is None else clock.now + limit)
    assert case.closed_at == T0 + timedelta(minutes=6)
    log = workflow.audit_log(case_id)
    assert [(e.action, e.from_state, e.to_state) for e in log] == [
        ("file", None, "auto_filed"),
        ("review", "auto_filed", "under_review"),
        ("confirm", "under_review", "confirmed"),
        ("dispatch", "confirmed", "dispatched"),
        ("handle", "dispatched", "handled"),
        ("verify", "handled", "verified"),
        ("close", "verified", "closed"),
    ]
    assert log[0].actor == "camera:gate-3" and log[0].details["rule"] == "illegal_parking"
    assert [e.actor for e in log[1:]] == ["ana", "ana", "bo", "ana", "ana", "bo"]
    assert log[2].comment == "car on fire lane"
    assert [e.at for e in log[1:]] == [T0 + timedelta(minutes=m) for m in range(1, 7)]


def test_refused_action_changes_nothing(store: CaseStore, workflow: CaseWorkflow) -> None:
    case_id = file(store)
    with pytest.raises(TransitionRefused):
        workflow.act(case_id, Action.CLOSE, actor="bo", role=Role.SUPERVISOR)
    with pytest.raises(NotPermitted):
        workflow.act(case_id, Action.CONFIRM, actor="vi", role=Role.VIEWER)
    with pytest.raises(CaseNotFound):
        workflow.act(999_999, Action.CONFIRM, actor="ana", role=Role.INSPECTOR)
    case = store.get_case(case_id)
    assert case is not None and case.state == "auto_filed"
    assert [e.action for e in workflow.audit_log(case_id)] == ["file"]


def test_correct_kind_and_comment_are_audited(store: CaseStore, workflow: CaseWorkflow) -> None:
    case_id = file(store)
    case = workflow.correct_kind(
        case_id, kind="road_occupying_business", code="09001", actor="ana", role=Role.INSPECTOR, comment="a stall"
    )
    assert (case.kind, case.code, case.state) == ("road_occupying_business", "09001", "auto_filed")
    workflow.comment(case_id, text="owner warned", actor="ana", role=Role.INSPECTOR)
    with pytest.raises(NotPermitted):
        workflow.comment(case_id, text="hi", actor="vi", role=Role.VIEWER)
    with pytest.raises(LifecycleError, match="already has kind"):
        workflow.correct_kind(case_id, kind="road_occupying_business", code="09001", actor="a", role=Role.ADMIN)
    correction, note = workflow.audit_log(case_id)[1:]
    assert correction.action == "correct_kind"
    assert correction.details == {
        "old_kind": "motor_vehicle_illegal_parking",
        "old_code": "09009",
        "kind": "road_occupying_business",
        "code": "09001",
    }
    assert (note.action, note.comment, note.actor) == ("comment", "owner warned", "ana")


def test_audit_log_is_append_only_in_the_database(store: CaseStore, workflow: CaseWorkflow) -> None:
    case_id = file(store)
    for statement in ("UPDATE case_audit SET actor = 'mallory'", "DELETE FROM case_audit"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), store.engine.begin() as connection:
            connection.execute(sa.text(statement))
    assert [e.actor for e in workflow.audit_log(case_id)] == ["camera:gate-3"]


@pytest.mark.parametrize("ending", [Action.REJECT, Action.CLOSE])
def test_cooldown_after_closing(
    store: CaseStore, workflow: CaseWorkflow, clock: FakeClock[datetime], ending: Action
) -> None:
    case_id = file(store)
    if ending == Action.REJECT:
        workflow.act(case_id, Action.REJECT, actor="ana", role=Role.INSPECTOR, comment="shadow, not a car")
    else:
        for action in (Action.CONFIRM, Action.DISPATCH, Action.HANDLE, Action.VERIFY, Action.CLOSE):
            workflow.act(case_id, action, actor="bo", role=Role.SUPERVISOR)
    clock.now = T0 + timedelta(minutes=59)
    again = store.record_observation(OBSERVATION, [], key_for=lambda _i, _d: "")
    assert (again.case_id, again.created, again.suppressed) == (case_id, False, True)
    elsewhere = store.record_observation(replace(OBSERVATION, zone="crosswalk"), [], key_for=lambda _i, _d: "")
    assert elsewhere.created  # another problem is not held back
    clock.now = T0 + timedelta(minutes=61)
    later = store.record_observation(OBSERVATION, [], key_for=lambda _i, _d: "")
    assert later.created and later.case_id not in {case_id, elsewhere.case_id}
    closed = store.get_case(case_id)
    assert closed is not None and closed.observations == 1  # the closed case was not touched


def test_reopened_case_absorbs_observations_again(store: CaseStore, workflow: CaseWorkflow) -> None:
    case_id = file(store)
    workflow.act(case_id, Action.REJECT, actor="ana", role=Role.INSPECTOR, comment="looked wrong")
    case = workflow.act(case_id, Action.REOPEN, actor="bo", role=Role.SUPERVISOR, comment="it was right")
    assert (case.state, case.closed_at) == ("reopened", None)
    outcome = store.record_observation(OBSERVATION, [], key_for=lambda _i, _d: "")
    assert (outcome.case_id, outcome.created, outcome.suppressed) == (case_id, False, False)


@pytest.mark.parametrize(("overdue", "expected"), [(True, {"late"}), (False, {"fresh", "nolimit"}), (None, None)])
def test_overdue_filter(
    store: CaseStore,
    workflow: CaseWorkflow,
    clock: FakeClock[datetime],
    overdue: bool | None,
    expected: set[str] | None,
) -> None:
    late = file(store, zone="late")
    clock.now = T0 + timedelta(hours=1, minutes=30)
    fresh = file(store, zone="fresh")
    nolimit = file(store, zone="nolimit")
    workflow.act(nolimit, Action.REVIEW, actor="ana", role=Role.INSPECTOR)  # under_review has no limit here
    clock.now = T0 + timedelta(hours=2, minutes=1)
    zones = {c.zone for c in store.list_cases(CaseFilter(overdue=overdue))}
    assert zones == (expected or {"late", "fresh", "nolimit"})
    assert store.count_cases(CaseFilter(overdue=overdue)) == len(zones)
    assert {late, fresh, nolimit}
