"""The demo city: a real S3 server, a real RTSP server streaming the shipped clip, and the Serve app.

Everything it starts lives under one work directory and stops on Ctrl-C (or after `run_for` seconds).
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from contextlib import ExitStack
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from citywatch.pipelines.config import CityConfig, load_config
from citywatch.serving.runner import preflight, running_city
from citywatch.stack.ptz_sim import PtzCameraSim
from citywatch.stack.rtsp import RtspServer
from citywatch.stack.s3 import S3Server

DEMO_CAMERA = "parking-lot-1"
DEMO_PTZ_CAMERA = "dome-1"


def demo_assets() -> Path:
    return Path(str(resources.files("citywatch.serving") / "demo"))


def run_demo(workdir: Path, *, port: int, run_for: float | None, console: Console, verbose: bool = False) -> int:
    """Run the demo; returns the number of cases filed."""
    if workdir.exists():
        shutil.rmtree(workdir)  # every demo starts from an empty city
    workdir.mkdir(parents=True)
    assets = demo_assets()
    started = time.monotonic()
    with ExitStack() as stack:
        console.print("[bold]citywatch demo[/] — starting the object store and the camera server…")
        s3 = S3Server(workdir / "s3", log_path=workdir / "logs" / "s3.log", secret_key=secrets.token_hex(16))
        stack.callback(s3.stop)
        endpoint = s3.start()
        rtsp = RtspServer({DEMO_CAMERA: assets / "parking-demo.mp4"}, log_dir=workdir / "logs")
        stack.callback(rtsp.stop)
        urls = rtsp.start()
        # A PTZ camera patrolling two presets: the parking lot, and a kerb where garbage piles up.
        ptz = PtzCameraSim(
            {"1": assets / "parking-demo.mp4", "2": assets / "garbage-demo.mp4"},
            name=DEMO_PTZ_CAMERA,
            move_time=2.0,
            user="demo",
            password=secrets.token_hex(8),
            log_dir=workdir / "logs",
        )
        stack.callback(ptz.stop)
        dome = ptz.start()
        os.environ.update(
            {
                "CITYWATCH_S3_ENDPOINT": endpoint.endpoint,
                "CITYWATCH_S3_BUCKET": endpoint.bucket,
                "CITYWATCH_S3_KEY": endpoint.access_key,
                "CITYWATCH_S3_SECRET": endpoint.secret_key,
                "CITYWATCH_DEMO_RTSP": urls[DEMO_CAMERA],
                "CITYWATCH_DEMO_PTZ_RTSP": dome.rtsp_url,
                "CITYWATCH_DEMO_PTZ_ONVIF": dome.onvif,
                "CITYWATCH_DEMO_PTZ_USER": dome.user,
                "CITYWATCH_DEMO_PTZ_PASSWORD": dome.password,
                "CITYWATCH_HTTP_PORT": str(port),
            }
        )
        config = load_config(assets / "city.yaml").anchored(workdir)
        for problem in preflight(config):
            console.print(f"[red]problem:[/] {problem}")
        console.print(f"camera [cyan]{DEMO_CAMERA}[/] streams at {urls[DEMO_CAMERA]}")
        console.print(f"PTZ camera [cyan]{DEMO_PTZ_CAMERA}[/] (ONVIF {dome.onvif}) streams at {dome.rtsp_url}")
        admin_key = _demo_admin(config, console)
        console.print("starting Ray Serve (about 15 s)…")
        with running_city(config, verbose=verbose) as api_url:
            console.print(f"API up at [cyan]{api_url}[/] after {time.monotonic() - started:.0f} s; watching…")
            console.print(f"review page: [cyan]{api_url}/ui[/] (log in as admin; cameras at {api_url}/ui/cameras)")
            filed = _watch(config, api_url, endpoint.bucket, started, run_for, console, api_key=admin_key)
        console.print("stopping Ray Serve, the camera server and the object store…")
    return filed


def _watch(
    config: CityConfig,
    api_url: str,
    bucket: str,
    started: float,
    run_for: float | None,
    console: Console,
    *,
    api_key: str,
) -> int:
    """Print each new case as it is filed, until Ctrl-C or `run_for` seconds; returns the number of cases."""
    last_id, total = 0, 0
    deadline = None if run_for is None else time.monotonic() + run_for
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=api_url, timeout=10, headers=headers) as client:
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(2)
                listing = client.get("/cases", params={"limit": 50}).json()
                total = int(listing["total"])
                for case in sorted((c for c in listing["cases"] if c["id"] > last_id), key=lambda c: c["id"]):
                    _print_case(client.get(f"/cases/{case['id']}").json(), api_url, bucket, started, console)
                    last_id = case["id"]
        except KeyboardInterrupt:
            console.print("stopping…")
    console.print(f"{total} case(s) filed; database {config.storage.database}, bucket {bucket}")
    return total


def _print_case(case: dict[str, Any], api_url: str, bucket: str, started: float, console: Console) -> None:
    console.print(
        f"[green]case {case['id']} filed[/] {time.monotonic() - started:.0f} s after start: {case['code']} "
        f"{case['name_en']} ({case['name_zh']}), camera {case['camera_id']}, zone {case['zone']}, "
        f"{case['class_name']} {case['confidence']:.2f}"
    )
    console.print(f"  {api_url}/cases/{case['id']}")
    for item in case["evidence"]:
        if item["role"] == "annotated":
            console.print(f"  evidence s3://{bucket}/{item['key']} (sha256 {item['sha256'][:16]}…)")
            if item["url"]:
                console.print(f"  open it: {item['url']}", soft_wrap=True)


def _demo_admin(config: CityConfig, console: Console) -> str:
    """The demo's admin account (the API needs a login): printed once so the user can call the API."""
    from citywatch.cases.accounts import AccountStore
    from citywatch.cases.lifecycle import Role
    from citywatch.cases.store import CaseStore

    password = secrets.token_urlsafe(12)
    store = CaseStore.from_url(config.storage.database)
    accounts = AccountStore(store)
    accounts.add_user("admin", Role.ADMIN, password)
    key = accounts.create_api_key("admin", name="demo")
    store.engine.dispose()
    console.print(f"API login: user [cyan]admin[/], password [cyan]{password}[/] (POST /auth/token), or")
    api_url = f"http://{config.serving.host}:{config.serving.port}/cases"
    console.print(f"  curl -H 'Authorization: Bearer {key}' {api_url}", soft_wrap=True)
    return key
