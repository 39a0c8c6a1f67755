"""Logins and accounts: tokens for people, API keys for machines, and what an admin does with both.

Routes: POST /auth/token (throttled: serving/login_throttle.py), POST /auth/logout, GET /auth/me; for admins
GET/POST /users, PATCH /users/{name} (disable, enable), GET/POST /users/{name}/api-keys and
DELETE /users/{name}/api-keys/{key_id} (revoke).

No `from __future__ import annotations`: FastAPI reads the route signatures when they are defined.
"""

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request

from citywatch.cases.accounts import AccountNotFound, AuthenticationFailed, Principal, UserInfo
from citywatch.serving.auth import Permission
from citywatch.serving.context import ApiContext
from citywatch.serving.errors import DOMAIN_STATUSES, error_responses
from citywatch.serving.login_throttle import LoginThrottle
from citywatch.serving.schemas import (
    ApiKeyResponse,
    ApiKeyView,
    LoginRequest,
    Me,
    NewApiKey,
    NewUser,
    TokenResponse,
    UserChange,
    UserView,
)


def accounts_router(
    context: ApiContext,
    authenticate: Callable[..., Principal],
    require: Callable[[Permission], Callable[..., Principal]],
) -> APIRouter:
    router = APIRouter(tags=["accounts"])
    _add_login_routes(router, context, Depends(authenticate))
    _add_user_routes(router, context, Depends(require(Permission.MANAGE_USERS)))
    return router


def _user_view(user: UserInfo) -> UserView:
    return UserView(
        id=user.id,
        username=user.username,
        role=user.role,
        disabled=user.disabled,
        created_at=user.created_at,
        api_keys=user.api_keys,
    )


def _find_user(context: ApiContext, username: str) -> UserView:
    found = [u for u in context.accounts.list_users() if u.username == username]
    if not found:
        raise AccountNotFound(f"no user {username!r}")
    return _user_view(found[0])


def _add_login_routes(router: APIRouter, context: ApiContext, signed_in: Any) -> None:
    throttle = LoginThrottle(context.store.now)

    @router.post("/auth/token", responses=error_responses(401, 429))
    def login(body: LoginRequest, request: Request) -> TokenResponse:
        """Exchange a username and password for a bearer token that expires. Repeated failures for one username
        or from one address are refused for a while (429 with Retry-After)."""
        address = request.client.host if request.client else "-"
        wait = throttle.retry_after(body.username, address)
        if wait is not None:
            raise HTTPException(
                429,
                detail=f"too many failed logins for {body.username!r} or from {address}; try again in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        try:
            token, expires = context.accounts.login(body.username, body.password, ttl=context.token_ttl)
        except AuthenticationFailed as error:
            throttle.failed(body.username, address)
            raise HTTPException(status_code=401, detail=str(error)) from None
        throttle.succeeded(body.username)
        return TokenResponse(access_token=token, expires_at=expires, role=context.accounts.authenticate(token).role)

    @router.post("/auth/logout", status_code=204)
    def logout(request: Request, principal: Annotated[Principal, signed_in]) -> None:
        if principal.via == "token":
            context.accounts.logout(request.headers["authorization"].split(" ", 1)[1].strip())

    @router.get("/auth/me")
    def me(principal: Annotated[Principal, signed_in]) -> Me:
        return Me(username=principal.username, role=principal.role, via=principal.via)


def _add_user_routes(router: APIRouter, context: ApiContext, admin: Any) -> None:
    accounts = context.accounts
    errors = error_responses(*sorted(DOMAIN_STATUSES))

    @router.get("/users")
    def list_users(_: Annotated[Principal, admin]) -> list[UserView]:
        return [_user_view(user) for user in accounts.list_users()]

    @router.post("/users", status_code=201, responses=errors)
    def add_user(body: NewUser, _: Annotated[Principal, admin]) -> UserView:
        accounts.add_user(body.username, body.role, body.password)
        return _find_user(context, body.username)

    @router.patch("/users/{username}", responses=errors)
    def change_user(username: str, body: UserChange, principal: Annotated[Principal, admin]) -> UserView:
        """Disable a user (logged out everywhere; their API keys stop working) or enable them again."""
        if body.disabled and username == principal.username:
            raise HTTPException(409, detail="you cannot disable your own account: ask another admin")
        accounts.set_disabled(username, body.disabled)
        return _find_user(context, username)

    @router.post("/users/{username}/api-keys", status_code=201, responses=errors)
    def add_api_key(username: str, body: NewApiKey, _: Annotated[Principal, admin]) -> ApiKeyResponse:
        expires = None if body.expires_in_days is None else timedelta(days=body.expires_in_days)
        return ApiKeyResponse(api_key=accounts.create_api_key(username, name=body.name, expires_in=expires))

    @router.get("/users/{username}/api-keys")
    def list_api_keys(username: str, _: Annotated[Principal, admin]) -> list[ApiKeyView]:
        return [
            ApiKeyView(
                key_id=k.key_id, name=k.name, created_at=k.created_at, expires_at=k.expires_at, revoked=k.revoked
            )
            for k in accounts.list_api_keys(username)
        ]

    @router.delete("/users/{username}/api-keys/{key_id}", status_code=204, responses=errors)
    def revoke_api_key(username: str, key_id: str, _: Annotated[Principal, admin]) -> None:
        """Revoke a key at once (a lost camera gateway, a contractor who left); it is kept, marked revoked."""
        accounts.revoke_api_key(username, key_id)
