"""Undo (the review page's): one's own last confirm or reject, within the window, back to review, audited."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from citywatch.cases.lifecycle import (
    UNDO_WINDOW,
    Action,
    NotPermitted,
    Role,
    State,
    TransitionRefused,
    UndoRefused,
    transition_for,
)
from citywatch.cases.store import CaseStore
from citywatch.cases.workflow import CaseWorkflow
from tests.cases.test_lifecycle import T0, file
from tests.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock[datetime]:
    return FakeClock(T0)


@pytest.fixture
def store(database_url: str, clock: FakeClock[datetime]) -> CaseStore:
    return CaseStore.from_url(database_url, clock=clock)


@pytest.fixture
def workflow(store: CaseStore) -> CaseWorkflow:
    return CaseWorkflow(store)


@pytest.mark.parametrize(("action", "comment"), [(Action.CONFIRM, ""), (Action.REJECT, "false detection")])
def test_undo_returns_a_reviewed_case_to_review_with_an_audit_line(
    store: CaseStore, workflow: CaseWorkflow, clock: FakeClock[datetime], action: Action, comment: str
) -> None:
    case_id = file(store)
    workflow.act(case_id, action, actor="ann", role=Role.INSPECTOR, comment=comment)
    clock.now += UNDO_WINDOW - timedelta(seconds=1)
    undone = workflow.act(case_id, Action.UNDO, actor="ann", role=Role.INSPECTOR)
    assert undone.state == State.UNDER_REVIEW
    assert undone.closed_at is None
    log = workflow.audit_log(case_id)
    assert [e.action for e in log] == ["file", action.value, "undo"]
    assert log[-1].details == {"undoes": log[1].id}
    assert (log[-1].from_state, log[-1].to_state) == (log[1].to_state, State.UNDER_REVIEW)
    # reviewed again afterwards, like any case under review
    assert workflow.act(case_id, Action.CONFIRM, actor="ann", role=Role.INSPECTOR).state == State.CONFIRMED


def test_undo_is_refused_for_someone_else_too_late_twice_or_for_a_viewer(
    store: CaseStore, workflow: CaseWorkflow, clock: FakeClock[datetime]
) -> None:
    case_id = file(store)
    workflow.act(case_id, Action.CONFIRM, actor="ann", role=Role.INSPECTOR)
    with pytest.raises(UndoRefused, match="only they may undo"):
        workflow.act(case_id, Action.UNDO, actor="bob", role=Role.INSPECTOR)
    with pytest.raises(NotPermitted):
        transition_for(State.CONFIRMED, Action.UNDO, Role.VIEWER)
    clock.now += UNDO_WINDOW + timedelta(seconds=1)
    with pytest.raises(UndoRefused, match="supervisor can reopen"):
        workflow.act(case_id, Action.UNDO, actor="ann", role=Role.INSPECTOR)

    other = file(store, zone="other-zone")
    workflow.act(other, Action.REJECT, actor="ann", role=Role.INSPECTOR, comment="no car")
    workflow.act(other, Action.UNDO, actor="ann", role=Role.INSPECTOR)
    with pytest.raises(TransitionRefused, match="cannot undo a case that is under_review"):  # nothing to undo
        workflow.act(other, Action.UNDO, actor="ann", role=Role.INSPECTOR)
    workflow.act(other, Action.CONFIRM, actor="ann", role=Role.INSPECTOR)
    workflow.comment(other, text="seen on site", actor="ann", role=Role.INSPECTOR)
    with pytest.raises(UndoRefused, match="not a confirm or reject"):  # a later line stands in the way
        workflow.act(other, Action.UNDO, actor="ann", role=Role.INSPECTOR)
    assert store.get_case(other).state == State.CONFIRMED  # type: ignore[union-attr]


def test_dispatch_records_its_target(store: CaseStore, workflow: CaseWorkflow) -> None:
    case_id = file(store)
    workflow.act(case_id, Action.CONFIRM, actor="ann", role=Role.INSPECTOR)
    workflow.act(case_id, Action.DISPATCH, actor="sue", role=Role.SUPERVISOR, details={"target": "城管一中队"})
    assert workflow.audit_log(case_id)[-1].details == {"target": "城管一中队"}
