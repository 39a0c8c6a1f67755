"""Bad input gets a 4xx with a message, never a 500, and changes nothing (real database, real S3)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from citywatch.cases.lifecycle import Role
from citywatch.stack.s3 import S3Endpoint
from tests.serving.api_support import Api, make_api


@pytest.fixture
def api(database_url: str, s3_server: S3Endpoint, tmp_path: Path) -> Iterator[Api]:
    made = make_api(database_url, s3_server, tmp_path)
    with made.client:
        yield made


def snapshot(api: Api) -> tuple[int, ...]:
    """Row counts of every table a request could change, and how many cases left auto_filed."""
    queries = [f"SELECT count(*) FROM {table}" for table in ("cases", "case_audit", "evidence", "users", "api_keys")]
    queries.append("SELECT count(*) FROM cases WHERE state <> 'auto_filed'")
    with api.context.store.engine.connect() as connection:
        return tuple(int(connection.execute(sa.text(query)).scalar_one()) for query in queries)


EVENT = '{"device_id": "mh-0042", "kind": "manhole_cover_tilt", "observed_at": "2026-05-04T10:00:00+08:00"}'
ID = "{case}"
# (role, method, path, raw body or None, expected status, a word the message must contain)
CASES = [
    (Role.INSPECTOR, "POST", f"/cases/{ID}/actions/confirm", "{not json", 422, "json"),
    (Role.INSPECTOR, "POST", f"/cases/{ID}/actions/confirm", '["a", "list"]', 422, "invalid request"),
    (Role.INSPECTOR, "POST", f"/cases/{ID}/actions/confirm", '{"comment": 42}', 422, "comment"),
    (Role.INSPECTOR, "POST", f"/cases/{ID}/actions/confirm", '{"comment": "", "extra": 1}', 422, "extra"),
    (Role.INSPECTOR, "POST", f"/cases/{ID}/actions/explode", "{}", 422, "action"),
    (Role.INSPECTOR, "POST", "/cases/999999/actions/confirm", "{}", 404, "no case 999999"),
    (Role.INSPECTOR, "POST", "/cases/-1/actions/confirm", "{}", 422, "case_id"),
    (Role.INSPECTOR, "POST", "/cases/abc/actions/confirm", "{}", 422, "case_id"),
    (Role.INSPECTOR, "POST", "/cases/99999999999999999999/actions/confirm", "{}", 422, "case_id"),
    (Role.INSPECTOR, "POST", f"/cases/{ID}/actions/reject", '{"comment": "   "}', 422, "comment"),
    (Role.INSPECTOR, "POST", f"/cases/{ID}/actions/close", "{}", 409, "possible"),
    (Role.INSPECTOR, "POST", f"/cases/{ID}/kind", '{"kind": "flying_saucer"}', 422, "unknown kind"),
    (Role.INSPECTOR, "POST", f"/cases/{ID}/kind", '{"kind": ""}', 422, "kind"),
    (Role.INSPECTOR, "POST", f"/cases/{ID}/comments", '{"text": ""}', 422, "text"),
    (Role.INSPECTOR, "POST", f"/cases/{ID}/comments", '{"text": "' + "x" * 5000 + '"}', 422, "text"),
    (Role.VIEWER, "GET", "/cases?limit=100000", None, 422, "limit"),
    (Role.VIEWER, "GET", "/cases?limit=0", None, 422, "limit"),
    (Role.VIEWER, "GET", "/cases?offset=-5", None, 422, "offset"),
    (Role.VIEWER, "GET", "/cases?since=yesterday", None, 422, "since"),
    (Role.VIEWER, "GET", "/cases?since=2026-05-04T02:00:00", None, 422, "timezone"),
    (Role.VIEWER, "GET", "/cases?since=2026-05-05T00:00:00Z&until=2026-05-04T00:00:00Z", None, 422, "before"),
    (Role.VIEWER, "GET", "/cases?overdue=perhaps", None, 422, "overdue"),
    (Role.VIEWER, "GET", "/cases?q=" + "x" * 200, None, 422, "q"),
    (Role.INSPECTOR, "GET", "/cases.csv?limit=1000000", None, 422, "limit"),
    (Role.VIEWER, "GET", "/cases/999999", None, 404, "no case"),
    (Role.VIEWER, "GET", f"/cases/{ID}/evidence/../../etc/passwd", None, 404, ""),
    (Role.VIEWER, "GET", f"/cases/{ID}/evidence/%2e%2e/%2e%2e/etc/passwd", None, 400, "not an evidence key"),
    (
        Role.VIEWER,
        "GET",
        f"/cases/{ID}/evidence/cases/2026/05/04/1/..%2f..%2fsecret-000000000000.jpg",
        None,
        400,
        "not an evidence key",
    ),
    (
        Role.VIEWER,
        "GET",
        f"/cases/{ID}/evidence/cases/2026/05/04/{ID}/annotated-000000000000.jpg",
        None,
        404,
        "has no evidence",
    ),
    (
        Role.VIEWER,
        "GET",
        f"/cases/{ID}/evidence/cases/2026/05/04/777/annotated-000000000000.jpg",
        None,
        400,
        "not an evidence key",
    ),
    (Role.SERVICE, "POST", "/events", "{", 422, "json"),
    (Role.SERVICE, "POST", "/events", EVENT.replace("mh-0042", "../../etc"), 422, "device_id"),
    (Role.SERVICE, "POST", "/events", EVENT.replace("2026-05-04T10:00:00+08:00", "soon"), 422, "observed_at"),
    (Role.SERVICE, "POST", "/events", EVENT[:-1] + ', "readings": {"tilt": [1, 2]}}', 422, "readings"),
    (
        Role.SERVICE,
        "POST",
        "/events",
        EVENT[:-1] + ', "readings": ' + str(dict.fromkeys(map(str, range(40)), 1)).replace("'", '"') + "}",
        422,
        "readings",
    ),
    (Role.SERVICE, "POST", "/events", '{"device_id": "mh-0042"}', 422, "kind"),
    (Role.SERVICE, "POST", "/events", "x" * 1_100_000, 413, "body"),
    (Role.ADMIN, "POST", "/users", '{"username": "xy", "role": "god", "password": "long enough pw"}', 422, "role"),
    (
        Role.ADMIN,
        "POST",
        "/users",
        '{"username": "Bad Name!", "role": "viewer", "password": "long enough pw"}',
        422,
        "username",
    ),
    (
        Role.ADMIN,
        "POST",
        "/users",
        '{"username": "admin-user", "role": "viewer", "password": "long enough pw"}',
        409,
        "already exists",
    ),
    (Role.ADMIN, "POST", "/users/nobody/api-keys", "{}", 404, "no user"),
    (Role.SUPERVISOR, "GET", "/webhooks/deliveries", None, 404, "no webhook targets"),
    (None, "POST", "/auth/token", '{"username": "admin-user"}', 422, "password"),
    # Issue 16: weak passwords, loose ids, control characters in q, times outside years 1-9999 in UTC.
    *[
        (
            Role.ADMIN,
            "POST",
            "/users",
            '{"username": "weak", "role": "viewer", "password": ' + password + "}",
            422,
            "password",
        )
        for password in (
            '"          "',
            '"long enough\\u0000pw"',
            '"Password2024!"',
            '"\\t\\n\\t\\n\\t\\n\\t\\n\\t\\n"',
        )
    ],
    *[
        (Role.INSPECTOR, "POST", "/cases/actions/confirm", '{"ids": [' + ids + "]}", 422, "ids")
        for ids in ("true", '"1"', "1.0", "1.5")
    ],
    (Role.VIEWER, "GET", "/cases?q=%00", None, 422, "q"),
    (Role.VIEWER, "GET", "/cases?until=0.5", None, 422, "ISO 8601"),
    (Role.ADMIN, "PATCH", "/users/viewer-user", '{"disabled": 0}', 422, "disabled"),
    (Role.VIEWER, "GET", "/cases?q=gate%0A", None, 422, "q"),
    *[
        (role, "GET", f"{path}?{parameter}={time}", None, 422, parameter)
        for role, path in ((Role.VIEWER, "/cases"), (Role.INSPECTOR, "/cases.csv"), (Role.INSPECTOR, "/cases.geojson"))
        for parameter, time in (("until", "0001-01-01T00:00:00%2B23:59"), ("since", "9999-12-31T23:59:59-00:01"))
    ],
    (
        Role.SERVICE,
        "POST",
        "/events",
        '{"device_id": "mh-0042", "kind": "manhole_cover_tilt", "observed_at": "0001-01-01T00:00:00+23:59"}',
        422,
        "observed_at",
    ),
    # Issue 16: an anonymous body is refused before it is parsed (401, not 422).
    (None, "POST", f"/cases/{ID}/actions/confirm", "{not json", 401, "authentication required"),
    (None, "POST", "/events", '{"device_id": 7}', 401, "authentication required"),
    (None, "POST", "/users", "[", 401, "authentication required"),
]


@pytest.mark.parametrize(
    ("role", "method", "path", "body", "status", "word"), CASES, ids=[f"{c[1]} {c[2][:60]} {c[4]}" for c in CASES]
)
def test_bad_input_is_a_4xx_with_a_message_and_changes_nothing(
    api: Api, role: Role | None, method: str, path: str, body: str | None, status: int, word: str
) -> None:
    case_id = api.file(1)
    before = snapshot(api)
    headers = {"Content-Type": "application/json", **api.as_role(role)}
    response = api.client.request(method, path.replace(ID, str(case_id)), content=body, headers=headers)
    assert response.status_code == status, response.text[:500]
    assert word.lower() in response.json()["detail"].lower()
    assert snapshot(api) == before
