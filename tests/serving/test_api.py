"""The case API on a real database (SQLite and PostgreSQL) and real S3: login, roles, workflow, exports, events."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from citywatch.cases.lifecycle import Role
from citywatch.stack.s3 import S3Endpoint
from tests.serving.api_support import PASSWORD, T0, Api, make_api

ALL_ROLES = tuple(Role)
STAFF = {Role.VIEWER, Role.INSPECTOR, Role.SUPERVISOR, Role.ADMIN}
INSPECTORS = {Role.INSPECTOR, Role.SUPERVISOR, Role.ADMIN}


@pytest.fixture
def api(database_url: str, s3_server: S3Endpoint, tmp_path: Path) -> Iterator[Api]:
    made = make_api(database_url, s3_server, tmp_path)
    with made.client:
        yield made


EVENT = {
    "device_id": "mh-0042",
    "kind": "manhole_cover_tilt",
    "observed_at": "2026-05-04T10:00:00+08:00",
    "readings": {"tilt_deg": 14.5, "water_level_cm": 3},
    "message": "cover lifted",
}

# (method, path, body, roles allowed). {case} is a fresh auto-filed case.
ROLE_TABLE = [
    ("GET", "/cases", None, STAFF),
    ("GET", "/cases/{case}", None, STAFF),
    ("GET", "/cases/{case}/audit", None, STAFF),
    ("GET", "/cases.csv", None, INSPECTORS),
    ("GET", "/cases.geojson", None, INSPECTORS),
    ("POST", "/cases/{case}/actions/confirm", {}, INSPECTORS),
    ("POST", "/cases/{case}/actions/reject", {"comment": "no car"}, INSPECTORS),
    ("POST", "/cases/{case}/kind", {"kind": "exposed_garbage"}, INSPECTORS),
    ("POST", "/cases/{case}/comments", {"text": "seen"}, INSPECTORS),
    ("POST", "/events", EVENT, {Role.SERVICE, Role.ADMIN}),
    ("GET", "/users", None, {Role.ADMIN}),
    ("POST", "/users", {"username": "new-one", "role": "viewer", "password": "long enough pw"}, {Role.ADMIN}),
    ("GET", "/auth/me", None, set(ALL_ROLES)),
]


@pytest.mark.parametrize(("method", "path", "body", "allowed"), ROLE_TABLE, ids=[f"{m} {p}" for m, p, *_ in ROLE_TABLE])
def test_each_role_is_refused_where_it_must_be(
    api: Api, method: str, path: str, body: dict[str, object] | None, allowed: set[Role]
) -> None:
    for role in (None, *ALL_ROLES):
        case = api.file(0 if role is None else list(Role).index(role) + 1)
        url = path.format(case=case)
        if url == "/users" and method == "POST":
            body = {**(body or {}), "username": f"new-{role or 'anon'}"}
        response = api.client.request(method, url, json=body, headers=api.as_role(role))
        if role is None:
            assert response.status_code == 401, (url, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
        elif role in allowed:
            assert response.status_code in {200, 201}, (role, url, response.text)
        else:
            assert response.status_code == 403, (role, url, response.text)
            assert role.value in response.json()["detail"]


def test_healthz_needs_no_login_and_bad_credentials_are_refused(api: Api) -> None:
    assert api.client.get("/healthz").json()["status"] == "ok"
    for header in ("Bearer cwt_nope", "Bearer cwk_abc_def", "Bearer garbage", "Basic dXNlcjpwYXNz"):
        response = api.client.get("/cases", headers={"Authorization": header})
        assert response.status_code == 401, header


def test_login_token_expires_and_logout_revokes(api: Api) -> None:
    wrong = api.client.post("/auth/token", json={"username": "admin-user", "password": "nope"})
    assert wrong.status_code == 401
    unknown = api.client.post("/auth/token", json={"username": "nobody", "password": "nope"})
    assert unknown.json()["detail"] == wrong.json()["detail"]  # no hint which part was wrong
    login = api.client.post("/auth/token", json={"username": "inspector-user", "password": PASSWORD}).json()
    assert login["role"] == "inspector"
    bearer = {"Authorization": f"Bearer {login['access_token']}"}
    assert api.client.get("/auth/me", headers=bearer).json() == {
        "username": "inspector-user",
        "role": "inspector",
        "via": "token",
    }
    assert api.client.post("/auth/logout", headers=bearer).status_code == 204
    assert api.client.get("/cases", headers=bearer).status_code == 401
    # Expiry: the store's clock moves past the token's lifetime.
    again = api.client.post("/auth/token", json={"username": "inspector-user", "password": PASSWORD}).json()
    store = api.context.store
    real_clock = store._clock
    store._clock = lambda: real_clock() + timedelta(hours=13)
    try:
        response = api.client.get("/cases", headers={"Authorization": f"Bearer {again['access_token']}"})
        assert response.status_code == 401 and "expired" in response.json()["detail"]
    finally:
        store._clock = real_clock


def test_repeated_failed_logins_are_refused_for_a_while(api: Api) -> None:
    def login(username: str, password: str) -> httpx.Response:
        return api.client.post("/auth/token", json={"username": username, "password": password})

    for _ in range(5):
        assert login("inspector-user", "guess-guess-guess").status_code == 401
    refused = login("inspector-user", PASSWORD)  # even the right password, until the window has passed
    assert refused.status_code == 429 and "inspector-user" in refused.json()["detail"]
    assert 800 < int(refused.headers["Retry-After"]) <= 900
    assert login("viewer-user", PASSWORD).status_code == 200  # another user from the same address logs in
    store = api.context.store
    real_clock = store._clock
    store._clock = lambda: real_clock() + timedelta(minutes=15, seconds=1)
    try:
        assert login("inspector-user", PASSWORD).status_code == 200
        for _ in range(4):  # a success cleared the user's failures: four more are not yet a lock-out
            assert login("inspector-user", "guess-guess-guess").status_code == 401
        assert login("inspector-user", PASSWORD).status_code == 200
    finally:
        store._clock = real_clock


def test_disabled_user_is_locked_out(api: Api) -> None:
    api.context.accounts.set_disabled("viewer-user", True)
    assert api.client.get("/cases", headers=api.as_role(Role.VIEWER)).status_code == 401


def test_admin_disables_users_and_revokes_api_keys(api: Api) -> None:
    admin = api.as_role(Role.ADMIN)
    inspector = api.as_role(Role.INSPECTOR)
    assert api.client.get("/cases", headers=inspector).status_code == 200
    disabled = api.client.patch("/users/inspector-user", json={"disabled": True}, headers=admin)
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    assert api.client.get("/cases", headers=inspector).status_code == 401  # their API key stops at once
    assert api.client.patch("/users/inspector-user", json={"disabled": False}, headers=admin).status_code == 200
    assert api.client.get("/cases", headers=inspector).status_code == 200
    lockout = api.client.patch("/users/admin-user", json={"disabled": True}, headers=admin)
    assert lockout.status_code == 409 and "another admin" in lockout.json()["detail"]

    gateway = api.client.post("/users/service-user/api-keys", json={"name": "gateway-7"}, headers=admin).json()
    key_id = gateway["api_key"].split("_")[1]
    keys = api.client.get("/users/service-user/api-keys", headers=admin).json()
    assert [(k["key_id"], k["name"], k["revoked"]) for k in keys][-1] == (key_id, "gateway-7", False)
    assert all("secret" not in k and "api_key" not in k for k in keys)
    gateway_headers = {"Authorization": f"Bearer {gateway['api_key']}"}
    assert api.client.get("/auth/me", headers=gateway_headers).status_code == 200
    assert api.client.delete(f"/users/service-user/api-keys/{key_id}", headers=admin).status_code == 204
    revoked = api.client.get("/auth/me", headers=gateway_headers)
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]
    assert api.client.get("/auth/me", headers=api.as_role(Role.SERVICE)).status_code == 200  # their other key

    for method, path, body in (
        ("delete", "/users/service-user/api-keys/nope", None),
        ("patch", "/users/nobody", {"disabled": True}),
        ("get", "/users/nobody/api-keys", None),
    ):
        response = api.client.request(method, path, json=body, headers=admin)
        assert response.status_code == 404, (path, response.text)
    assert api.client.patch("/users/viewer-user", json={"disabled": True}, headers=inspector).status_code == 403
    assert api.client.patch("/users/viewer-user", json={"disabled": "maybe"}, headers=admin).status_code == 422


def test_list_filters_and_pagination(api: Api) -> None:
    ids = [api.file(i, camera="gate-3" if i % 2 else "gate-4") for i in range(7)]
    garbage = api.file(99, kind="exposed_garbage")
    viewer = api.as_role(Role.VIEWER)
    page = api.client.get("/cases", params={"limit": 3, "offset": 2}, headers=viewer).json()
    assert page["total"] == 8
    assert [c["id"] for c in page["cases"]] == [ids[5], ids[4], ids[3]]
    by_camera = api.client.get("/cases", params={"camera_id": "gate-4"}, headers=viewer).json()
    assert {c["camera_id"] for c in by_camera["cases"]} == {"gate-4"} and by_camera["total"] == 4
    text = api.client.get("/cases", params={"q": "GARBAGE"}, headers=viewer).json()
    assert [c["id"] for c in text["cases"]] == [garbage]
    assert text["cases"][0]["name_en"] == "Exposed garbage"
    api.client.post(f"/cases/{ids[0]}/actions/confirm", json={}, headers=api.as_role(Role.INSPECTOR))
    confirmed = api.client.get("/cases", params={"state": "confirmed"}, headers=viewer).json()
    assert [c["id"] for c in confirmed["cases"]] == [ids[0]]
    now = api.context.store.now()
    future = api.client.get("/cases", params={"since": (now + timedelta(hours=1)).isoformat()}, headers=viewer)
    assert future.json()["total"] == 0
    window = {"since": (now - timedelta(hours=1)).isoformat(), "until": (now + timedelta(hours=1)).isoformat()}
    assert api.client.get("/cases", params=window, headers=viewer).json()["total"] == 8


def test_detail_has_evidence_urls_audit_and_allowed_actions(api: Api) -> None:
    case_id = api.file(1)
    detail = api.client.get(f"/cases/{case_id}", headers=api.as_role(Role.INSPECTOR)).json()
    [annotated] = detail["evidence"]
    assert annotated["uploaded"] and annotated["url"].startswith("http://")
    assert httpx.get(annotated["url"], timeout=10).content == b"\xff\xd8jpeg-1"
    assert [e["action"] for e in detail["audit"]] == ["file"]
    assert detail["allowed_actions"] == ["review", "confirm", "reject"]
    assert detail["location"] == [23.1291, 113.2644]  # the camera's, from the config
    viewer = api.client.get(f"/cases/{case_id}", headers=api.as_role(Role.VIEWER)).json()
    assert viewer["allowed_actions"] == []
    redirect = api.client.get(
        f"/cases/{case_id}/evidence/{annotated['key']}", headers=api.as_role(Role.VIEWER), follow_redirects=False
    )
    assert redirect.status_code == 307 and "X-Amz-Signature" in redirect.headers["location"]


def test_workflow_over_http_with_reasons_and_role_checks(api: Api) -> None:
    case_id = api.file(1)
    inspector, supervisor = api.as_role(Role.INSPECTOR), api.as_role(Role.SUPERVISOR)

    def act(action: str, headers: dict[str, str], comment: str = "") -> httpx.Response:
        return api.client.post(f"/cases/{case_id}/actions/{action}", json={"comment": comment}, headers=headers)

    assert act("reject", inspector).status_code == 422  # a reason is required
    assert act("confirm", inspector).json()["state"] == "confirmed"
    # Undo is offered only to whoever confirmed, not to every role the lifecycle table lets undo.
    offered = {
        who: api.client.get(f"/cases/{case_id}", headers=h).json()["allowed_actions"]
        for who, h in (("inspector", inspector), ("supervisor", supervisor))
    }
    assert "undo" in offered["inspector"] and "undo" not in offered["supervisor"], offered
    refused = act("dispatch", inspector)
    assert refused.status_code == 403 and "supervisor" in refused.json()["detail"]
    assert act("close", supervisor).status_code == 409  # not from confirmed
    dispatched = api.client.post(
        f"/cases/{case_id}/actions/dispatch", json={"target": "grid-baiyun-12"}, headers=supervisor
    ).json()
    assert (dispatched["state"], dispatched["department"]) == ("dispatched", "grid-baiyun-12")
    other = api.file(2)  # never dispatched: not in the department's list
    listed = api.client.get("/cases", params={"department": "grid-baiyun-12"}, headers=inspector).json()
    assert [c["id"] for c in listed["cases"]] == [case_id] and listed["total"] == 1
    assert api.client.get(f"/cases/{other}", headers=inspector).json()["department"] is None
    assert act("handle", inspector, "towed away").json()["state"] == "handled"
    assert act("verify", inspector).json()["state"] == "verified"
    closed = act("close", supervisor).json()
    assert closed["state"] == "closed"
    audit = api.client.get(f"/cases/{case_id}/audit", headers=api.as_role(Role.VIEWER)).json()
    assert [(a["action"], a["actor"]) for a in audit] == [
        ("file", "camera:gate-3"),
        ("confirm", "inspector-user"),
        ("dispatch", "supervisor-user"),
        ("handle", "inspector-user"),
        ("verify", "inspector-user"),
        ("close", "supervisor-user"),
    ]


def test_bulk_actions_decide_each_case_alone(api: Api) -> None:
    first, second, third = (api.file(i) for i in (1, 2, 3))
    inspector = api.as_role(Role.INSPECTOR)

    def bulk(action: str, body: dict[str, Any], headers: dict[str, str] = inspector) -> httpx.Response:
        return api.client.post(f"/cases/actions/{action}", json=body, headers=headers)

    assert api.client.post(f"/cases/{second}/actions/confirm", json={}, headers=inspector).status_code == 200
    result = bulk("reject", {"ids": [first, second, third, 99_999], "comment": "false detection"}).json()
    assert result["done"] == [first, third]
    assert [(r["id"], r["status"]) for r in result["refused"]] == [(second, 409), (99_999, 404)]
    assert "confirmed" in result["refused"][0]["detail"]
    states = {i: api.client.get(f"/cases/{i}", headers=inspector).json()["state"] for i in (first, second, third)}
    assert states == {first: "rejected", second: "confirmed", third: "rejected"}

    # Only whoever rejected may undo: another inspector's bulk undo is refused case by case, theirs goes through.
    api.context.accounts.add_user("second-inspector", Role.INSPECTOR, "another long password")
    other = {"Authorization": f"Bearer {api.context.accounts.create_api_key('second-inspector')}"}
    refused = bulk("undo", {"ids": [first, third]}, other).json()
    assert refused["done"] == [] and {r["status"] for r in refused["refused"]} == {409}
    assert bulk("undo", {"ids": [first, third]}).json()["done"] == [first, third]

    # Bad requests change nothing.
    for body, status in (
        ({"ids": []}, 422),
        ({"ids": [first, first]}, 422),
        ({"ids": list(range(1, 502))}, 422),
        ({"ids": [first], "target": "环卫所"}, 422),
        ({"ids": ["one"]}, 422),
        ({"ids": [2**40]}, 422),
        ({"ids": [0]}, 422),
    ):
        assert bulk("confirm", body).status_code == status, body
    assert bulk("confirm", {"ids": [first]}, api.as_role(Role.VIEWER)).status_code == 403
    assert bulk("explode", {"ids": [first]}).status_code == 422
    assert api.client.get(f"/cases/{first}", headers=inspector).json()["state"] == "under_review"


def test_correct_kind_and_comment(api: Api) -> None:
    case_id = api.file(1)
    inspector = api.as_role(Role.INSPECTOR)
    fixed = api.client.post(
        f"/cases/{case_id}/kind", json={"kind": "exposed_garbage", "comment": "bags, not a car"}, headers=inspector
    ).json()
    assert (fixed["kind"], fixed["code"]) == ("exposed_garbage", "06010")
    note = api.client.post(f"/cases/{case_id}/comments", json={"text": "called sanitation"}, headers=inspector)
    assert note.status_code == 201 and note.json()["action"] == "comment"
    audit = api.client.get(f"/cases/{case_id}/audit", headers=inspector).json()
    assert [a["action"] for a in audit] == ["file", "correct_kind", "comment"]
    assert audit[1]["details"]["old_code"] == "09009" and audit[1]["comment"] == "bags, not a car"


def test_csv_and_geojson_export(api: Api) -> None:
    first = api.file(1)
    api.file(2, camera="=cmd|' /C calc'!A0")  # a camera id that a spreadsheet would run as a formula
    event = api.client.post("/events", json=EVENT, headers=api.as_role(Role.SERVICE)).json()
    headers = api.as_role(Role.INSPECTOR)
    response = api.client.get("/cases.csv", headers=headers)
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text.lstrip("\ufeff"))))
    assert {r["id"] for r in rows} == {str(first), str(first + 1), str(event["case_id"])}
    assert {r["camera_id"] for r in rows} >= {"gate-3", "'=cmd|' /C calc'!A0"}
    geo = api.client.get("/cases.geojson", headers=headers).json()
    assert geo["type"] == "FeatureCollection" and geo["without_location"] == 1
    points = {f["id"]: f["geometry"]["coordinates"] for f in geo["features"]}
    assert points == {first: [113.2644, 23.1291], event["case_id"]: [113.27, 23.13]}


def test_device_events_file_one_case_with_evidence(api: Api) -> None:
    service = api.as_role(Role.SERVICE)
    first = api.client.post("/events", json=EVENT, headers=service).json()
    again = api.client.post(
        "/events", json={**EVENT, "observed_at": "2026-05-04T10:05:00+08:00"}, headers=service
    ).json()
    assert first["created"] and not again["created"] and again["case_id"] == first["case_id"]
    case = api.client.get(f"/cases/{first['case_id']}", headers=api.as_role(Role.VIEWER)).json()
    assert (case["source"], case["code"], case["name_en"]) == ("device", "90001", "Manhole cover tilted")
    assert case["observations"] == 2
    [evidence] = case["evidence"]
    assert evidence["content_type"] == "application/json" and evidence["uploaded"]
    assert b'"tilt_deg": 14.5' in httpx.get(evidence["url"], timeout=10).content
    assert case["audit"][0]["actor"] == "device:mh-0042"
    assert case["audit"][0]["details"]["readings"] == {"tilt_deg": 14.5, "water_level_cm": 3}
    for body, status in (
        ({**EVENT, "device_id": "mh-9999"}, 404),
        ({**EVENT, "kind": "motor_vehicle_illegal_parking"}, 422),
        ({**EVENT, "observed_at": "2026-05-04T10:00:00"}, 422),  # no timezone
    ):
        assert api.client.post("/events", json=body, headers=service).status_code == status
    assert T0  # the fixture's time base is UTC
