"""Issue 16: what a fuzzer, a security review and fault injection found in the API, each kept as a test.

Real database (SQLite) and real S3; chunked bodies go through the real app (TestClient streams a generator body
chunk by chunk, with `Transfer-Encoding: chunked` and no Content-Length, as a client on the network would).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from typer.testing import CliRunner

from citywatch.cases.accounts import InvalidAccount, check_password
from citywatch.cases.db import UTCDateTime
from citywatch.cases.lifecycle import Role
from citywatch.serving.api import MAX_BODY_BYTES, build_api
from citywatch.serving.users_cli import users_app
from citywatch.stack.s3 import S3Endpoint, S3Server
from tests.serving.api_support import Api, Served, make_api, served

CHUNK = 64 * 1024


@pytest.fixture
def api(s3_server: S3Endpoint, tmp_path: Path) -> Iterator[Api]:
    made = make_api(f"sqlite:///{tmp_path / 'cases.db'}", s3_server, tmp_path)
    with made.client:
        yield made


# Every route that takes a body, and the role that may call it.
BODY_ROUTES = [
    (None, "POST", "/auth/token"),
    (Role.ADMIN, "POST", "/users"),
    (Role.ADMIN, "PATCH", "/users/viewer-user"),
    (Role.ADMIN, "POST", "/users/viewer-user/api-keys"),
    (Role.INSPECTOR, "POST", "/cases/{case}/actions/confirm"),
    (Role.INSPECTOR, "POST", "/cases/actions/confirm"),
    (Role.INSPECTOR, "POST", "/cases/{case}/kind"),
    (Role.INSPECTOR, "POST", "/cases/{case}/comments"),
    (Role.SERVICE, "POST", "/events"),
]


def chunked(total: int) -> Iterator[bytes]:
    """A body of `total` bytes in chunks: httpx sends it with `Transfer-Encoding: chunked`, no Content-Length."""
    for _ in range(total // CHUNK):
        yield b" " * CHUNK


@pytest.fixture
def site(api: Api) -> Iterator[Served]:
    with served(build_api(api.context)) as site:
        yield site


@pytest.mark.parametrize(("role", "method", "path"), BODY_ROUTES, ids=[f"{m} {p}" for _, m, p in BODY_ROUTES])
def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(
    api: Api, site: Served, role: Role | None, method: str, path: str
) -> None:
    url = site.url + path.format(case=api.file(1))
    headers = {"Content-Type": "application/json", **api.as_role(role)}
    response = httpx.request(method, url, content=chunked(5 * MAX_BODY_BYTES), headers=headers, timeout=30)
    assert response.status_code == 413, response.text
    assert str(MAX_BODY_BYTES) in response.json()["detail"]
    assert site.pulled < MAX_BODY_BYTES + 512 * 1024  # read up to the limit, never the rest


PROTECTED = [r for r in BODY_ROUTES if r[0] is not None]


@pytest.mark.parametrize(("role", "method", "path"), PROTECTED, ids=[f"{m} {p}" for _, m, p in PROTECTED])
def test_an_anonymous_body_is_refused_before_a_byte_of_it_is_read(
    api: Api, site: Served, role: Role, method: str, path: str
) -> None:
    url = site.url + path.format(case=api.file(1))
    for credential in ({}, {"Authorization": "Bearer cwk_nope_nope"}, {"Authorization": "Basic dXNlcjpwYXNz"}):
        headers = {"Content-Type": "application/json", **credential}
        response = httpx.request(method, url, content=chunked(5 * MAX_BODY_BYTES), headers=headers, timeout=30)
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
        assert site.pulled == 0


def test_a_declared_length_over_the_limit_is_refused_before_auth_or_reading(api: Api) -> None:
    response = api.client.post(
        "/auth/token",
        content=b"{}",
        headers={"Content-Length": str(MAX_BODY_BYTES + 1), "Content-Type": "application/json"},
    )
    assert response.status_code == 413


def test_healthz_says_only_the_status_and_the_detail_needs_a_staff_login(api: Api) -> None:
    async def with_a_camera() -> dict[str, Any]:
        camera = {"camera_id": "gate-3", "online": True, "url": "rtsp://10.0.0.7:554/secret-path"}
        return {"cameras": [camera], "detectors": {}}

    api.context.health = with_a_camera
    public = api.client.get("/healthz")
    assert public.json() == {"status": "ok"}
    assert "rtsp" not in public.text
    assert api.client.get("/healthz/detail").status_code == 401
    assert api.client.get("/healthz/detail", headers=api.as_role(Role.SERVICE)).status_code == 403
    detail = api.client.get("/healthz/detail", headers=api.as_role(Role.VIEWER)).json()
    assert detail["cameras"][0]["url"] == "rtsp://10.0.0.7:554/secret-path"
    assert detail["evidence_store"] == {"reachable": True, "error": None}
    assert detail["evidence_pending"] == 0


def test_healthz_is_degraded_while_the_evidence_store_is_down_and_counts_the_spooled_evidence(
    tmp_path: Path,
) -> None:
    server = S3Server(tmp_path / "s3-data", log_path=tmp_path / "weed.log")
    endpoint = server.start()
    try:
        api = make_api(f"sqlite:///{tmp_path / 'cases.db'}", endpoint, tmp_path)
        with api.client:
            assert api.client.get("/healthz").json() == {"status": "ok"}
            server.stop()
            api.file(1)  # filed while the store is down: its evidence waits in the spool
            assert api.client.get("/healthz").json() == {"status": "degraded"}
            detail = api.client.get("/healthz/detail", headers=api.as_role(Role.VIEWER)).json()
            assert detail["status"] == "degraded"
            assert detail["evidence_store"]["reachable"] is False
            assert "evidence store" in detail["evidence_store"]["error"]
            assert detail["evidence_pending"] == 1
    finally:
        server.stop()


def test_healthz_answers_degraded_when_the_fleet_report_never_comes(api: Api) -> None:
    async def hangs() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {}

    api.context.health = hangs
    assert api.client.get("/healthz").json() == {"status": "degraded"}
    detail = api.client.get("/healthz/detail", headers=api.as_role(Role.VIEWER)).json()
    assert detail["unreachable"] and "no answer" in detail["unreachable"][0]


def test_the_serve_api_asks_each_replica_for_its_health_with_a_time_limit() -> None:
    from citywatch.serving.deployments import _answer

    async def fails() -> dict[str, Any]:
        raise RuntimeError("replica died")

    silent = asyncio.run(_answer(asyncio.sleep(3600), "camera fleet"))
    assert "camera fleet: no answer within" in silent["unreachable"]
    assert asyncio.run(_answer(fails(), "detector 'default'"))["unreachable"] == (
        "detector 'default': RuntimeError: replica died"
    )


_URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']|url\(([^)]+)\)""")


@pytest.mark.parametrize("page", ["/docs", "/ui/login", "/ui/queue", "/ui/dashboard", "/ui/cameras", "/ui/cases/1"])
def test_pages_load_nothing_from_another_host(api: Api, page: str) -> None:
    response = api.client.get(page)
    assert response.status_code == 200
    urls = [next(u for u in match if u) for match in _URL.findall(response.text)]
    assert urls, "the page references its script and styles"
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"{page} references another origin: {url}"
        if page == "/docs":
            assert api.client.get(url).status_code == 200, url
    assert api.client.get("/redoc").status_code == 404  # ReDoc would load from a CDN


@pytest.mark.parametrize(
    "password",
    [
        "          ",
        "\t\t\t\t\t\t\t\t\t\t",
        "long enough\x00pw",
        "new\nline password",
        "password",
        "Password2024!",
        "--qwerty--1234",
        "short",
    ],
)
def test_weak_passwords_are_refused(password: str) -> None:
    with pytest.raises(InvalidAccount, match="password"):
        check_password(password)


def test_a_strong_password_is_accepted() -> None:
    check_password("correct horse battery")
    check_password("城市管理巡查员 2026")


def test_the_users_cli_refuses_a_weak_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEAK_PASSWORD", " " * 12)
    database = f"sqlite:///{tmp_path / 'cases.db'}"
    result = CliRunner().invoke(users_app, ["add", "clerk", "--password-env", "WEAK_PASSWORD", "--database", database])
    assert result.exit_code == 1
    assert "whitespace" in result.output
    listed = CliRunner().invoke(users_app, ["list", "--database", database])
    assert "clerk" not in listed.output


def test_the_database_time_type_names_a_time_it_cannot_store() -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    far = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(minutes=1)))
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        with pytest.raises(ValueError, match="outside years 1-9999"):
            UTCDateTime().process_bind_param(far, dialect)
    assert UTCDateTime().process_bind_param(datetime(2026, 1, 1, tzinfo=UTC), sqlite.dialect()) == datetime(2026, 1, 1)


def test_the_spec_declares_one_error_body_and_the_statuses_the_api_answers(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    operations = {(m.upper(), p): op for p, ops in spec["paths"].items() for m, op in ops.items()}
    for (method, path), operation in operations.items():
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
        if path not in ("/healthz", "/auth/token"):
            assert "401" in operation["responses"], (method, path)
    assert {"400", "401", "403", "404", "409", "413", "422"} <= set(operations["POST", "/users"]["responses"])
    csv = operations["GET", "/cases.csv"]["responses"]["200"]["content"]
    assert list(csv) == ["text/csv"]
    roles = spec["components"]["schemas"]["Role"]["enum"]
    assert sorted(roles) == sorted(r.value for r in Role)
    invalid = api.client.get("/cases?limit=0", headers=api.as_role(Role.VIEWER)).json()
    assert isinstance(invalid["detail"], str) and invalid["errors"][0]["loc"] == ["query", "limit"]
    missing = api.client.get("/cases/999999", headers=api.as_role(Role.VIEWER)).json()
    assert missing == {"detail": "no case 999999", "errors": []}


def test_a_wrong_method_lists_every_method_of_the_path(api: Api) -> None:
    response = api.client.request("PUT", "/users", headers=api.as_role(Role.ADMIN))
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
