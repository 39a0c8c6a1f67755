"""The HTTP API (FastAPI). Ray Serve mounts it as the ingress; tests run it alone with TestClient.

`build_api` wires the routers (cases in routes_cases.py, device events and webhooks in routes_ops.py, logins
and users here) over one `ApiContext` of live resources. Every route but /healthz needs a bearer credential
(serving/auth.py). Errors are 4xx with a message; anything unexpected is a logged 500 that reveals nothing.

FastAPI reads the route signatures at definition time, and they name dependencies built inside `build_api`:
this module and the route modules therefore do not use `from __future__ import annotations`.
"""

import logging
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from citywatch.cases.accounts import AccountError, AuthenticationFailed, Principal
from citywatch.cases.lifecycle import Role
from citywatch.serving.auth import Permission, principal_dependency, requirer
from citywatch.serving.context import ApiContext, Device, HealthProbe, KindName
from citywatch.serving.errors import ERROR_STATUS
from citywatch.serving.routes_cases import cases_router
from citywatch.serving.routes_ops import ops_router
from citywatch.serving.routes_pages import install_pages
from citywatch.serving.schemas import (
    ApiKeyResponse,
    LoginRequest,
    Me,
    NewApiKey,
    NewUser,
    TokenResponse,
    UserView,
)

log = logging.getLogger(__name__)

__all__ = ["ApiContext", "Device", "HealthProbe", "KindName", "build_api"]

MAX_BODY_BYTES = 1_000_000


class _BodyLimit(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            return JSONResponse({"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        return await call_next(request)


def _install_error_handlers(api: FastAPI) -> None:
    for error_type, status in ERROR_STATUS:

        def handler(_request: Request, error: Exception, status: int = status) -> JSONResponse:
            return JSONResponse({"detail": str(error)}, status_code=status)

        api.add_exception_handler(error_type, handler)

    def validation(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        problems = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in error.errors()
        ]
        summary = "; ".join(f"{' → '.join(str(p) for p in e['loc'])}: {e['msg']}" for e in problems)
        return JSONResponse({"detail": f"invalid request: {summary}", "errors": problems}, status_code=422)

    def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
        return JSONResponse({"detail": "internal error (logged on the server)"}, status_code=500)

    api.add_exception_handler(RequestValidationError, validation)
    api.add_exception_handler(Exception, unexpected)


def build_api(context: ApiContext) -> FastAPI:
    api = FastAPI(title="citywatch", summary="Automatically filed urban-management cases")
    api.add_middleware(_BodyLimit)
    _install_error_handlers(api)
    authenticate = principal_dependency(context.accounts)
    require = requirer(authenticate)

    @api.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness plus what is degraded: cameras offline, detectors that failed to load. No login needed."""
        report = await context.health()
        cameras = report.get("cameras", [])
        detectors = report.get("detectors", {})
        degraded = any(not c.get("online") for c in cameras) or any(d.get("error") for d in detectors.values())
        return {"status": "degraded" if degraded else "ok", "cases": context.store.count_cases(), **report}

    @api.post("/auth/token")
    def login(body: LoginRequest) -> TokenResponse:
        """Exchange a username and password for a bearer token that expires."""
        try:
            token, expires = context.accounts.login(body.username, body.password, ttl=context.token_ttl)
        except AuthenticationFailed as error:
            raise HTTPException(status_code=401, detail=str(error)) from None
        return TokenResponse(access_token=token, expires_at=expires, role=context.accounts.authenticate(token).role)

    @api.post("/auth/logout", status_code=204)
    def logout(request: Request, principal: Annotated[Principal, Depends(authenticate)]) -> None:
        if principal.via == "token":
            context.accounts.logout(request.headers["authorization"].split(" ", 1)[1].strip())

    @api.get("/auth/me")
    def me(principal: Annotated[Principal, Depends(authenticate)]) -> Me:
        return Me(username=principal.username, role=principal.role.value, via=principal.via)

    @api.get("/users")
    def list_users(_: Annotated[Principal, Depends(require(Permission.MANAGE_USERS))]) -> list[UserView]:
        return [
            UserView(id=u.id, username=u.username, role=u.role.value, disabled=u.disabled, created_at=u.created_at,
                     api_keys=u.api_keys)
            for u in context.accounts.list_users()
        ]  # fmt: skip

    @api.post("/users", status_code=201)
    def add_user(body: NewUser, _: Annotated[Principal, Depends(require(Permission.MANAGE_USERS))]) -> UserView:
        if body.role not in {r.value for r in Role}:
            raise HTTPException(422, detail=f"role {body.role!r} must be one of {', '.join(r.value for r in Role)}")
        context.accounts.add_user(body.username, body.role, body.password)
        [user] = [u for u in context.accounts.list_users() if u.username == body.username]
        return UserView(id=user.id, username=user.username, role=user.role.value, disabled=user.disabled,
                        created_at=user.created_at, api_keys=user.api_keys)  # fmt: skip

    @api.post("/users/{username}/api-keys", status_code=201)
    def add_api_key(
        username: str, body: NewApiKey, _: Annotated[Principal, Depends(require(Permission.MANAGE_USERS))]
    ) -> ApiKeyResponse:
        expires = None if body.expires_in_days is None else timedelta(days=body.expires_in_days)
        try:
            key = context.accounts.create_api_key(username, name=body.name, expires_in=expires)
        except AccountError as error:
            raise HTTPException(404, detail=str(error)) from None
        return ApiKeyResponse(api_key=key)

    api.include_router(cases_router(context, require))
    api.include_router(ops_router(context, require))
    install_pages(api, context, require)  # the review page under /ui (serving/routes_pages.py)
    return api
