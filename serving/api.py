"""The HTTP API (FastAPI). Ray Serve mounts it as the ingress; tests run it alone with TestClient.

`build_api` wires the routers (cases in routes_cases.py, device events and webhooks in routes_ops.py, logins
and users in routes_accounts.py, health in routes_health.py) over one `ApiContext` of live resources. Every
route but /healthz, /auth/token and the pages needs a bearer credential (serving/auth.py), checked before a
request body is read (serving/request_guard.py, which also caps bodies). Errors are 4xx with one body
(`schemas.ErrorBody`); anything unexpected is a logged 500 that reveals nothing. The OpenAPI spec declares
every status a route answers, and the docs page (/docs) is served from this origin (no CDN).

FastAPI reads the route signatures at definition time, and they name dependencies built inside `build_api`:
this module and the route modules therefore do not use `from __future__ import annotations`.
"""

import logging
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from citywatch.serving.auth import principal_dependency, requirer
from citywatch.serving.context import ApiContext, Device, HealthProbe, KindName
from citywatch.serving.errors import ERROR_STATUS, error_responses
from citywatch.serving.request_guard import RequestGuard, error_response
from citywatch.serving.routes_accounts import accounts_router
from citywatch.serving.routes_cases import cases_router
from citywatch.serving.routes_health import health_router
from citywatch.serving.routes_ops import ops_router
from citywatch.serving.routes_pages import mount_page_files, page_routers

log = logging.getLogger(__name__)

__all__ = ["ApiContext", "Device", "HealthProbe", "KindName", "build_api"]

MAX_BODY_BYTES = 1_000_000
_DOCS_ASSETS = "/docs/assets"


def _install_error_handlers(api: FastAPI, routes: list[BaseRoute]) -> None:
    for error_type, status in ERROR_STATUS:

        def handler(_request: Request, error: Exception, status: int = status) -> JSONResponse:
            return JSONResponse({"detail": str(error), "errors": []}, status_code=status)

        api.add_exception_handler(error_type, handler)

    def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        if error.status_code == 405:  # Allow: every method of the path, not only those of the first route found
            methods = {m for r in routes if r.matches(request.scope)[0] is not Match.NONE for m in _methods(r)}
            error = HTTPException(405, error.detail, headers={"Allow": ", ".join(sorted(methods))})
        return error_response(error)

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
        return JSONResponse({"detail": "internal error (logged on the server)", "errors": []}, status_code=500)

    api.add_exception_handler(HTTPException, http_error)
    api.add_exception_handler(RequestValidationError, validation)
    api.add_exception_handler(Exception, unexpected)


def _methods(route: BaseRoute) -> set[str]:
    return set(getattr(route, "methods", None) or ())


def _calls(dependant: Dependant) -> Iterable[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def _declare_common_errors(router: APIRouter, authenticate: Callable[..., Any]) -> list[APIRoute]:
    """Declare on every route the error statuses that follow from its shape; returns the routes needing a login.

    A login (401), a role (403: every protected route checks one but /auth/*), a path parameter (404: the thing
    it names may not exist), parameters or a body (422: invalid), a body (413: too large, 400: not JSON).
    Statuses particular to a route (400, 409, 429, 503) are declared on the route itself."""
    protected = []
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        statuses = set()
        calls = list(_calls(route.dependant))
        if authenticate in calls:
            protected.append(route)
            statuses.add(401)
        if any(hasattr(call, "permission") for call in calls):
            statuses.add(403)
        if route.dependant.path_params:
            statuses.add(404)
        if route.dependant.path_params or route.dependant.query_params or route.body_field is not None:
            statuses.add(422)
        if route.body_field is not None:
            statuses |= {400, 413}  # 400: a body that is not JSON at all
        route.responses = {**error_responses(*sorted(statuses)), **route.responses}
    return protected


def _install_docs(api: FastAPI) -> None:
    """Swagger UI from the swagger-ui-py package's files, served here: the page loads nothing from outside."""
    api.mount(_DOCS_ASSETS, StaticFiles(directory=str(resources.files("swagger_ui") / "static")), name="docs-assets")

    @api.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="citywatch API",
            swagger_js_url=f"{_DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{_DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{_DOCS_ASSETS}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},  # Swagger UI's default validator is an outside host
        )


def build_api(context: ApiContext) -> FastAPI:
    api = FastAPI(
        title="citywatch",
        summary="Automatically filed urban-management cases",
        docs_url=None,  # served by _install_docs from local files
        redoc_url=None,  # ReDoc has no packaged copy: it would load from a CDN
    )
    authenticate = principal_dependency(context.accounts)
    require = requirer(authenticate)
    routers = [
        health_router(context, require),
        accounts_router(context, authenticate, require),
        cases_router(context, require),
        ops_router(context, require),
        *page_routers(context, require),  # the review page under /ui (serving/routes_pages.py)
    ]
    protected = [route for router in routers for route in _declare_common_errors(router, authenticate)]
    _install_error_handlers(api, [route for router in routers for route in router.routes])
    for router in routers:
        api.include_router(router)
    mount_page_files(api)
    _install_docs(api)

    def needs_login(scope: Scope) -> bool:
        """Whether the request goes to a route that needs a login (no route prefixes: paths are as declared)."""
        return any(route.matches(scope)[0] is Match.FULL for route in protected)

    api.add_middleware(RequestGuard, max_bytes=MAX_BODY_BYTES, accounts=context.accounts, needs_login=needs_login)
    return api
