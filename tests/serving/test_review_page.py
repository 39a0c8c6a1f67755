"""The review page in a real browser: Debian's Chromium (Playwright) against the real app served by uvicorn, a
real SQLite database and real S3, cases filed through the real filer with real JPEG evidence.

Screenshots of every page go to test-artifacts/ (gitignored): look at them after a change to the page.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import uvicorn

from citywatch.cases.lifecycle import Role
from citywatch.cases.store import Observation
from citywatch.pipelines.snapshots import SnapshotStore
from citywatch.serving.api import build_api
from citywatch.serving.i18n import STRINGS
from citywatch.stack.s3 import S3Endpoint
from tests.serving.api_support import PASSWORD, T0, Api, make_api
from tests.waiting import wait_until

playwright_sync = pytest.importorskip("playwright.sync_api", reason="install the dev extra (playwright)")
Page = playwright_sync.Page
expect = playwright_sync.expect

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
KINDS = ("motor_vehicle_illegal_parking", "road_occupying_business", "exposed_garbage")
CODES = {"motor_vehicle_illegal_parking": "09009", "road_occupying_business": "09006", "exposed_garbage": "06010"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium for this module only: Playwright's sync API holds an asyncio loop open in the main
    thread while it runs, and later tests that call asyncio.run() must not find it there."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing: `apt-get install -y chromium` (make test installs it)")
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    with playwright_sync.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    try:
        yield context.new_page()
    finally:
        context.close()


def _evidence(index: int) -> dict[str, tuple[bytes, str]]:
    """A street scene (road, kerb, a car-coloured block) as the three JPEG roles the camera pipeline files."""
    rng = np.random.default_rng(index)
    frame = np.full((360, 640, 3), (92, 96, 100), np.uint8)
    frame[:120] = (200, 170, 120)  # buildings
    cv2.rectangle(frame, (0, 120), (640, 140), (180, 180, 180), -1)  # kerb
    x = 80 + (index * 37) % 400
    color = tuple(int(c) for c in rng.integers(30, 230, 3))
    box = (x, 170, x + 120, 250)
    cv2.rectangle(frame, box[:2], box[2:], color, -1)
    cv2.circle(frame, (x + 25, 252), 14, (20, 20, 20), -1)
    cv2.circle(frame, (x + 95, 252), 14, (20, 20, 20), -1)
    annotated = frame.copy()
    zone = np.array([[40, 150], [600, 150], [630, 340], [10, 340]], np.int32)
    shade = annotated.copy()
    cv2.fillPoly(shade, [zone], (0, 212, 255))
    annotated = cv2.addWeighted(shade, 0.2, annotated, 0.8, 0)
    cv2.polylines(annotated, [zone], True, (0, 212, 255), 2)
    cv2.rectangle(annotated, (box[0] - 4, box[1] - 4), (box[2] + 4, box[3] + 4), (45, 17, 232), 3)
    cv2.putText(
        annotated,
        f"car 0.{70 + index % 29} | 6 min",
        (box[0], box[1] - 10),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.5,
        (45, 17, 232),
        2,
    )
    crop = frame[box[1] - 20 : box[3] + 20, box[0] - 20 : box[2] + 20]

    def jpeg(image: np.ndarray) -> bytes:
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        assert ok
        return data.tobytes()

    return {
        "annotated": (jpeg(annotated), "image/jpeg"),
        "crop": (jpeg(crop), "image/jpeg"),
        "frame": (jpeg(frame), "image/jpeg"),
    }


def seed(api: Api, count: int) -> list[int]:
    assert api.context.filer is not None
    ids = []
    for index in range(count):
        kind = KINDS[index % len(KINDS)]
        observation = Observation(
            kind=kind,
            code=CODES[kind],
            camera_id=("gate-3", "baiyun-0412")[index % 2],
            preset_id=f"p{index % 3}",
            zone=f"zone-{index}",
            rule="illegal_parking",
            class_name="car",
            confidence=0.55 + (index % 40) / 100,
            box=(80.0, 170.0, 200.0, 250.0),
            first_seen=T0 + timedelta(minutes=index),
            last_seen=T0 + timedelta(minutes=index + 6),
            model_version=("yolo11n-v1", "yolo11n-v2")[index % 2],
        )
        ids.append(api.context.filer.file_observation(observation, _evidence(index)).case_id)
    return ids


LOT = [[0.05, 0.45], [0.95, 0.45], [0.98, 0.95], [0.02, 0.95]]
KERB = [[0.0, 0.33], [1.0, 0.33], [1.0, 0.4], [0.0, 0.4]]


def _patrol(presets: dict[str, dict[str, Any]], current: str | None, visits: int, missed: int) -> dict[str, Any]:
    """A patrol's health as `CameraPatrol.health()` reports it (the parts the cameras page reads)."""
    return {
        "visits": visits,
        "missed": missed,
        "presets": list(presets),
        "zones": presets,
        "current_preset": current,
        "next_due": {p: (T0 + timedelta(minutes=15)).isoformat() for p in presets},
        "detectors": {},
        "last_error": None,
    }


async def _fleet_health() -> dict[str, Any]:
    """The fleet's report: gate-3 (a fixed camera), quiet-7 (a PTZ dome that never filed a case; one preset has
    a frame, the other none yet) and baiyun-0412 (offline)."""
    shot = {"key": "live/quiet-7/street.jpg", "captured_at": T0.isoformat(), "width": 640, "height": 360}
    return {
        "cameras": [
            {
                "camera_id": "gate-3",
                "online": True,
                "offline_since": None,
                "last_frame_at": T0.isoformat(),
                "ptz": False,
                "patrol": _patrol({"p0": {"lot": LOT}}, "p0", 42, 3),
                "snapshots": {"p0": {**shot, "key": "live/gate-3/p0.jpg"}},
            },
            {
                "camera_id": "quiet-7",
                "online": True,
                "offline_since": None,
                "last_frame_at": T0.isoformat(),
                "ptz": True,
                "patrol": _patrol({"street": {"lot": LOT, "kerb": KERB}, "bins": {"bins": KERB}}, "street", 9, 0),
                "snapshots": {"street": shot},
            },
            {
                "camera_id": "baiyun-0412",
                "online": False,
                "offline_since": T0.isoformat(),
                "last_frame_at": None,
                "ptz": False,
                "patrol": _patrol({"p1": {"lot": LOT}}, None, 7, 5),
                "snapshots": {},
            },
        ],
        "detectors": {},
    }


@dataclass
class Site:
    api: Api
    url: str

    def state(self, case_id: int) -> str:
        return self.case(case_id)["state"]

    def case(self, case_id: int) -> dict[str, Any]:
        response = self.api.client.get(f"/cases/{case_id}", headers=self.api.as_role(Role.ADMIN))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
def site(s3_server: S3Endpoint, tmp_path: Path) -> Iterator[Site]:
    """The real app on a free port, served by uvicorn in a thread."""
    api = make_api(f"sqlite:///{tmp_path / 'cases.db'}", s3_server, tmp_path)
    api.context.health = _fleet_health
    snapshots = SnapshotStore.from_endpoint(
        s3_server.endpoint, s3_server.access_key, s3_server.secret_key, f"{api.bucket}-live"
    )
    for key in ("live/quiet-7/street.jpg", "live/gate-3/p0.jpg"):
        snapshots.put(key, _evidence(3)["frame"][0])  # what the fleet's Snapshots would have stored
    api.context.snapshots = snapshots
    server = uvicorn.Server(uvicorn.Config(build_api(api.context), log_level="warning", lifespan="off"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 60, "uvicorn to start")
    try:
        yield Site(api, f"http://127.0.0.1:{sock.getsockname()[1]}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def login(page: Page, site: Site, role: Role, lang: str = "en") -> None:
    page.goto(f"{site.url}/ui/login?lang={lang}")
    page.fill("#username", f"{role.value}-user")
    page.fill("#password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/queue")
    page.wait_for_selector("body[data-ready]")


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def current_id(page: Page) -> int:
    return int(page.get_attribute(".card.current", "data-case") or 0)


def wait_count(page: Page, count: int) -> None:
    expect(page.locator("#count")).to_have_text(str(count))


def test_inspector_reviews_with_the_keyboard_bulk_rejects_and_undoes(page: Page, site: Site) -> None:
    ids = seed(site.api, 7)
    login(page, site, Role.INSPECTOR)
    wait_count(page, 7)
    expect(page.locator("#cur-annotated")).to_have_js_property("complete", True)
    assert page.eval_on_selector("#cur-annotated", "img => img.naturalWidth") == 640  # the real JPEG from S3
    shot(page, "queue")

    first = current_id(page)
    assert first == max(ids)  # newest first
    page.keyboard.press("c")
    wait_count(page, 6)
    assert site.state(first) == "confirmed"
    assert site.case(first)["audit"][-1]["actor"] == "inspector-user"

    second = current_id(page)
    page.keyboard.press("r")
    expect(page.locator("#picker")).to_be_visible()
    shot(page, "queue-reject-reason")
    page.keyboard.press("1")
    wait_count(page, 5)
    audit = site.case(second)["audit"]
    assert (site.state(second), audit[-1]["action"], audit[-1]["comment"]) == (
        "rejected",
        "reject",
        "误检 / False detection",
    )

    third = current_id(page)
    page.keyboard.press("t")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text("kind corrected")
    assert site.case(third)["audit"][-1]["action"] == "correct_kind"

    # bulk: select two, reject both with reason 3, then undo brings both back to review
    page.keyboard.press("x")
    page.keyboard.press("j")
    page.keyboard.press("x")
    expect(page.locator("#selected-count")).to_have_text("2")
    chosen = [int(x) for x in page.eval_on_selector_all(".card.selected", "cards => cards.map(c => c.dataset.case)")]
    page.keyboard.press("Shift+R")
    page.keyboard.press("3")
    wait_count(page, 3)
    assert [site.state(c) for c in chosen] == ["rejected", "rejected"]
    page.keyboard.press("u")
    wait_count(page, 5)
    for case_id in chosen:
        case = site.case(case_id)
        assert case["state"] == "under_review"
        assert [a["action"] for a in case["audit"]][-2:] == ["reject", "undo"]

    # filter by camera with the select, then back to all
    page.select_option("#f-camera", "gate-3")
    cameras = page.eval_on_selector_all(".card .card-text span:first-of-type", "s => s.map(x => x.textContent)")
    assert cameras and all(text.startswith("gate-3 /") for text in cameras), cameras
    page.select_option("#f-camera", "")
    wait_count(page, 5)

    page.keyboard.press("Enter")  # open the current case
    page.wait_for_url("**/ui/cases/*")
    page.wait_for_selector("body[data-ready]")
    for role in ("annotated", "crop", "frame"):
        expect(page.locator(f"img[data-role={role}]")).to_have_count(1)
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    expect(page.locator("#audit-rows tr")).not_to_have_count(0)
    shot(page, "case")

    page.goto(f"{site.url}/ui/dashboard")
    page.wait_for_selector("body[data-ready]")
    assert page.locator("#chart-kind svg rect").count() >= 1
    expect(page.locator("#chart-precision-kind")).to_contain_text("%")
    expect(page.locator("#tiles")).to_contain_text("Visits missed")
    shot(page, "dashboard")

    page.goto(f"{site.url}/ui/cameras")
    page.wait_for_selector("body[data-ready]")
    expect(page.locator("[data-camera=baiyun-0412] .badge")).to_have_text("offline")
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    # quiet-7 never filed a case: its street preset shows the fleet's latest frame with both zones drawn over it
    street = page.locator("[data-camera=quiet-7] figure[data-preset=street]")
    assert street.locator("img").evaluate("img => img.naturalWidth") == 640
    expect(street.locator("svg.zones polygon")).to_have_count(2)
    expect(street.locator(".zone-label")).to_have_text(["lot", "kerb"])
    expect(street).to_have_class("here")
    box = street.locator(".view").bounding_box()
    assert box is not None and abs(box["width"] / box["height"] - 640 / 360) < 0.02  # zones stretch over the frame
    bins = page.locator("[data-camera=quiet-7] figure[data-preset=bins]")
    expect(bins.locator(".noimg")).to_have_text("No frame yet")
    expect(bins.locator("svg.zones polygon")).to_have_count(1)  # the zone's shape shows without a frame
    expect(page.locator("[data-camera=baiyun-0412] figure .noimg")).to_have_count(1)
    expect(page.locator("#cameras-updated")).to_contain_text("Refreshed every 30 s")
    shot(page, "cameras")

    page.goto(f"{site.url}/ui/queue?lang=zh")
    page.wait_for_selector("body[data-ready]")
    expect(page.locator("nav a.here")).to_have_text(STRINGS["zh"]["queue"])
    shot(page, "queue-zh")


def test_a_supervisor_dispatches_a_case_to_a_department_from_its_page(page: Page, site: Site) -> None:
    [case_id] = seed(site.api, 1)
    confirmed = site.api.client.post(
        f"/cases/{case_id}/actions/confirm", json={}, headers=site.api.as_role(Role.INSPECTOR)
    )
    assert confirmed.status_code == 200, confirmed.text
    login(page, site, Role.SUPERVISOR, lang="zh")
    page.goto(f"{site.url}/ui/cases/{case_id}")
    page.wait_for_selector("body[data-ready]")
    page.select_option("#act-action", "dispatch")
    expect(page.locator("#target-label")).to_be_visible()
    page.fill("#act-target", "环卫所")
    page.click("#act-submit")
    expect(page.locator("#case-facts dd.department")).to_have_text("环卫所")
    expect(page.locator("#audit-rows tr").last).to_contain_text("→ 环卫所")
    shot(page, "case-dispatched-zh")
    assert (site.case(case_id)["state"], site.case(case_id)["department"]) == ("dispatched", "环卫所")


def test_a_viewer_sees_no_action_and_the_api_refuses_them(page: Page, site: Site) -> None:
    [case_id] = seed(site.api, 1)
    login(page, site, Role.VIEWER)
    wait_count(page, 1)
    expect(page.locator("#readonly")).to_be_visible()
    assert page.locator("#btn-confirm, #btn-reject, #btn-bulk-confirm, #btn-undo").count() == 0
    page.keyboard.press("c")
    expect(page.locator("#status")).to_contain_text("Read only")
    shot(page, "queue-viewer")
    token = page.evaluate("sessionStorage.getItem('cw_token')")
    refused = site.api.client.post(
        f"/cases/{case_id}/actions/confirm", json={}, headers={"Authorization": f"Bearer {token}"}
    )
    assert refused.status_code == 403, refused.text
    assert site.state(case_id) == "auto_filed"


def test_a_new_user_reviews_fifty_cases_with_the_keyboard_alone(page: Page, site: Site) -> None:
    ids = seed(site.api, 50)
    page.goto(f"{site.url}/ui/login?lang=en")
    expect(page.locator("#username")).to_be_focused()  # autofocus: typing goes there (wait: a loaded machine)
    page.keyboard.type("inspector-user")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/queue")
    page.wait_for_selector("body[data-ready]")
    wait_count(page, 50)
    started = time.monotonic()
    for done in range(1, 51):
        if done % 5 == 0:  # every fifth is a false detection
            page.keyboard.press("r")
            page.keyboard.press("1")
        else:
            page.keyboard.press("c")
        wait_count(page, 50 - done)
    elapsed = time.monotonic() - started
    expect(page.locator("#empty")).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "review-50-cases.txt").write_text(f"50 cases reviewed with the keyboard in {elapsed:.1f} s\n")
    print(f"\n50 cases reviewed with the keyboard in {elapsed:.1f} s")
    states = [site.state(i) for i in ids]
    assert states.count("confirmed") == 40
    assert states.count("rejected") == 10


def test_every_language_has_the_same_strings() -> None:
    zh, en = (set(STRINGS[lang]) for lang in ("zh", "en"))
    assert zh == en, f"only in zh: {sorted(zh - en)}; only in en: {sorted(en - zh)}"
