"""The inspectors' review page: server-rendered shells (Jinja2) and one small script that calls the JSON API.

The HTML carries no case data, so the pages themselves need no login: the script keeps the bearer token from
`POST /auth/token` in sessionStorage and sends it as `Authorization` on every API call. No cookie authenticates
anything, so there is nothing for another site to forge (no CSRF surface). The language is a plain cookie.

Routes: /ui/login, /ui/queue, /ui/cases/{id}, /ui/dashboard, /ui/cameras; static files under /ui/static.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Cookie, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from citywatch.cases.accounts import Principal
from citywatch.serving.auth import Permission
from citywatch.serving.context import ApiContext
from citywatch.serving.i18n import REJECT_REASONS, STRINGS, language
from citywatch.serving.routes_cases import CaseId
from citywatch.serving.routes_page_stats import stats_router
from citywatch.vision.taxonomy import KINDS

_HERE = Path(__file__).resolve().parent
_templates = Jinja2Templates(directory=_HERE / "templates")
# Scripts and styles only from this origin; evidence pictures come from the object store's presigned URLs.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: http: https:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
PAGES = ("queue", "dashboard", "cameras")


def page_routers(context: ApiContext, require: Callable[[Permission], Callable[..., Principal]]) -> list[APIRouter]:
    """The review page and the JSON it needs beyond the case API (its static files: `mount_page_files`)."""
    return [_pages_router(context), stats_router(context, require)]


def mount_page_files(api: FastAPI) -> None:
    api.mount("/ui/static", StaticFiles(directory=_HERE / "static"), name="ui-static")


def _pages_router(context: ApiContext) -> APIRouter:
    router = APIRouter(tags=["review page"], include_in_schema=False)
    kinds = [{"key": k.key, "code": k.code, "name_zh": k.name_zh, "name_en": k.name_en} for k in KINDS.values()]
    kinds += [
        {"key": key, "code": k.code, "name_zh": k.name_zh, "name_en": k.name_en}
        for key, k in context.device_kinds.items()
    ]

    def render(request: Request, page: str, lang: str, **extra: Any) -> HTMLResponse:
        strings = STRINGS[lang]
        reasons = [{"key": r, "zh": STRINGS["zh"][r], "en": STRINGS["en"][r]} for r in REJECT_REASONS]
        data = {"page": page, "lang": lang, "strings": dict(strings), "kinds": kinds, "reasons": reasons, **extra}
        response = _templates.TemplateResponse(
            request,
            f"{page}.html",
            {"t": strings, "lang": lang, "page": page, "data_json": json.dumps(data, ensure_ascii=False), **extra},
        )
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.query_params.get("lang") == lang:  # remember an explicit switch
            response.set_cookie("cw_lang", lang, max_age=365 * 86400, samesite="strict", path="/ui")
        return response

    Lang = Annotated[str | None, Query(max_length=5)]
    LangCookie = Annotated[str | None, Cookie(alias="cw_lang", max_length=5)]

    @router.get("/ui")
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/queue", status_code=303)

    @router.get("/ui/login", response_class=HTMLResponse)
    def login(request: Request, lang: Lang = None, cw_lang: LangCookie = None) -> HTMLResponse:
        return render(request, "login", language(lang or cw_lang))

    @router.get("/ui/queue", response_class=HTMLResponse)
    def queue(request: Request, lang: Lang = None, cw_lang: LangCookie = None) -> HTMLResponse:
        return render(request, "queue", language(lang or cw_lang))

    @router.get("/ui/cases/{case_id}", response_class=HTMLResponse)
    def case(request: Request, case_id: CaseId, lang: Lang = None, cw_lang: LangCookie = None) -> HTMLResponse:
        return render(request, "case", language(lang or cw_lang), case_id=case_id)

    @router.get("/ui/dashboard", response_class=HTMLResponse)
    def dashboard(request: Request, lang: Lang = None, cw_lang: LangCookie = None) -> HTMLResponse:
        return render(request, "dashboard", language(lang or cw_lang))

    @router.get("/ui/cameras", response_class=HTMLResponse)
    def cameras(request: Request, lang: Lang = None, cw_lang: LangCookie = None) -> HTMLResponse:
        return render(request, "cameras", language(lang or cw_lang))

    return router
