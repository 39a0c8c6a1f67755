"""The enforcement workflow of a case: its states, the one table of allowed transitions, and stage time limits.

    auto_filed ─► under_review ─► confirmed ─► dispatched ─► handled ─► verified ─► closed
         │             │                          ▲             │                      │
         └─────────────┴──► rejected ─► closed    └── dispatch ─┘ (verification failed)│
                                 │                                                     │
                                 └──────────────────► reopened ◄───────────────────────┘

`undo` takes a reviewer's own confirm or reject back to `under_review` within `UNDO_WINDOW` (a new audit line;
nothing is erased).

Who may take each action is part of the same table, so one place answers "can this person do this now?".
Everything here is plain data and pure functions; `CaseWorkflow` (cases/workflow.py) applies them in SQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType


class State(StrEnum):
    AUTO_FILED = "auto_filed"
    UNDER_REVIEW = "under_review"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    DISPATCHED = "dispatched"
    HANDLED = "handled"
    VERIFIED = "verified"
    CLOSED = "closed"
    REOPENED = "reopened"


class Action(StrEnum):
    REVIEW = "review"
    """An inspector takes the case up."""
    CONFIRM = "confirm"
    REJECT = "reject"
    """Not a violation (false detection, permitted use); needs a reason."""
    DISPATCH = "dispatch"
    """Sent to the department that handles it; from `handled` it means the fix did not hold."""
    HANDLE = "handle"
    """The department reports it fixed."""
    VERIFY = "verify"
    """Someone checked the fix on site or on camera."""
    CLOSE = "close"
    REOPEN = "reopen"
    UNDO = "undo"
    """Take back one's own confirm or reject within `UNDO_WINDOW`: the case goes back to review. Only the
    last line of the case's history, only by whoever wrote it (CaseWorkflow checks); later, a supervisor reopens."""


class Role(StrEnum):
    VIEWER = "viewer"
    INSPECTOR = "inspector"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"
    SERVICE = "service"
    """Cameras, sensors and outside systems: file events, nothing else."""


INSPECTORS = frozenset({Role.INSPECTOR, Role.SUPERVISOR, Role.ADMIN})
SUPERVISORS = frozenset({Role.SUPERVISOR, Role.ADMIN})

# States in which a case no longer absorbs new observations: the same problem seen again is a new case
# (after the cooldown).
CLOSED_STATES = frozenset({State.CLOSED, State.REJECTED})
OPEN_STATES = frozenset(State) - CLOSED_STATES


@dataclass(frozen=True)
class Transition:
    source: State
    action: Action
    target: State
    roles: frozenset[Role]
    needs_comment: bool = False


def _t(source: State, action: Action, target: State, roles: frozenset[Role], needs_comment: bool = False) -> Transition:
    return Transition(source, action, target, roles, needs_comment)


S, A = State, Action
TRANSITIONS: tuple[Transition, ...] = (
    _t(S.AUTO_FILED, A.REVIEW, S.UNDER_REVIEW, INSPECTORS),
    _t(S.AUTO_FILED, A.CONFIRM, S.CONFIRMED, INSPECTORS),
    _t(S.AUTO_FILED, A.REJECT, S.REJECTED, INSPECTORS, needs_comment=True),
    _t(S.UNDER_REVIEW, A.CONFIRM, S.CONFIRMED, INSPECTORS),
    _t(S.UNDER_REVIEW, A.REJECT, S.REJECTED, INSPECTORS, needs_comment=True),
    _t(S.REOPENED, A.REVIEW, S.UNDER_REVIEW, INSPECTORS),
    _t(S.REOPENED, A.CONFIRM, S.CONFIRMED, INSPECTORS),
    _t(S.REOPENED, A.REJECT, S.REJECTED, INSPECTORS, needs_comment=True),
    _t(S.CONFIRMED, A.DISPATCH, S.DISPATCHED, SUPERVISORS),
    _t(S.DISPATCHED, A.HANDLE, S.HANDLED, INSPECTORS),
    _t(S.HANDLED, A.VERIFY, S.VERIFIED, INSPECTORS),
    _t(S.HANDLED, A.DISPATCH, S.DISPATCHED, SUPERVISORS, needs_comment=True),
    _t(S.VERIFIED, A.CLOSE, S.CLOSED, SUPERVISORS),
    _t(S.REJECTED, A.CLOSE, S.CLOSED, SUPERVISORS),
    _t(S.CLOSED, A.REOPEN, S.REOPENED, SUPERVISORS, needs_comment=True),
    _t(S.REJECTED, A.REOPEN, S.REOPENED, SUPERVISORS, needs_comment=True),
    _t(S.CONFIRMED, A.UNDO, S.UNDER_REVIEW, INSPECTORS),
    _t(S.REJECTED, A.UNDO, S.UNDER_REVIEW, INSPECTORS),
)
UNDO_WINDOW = timedelta(minutes=10)
"""How long a reviewer may take back a confirm or reject (the review page's undo)."""
del S, A

_BY_KEY: Mapping[tuple[State, Action], Transition] = MappingProxyType({(t.source, t.action): t for t in TRANSITIONS})
if len(_BY_KEY) != len(TRANSITIONS):
    raise AssertionError("lifecycle: two transitions share a (state, action) pair")


class LifecycleError(ValueError):
    """Base of the workflow's refusals."""


class TransitionRefused(LifecycleError):
    """The action is not allowed from the case's state; the message lists what is."""


class NotPermitted(LifecycleError):
    """The role may not take this action."""


class UndoRefused(TransitionRefused):
    """Undo only takes back the caller's own confirm or reject, when it is the case's last line and recent."""


class CommentRequired(LifecycleError):
    """The action needs a reason (rejecting, re-dispatching, reopening)."""


def allowed_actions(state: State | str, role: Role | None = None) -> list[Action]:
    """Actions possible from `state` (for `role`, when given), in table order."""
    return [t.action for t in TRANSITIONS if t.source == state and (role is None or role in t.roles)]


def transition_for(state: State | str, action: Action, role: Role, comment: str = "") -> Transition:
    """The transition `role` makes by taking `action` on a case in `state`, or why not."""
    try:
        current = State(state)
    except ValueError:
        raise TransitionRefused(f"case is in unknown state {state!r}") from None
    transition = _BY_KEY.get((current, action))
    if transition is None:
        possible = ", ".join(allowed_actions(current)) or "none"
        raise TransitionRefused(f"cannot {action} a case that is {current} (possible: {possible})")
    if role not in transition.roles:
        roles = ", ".join(sorted(transition.roles))
        raise NotPermitted(f"role {role} may not {action} a case (roles that may: {roles})")
    if transition.needs_comment and not comment.strip():
        raise CommentRequired(f"{action} from {current} needs a comment saying why")
    return transition


@dataclass(frozen=True)
class LifecyclePolicy:
    """Time rules of the workflow (from the config's `lifecycle:` section)."""

    stage_limits: Mapping[State, timedelta] = field(default_factory=dict)
    """How long a case may stay in a state before it is overdue; states not listed have no limit."""
    cooldown: timedelta = timedelta(hours=24)
    """After a case is closed or rejected, the same problem is filed as a new case only this much later."""

    def due_at(self, state: State | str, entered: datetime) -> datetime | None:
        limit = self.stage_limits.get(State(state))
        return None if limit is None else entered + limit
