"""The HTTP API (FastAPI). Ray Serve mounts it as the ingress; tests run it alone with TestClient.

`build_api` wires the routers (cases in routes_cases.py, device events and webhooks in routes_ops.py, logins
and users in routes_accounts.py) over one `ApiContext` of live resources. Every route but /healthz needs a
bearer credential (serving/auth.py). Errors are 4xx with a message; anything unexpected is a logged 500 that
reveals nothing.

FastAPI reads the route signatures at definition time, and they name dependencies built inside `build_api`:
this module and the route modules therefore do not use `from __future__ import annotations`.
"""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from citywatch.serving.auth import principal_dependency, requirer
from citywatch.serving.context import ApiContext, Device, HealthProbe, KindName
from citywatch.serving.errors import ERROR_STATUS
from citywatch.serving.routes_accounts import accounts_router
from citywatch.serving.routes_cases import cases_router
from citywatch.serving.routes_ops import ops_router
from citywatch.serving.routes_pages import install_pages

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

    api.include_router(accounts_router(context, authenticate, require))
    api.include_router(cases_router(context, require))
    api.include_router(ops_router(context, require))
    install_pages(api, context, require)  # the review page under /ui (serving/routes_pages.py)
    return api
