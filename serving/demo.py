"""The demo city: a real S3 server, a real RTSP server streaming the shipped clip, and the Serve app.

Everything it starts lives under one work directory and stops on Ctrl-C or SIGTERM (or after `run_for` seconds).
The city stays in the work directory between runs (cases, evidence, accounts); `fresh` starts an empty one.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from contextlib import ExitStack
from dataclasses import dataclass
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
DEMO_ADMIN = "admin"


def demo_assets() -> Path:
    return Path(str(resources.files("citywatch.serving") / "demo"))


@dataclass(frozen=True)
class DemoResult:
    cases: int
    """Cases in the city when the demo stopped (kept ones included)."""
    interrupted: bool
    """Stopped by Ctrl-C or SIGTERM rather than at the end of `run_for`."""


def run_demo(
    workdir: Path,
    *,
    port: int,
    run_for: float | None,
    console: Console,
    verbose: bool = False,
    fresh: bool = False,
) -> DemoResult:
    """Run the demo until Ctrl-C, SIGTERM or `run_for` seconds; the city in `workdir` continues unless `fresh`."""
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    kept = workdir.exists() and any(workdir.iterdir())
    workdir.mkdir(parents=True, exist_ok=True)
    assets = demo_assets()
    started = time.monotonic()
    with ExitStack() as stack:
        if kept:
            console.print(f"continuing the city in {workdir} (--fresh starts an empty one)")
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
        with running_city(config, verbose=verbose, state_dir=workdir, stop_signals=True) as api_url:
            console.print(f"API up at [cyan]{api_url}[/] after {time.monotonic() - started:.0f} s; watching…")
            console.print(f"review page: [cyan]{api_url}/ui[/] (log in as admin; cameras at {api_url}/ui/cameras)")
            result = _watch(config, api_url, endpoint.bucket, started, run_for, console, api_key=admin_key)
        console.print("stopping Ray Serve, the camera server and the object store…")
    return result


def _watch(
    config: CityConfig,
    api_url: str,
    bucket: str,
    started: float,
    run_for: float | None,
    console: Console,
    *,
    api_key: str,
) -> DemoResult:
    """Print each new case as it is filed, until Ctrl-C/SIGTERM or `run_for` seconds.

    A refused or failed call (the demo's key revoked, the API restarting) is printed and the watch goes on:
    the city runs whether or not the demo can see it.
    """
    last_id, total, interrupted = 0, 0, False
    deadline = None if run_for is None else time.monotonic() + run_for
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=api_url, timeout=10, headers=headers) as client:
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(2)
                listing = _get(client, "/cases", console, limit=50)
                if listing is None:
                    continue
                total = int(listing["total"])
                for case in sorted((c for c in listing["cases"] if c["id"] > last_id), key=lambda c: c["id"]):
                    if (detail := _get(client, f"/cases/{case['id']}", console)) is None:
                        break
                    _print_case(detail, api_url, bucket, started, console)
                    last_id = case["id"]
        except KeyboardInterrupt:
            console.print("stopping…")
            interrupted = True
    console.print(f"{total} case(s) in the city; database {config.storage.database}, bucket {bucket}")
    return DemoResult(total, interrupted)


def _get(client: httpx.Client, path: str, console: Console, **params: Any) -> Any:
    """The JSON of a 200 reply; otherwise prints what came back (status and detail) and returns None."""
    try:
        reply = client.get(path, params=params)
    except httpx.HTTPError as error:
        console.print(f"[yellow]watcher:[/] GET {path} failed: {error!r}; trying again")
        return None
    if reply.status_code != 200:
        try:
            detail = reply.json().get("detail", reply.text)
        except ValueError:
            detail = reply.text
        console.print(f"[yellow]watcher:[/] GET {path} → {reply.status_code}: {detail}; trying again")
        return None
    return reply.json()


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
    """The demo's admin account (the API needs a login) and a new API key for this run, printed for the user.

    The password is made and printed at the first start only; a continued city keeps its accounts.
    """
    from citywatch.cases.accounts import AccountStore
    from citywatch.cases.lifecycle import Role
    from citywatch.cases.store import CaseStore

    store = CaseStore.from_url(config.storage.database)
    accounts = AccountStore(store)
    if any(user.username == DEMO_ADMIN for user in accounts.list_users()):
        password = None
    else:
        password = secrets.token_urlsafe(12)
        accounts.add_user(DEMO_ADMIN, Role.ADMIN, password)
    key = accounts.create_api_key(DEMO_ADMIN, name="demo")
    store.engine.dispose()
    if password is None:
        console.print(f"API login: user [cyan]{DEMO_ADMIN}[/], the password printed at the city's first start, or")
    else:
        console.print(f"API login: user [cyan]{DEMO_ADMIN}[/], password [cyan]{password}[/] (POST /auth/token), or")
    api_url = f"http://{config.serving.host}:{config.serving.port}/cases"
    console.print(f"  curl -H 'Authorization: Bearer {key}' {api_url}", soft_wrap=True)
    return key
