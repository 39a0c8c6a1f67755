"""Who may call what: bearer credentials (login tokens or API keys) on every request but /healthz, and roles.

Lifecycle actions are checked twice on purpose: `ACT` here lets a role reach the action endpoints at all,
and the transition table in `cases/lifecycle.py` decides which action that role may take on which state.
"""

from collections.abc import Callable, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from citywatch.cases.accounts import AccountStore, AuthenticationFailed, Principal
from citywatch.cases.lifecycle import Role


class Permission(StrEnum):
    READ_CASES = "read_cases"
    EXPORT_CASES = "export_cases"
    ACT_ON_CASES = "act_on_cases"
    FILE_EVENTS = "file_events"
    READ_WEBHOOKS = "read_webhooks"
    RETRY_WEBHOOKS = "retry_webhooks"
    MANAGE_USERS = "manage_users"


_STAFF = frozenset({Role.VIEWER, Role.INSPECTOR, Role.SUPERVISOR, Role.ADMIN})
PERMISSIONS: Mapping[Permission, frozenset[Role]] = MappingProxyType(
    {
        Permission.READ_CASES: _STAFF,
        Permission.EXPORT_CASES: frozenset({Role.INSPECTOR, Role.SUPERVISOR, Role.ADMIN}),
        Permission.ACT_ON_CASES: frozenset({Role.INSPECTOR, Role.SUPERVISOR, Role.ADMIN}),
        # Cameras, sensors and outside systems file events; an admin may too (for testing a device by hand).
        Permission.FILE_EVENTS: frozenset({Role.SERVICE, Role.ADMIN}),
        Permission.READ_WEBHOOKS: frozenset({Role.SUPERVISOR, Role.ADMIN}),
        Permission.RETRY_WEBHOOKS: frozenset({Role.ADMIN}),
        Permission.MANAGE_USERS: frozenset({Role.ADMIN}),
    }
)

_bearer = HTTPBearer(auto_error=False, description="A login token (cwt_…) from POST /auth/token, or an API key")


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status_code=401, detail=message, headers={"WWW-Authenticate": "Bearer"})


def authenticate_header(accounts: AccountStore, authorization: str | None) -> Principal:
    """The caller named by an `Authorization: Bearer <credential>` header, or HTTPException 401."""
    scheme, _, credential = (authorization or "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise _unauthorized("authentication required: send Authorization: Bearer <token or API key>")
    try:
        return accounts.authenticate(credential)
    except AuthenticationFailed as error:
        raise _unauthorized(str(error)) from None


def principal_dependency(accounts: AccountStore) -> Callable[..., Principal]:
    """A FastAPI dependency: the authenticated caller, or 401 (serving/request_guard.py may have found it)."""

    def authenticate(
        request: Request, _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        found = getattr(request.state, "principal", None)
        principal = found if isinstance(found, Principal) else None
        if principal is None:
            principal = authenticate_header(accounts, request.headers.get("authorization"))
        request.state.principal = principal
        return principal

    return authenticate


def requirer(authenticate: Callable[..., Principal]) -> Callable[[Permission], Callable[..., Principal]]:
    """`require(Permission.X)` gives a dependency that authenticates and then checks the role (403)."""

    def require(permission: Permission) -> Callable[..., Principal]:
        roles = PERMISSIONS[permission]

        def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
            if principal.role not in roles:
                raise HTTPException(
                    status_code=403,
                    detail=f"role {principal.role} may not {permission.value.replace('_', ' ')} "
                    f"(roles that may: {', '.join(sorted(roles))})",
                )
            return principal

        check.permission = permission  # type: ignore[attr-defined]  # how the spec knows the route may 403
        return check

    return require
