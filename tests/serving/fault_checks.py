"""Fault injection on the real app, shared by the tests (`test_faults_*.py`) and `bench/faults.py`.

`check_case_data` is the one checker every fault ends with: it downloads every evidence object the case
database records and compares its sha256 and size, and counts open cases that are one problem filed twice.
The scenarios inject one fault each into a running city and wait (generous deadlines, never a timing assert)
until it has recovered; each returns how long recovery took, for the benchmark's report.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import Any

import yaml
from minio.error import S3Error

from citywatch.cases.filing import CaseFiler
from citywatch.cases.lifecycle import OPEN_STATES
from citywatch.cases.records import CaseRecord
from citywatch.cases.spool import EvidenceSpool
from citywatch.cases.store import CaseStore
from citywatch.pipelines.config import CityConfig, parse_config
from citywatch.stack.processes import free_port
from citywatch.stack.rtsp import RtspServer
from citywatch.stack.s3 import S3Endpoint, S3Server
from citywatch.vision.boxes import box_iou
from tests.waiting import wait_until

APP = "citywatch"
CAMERA = "fault-cam"
ATTACH_IOU: float = inspect.signature(CaseFiler).parameters["min_iou"].default
"""The filer's attach threshold: two open cases of one place overlapping this much are one problem twice."""
FIRE_LANE = [[0.52, 0.90], [0.80, 0.90], [0.80, 1.0], [0.52, 1.0]]
"""The demo clip's fire lane (serving/demo/city.yaml), where parked cars stay for the whole loop."""


# -- the checker -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseDataCheck:
    """What the case database and the evidence bucket hold, and what does not add up."""

    cases: int
    evidence: int
    """Evidence rows in the database."""
    pending: int
    """Rows not yet marked uploaded whose object is not in the bucket yet (in the spool, or being uploaded)."""
    lost: tuple[str, ...] = ()
    """Evidence keys marked uploaded but absent, or whose stored bytes differ from the recorded sha256/size."""
    duplicated: tuple[tuple[int, int], ...] = ()
    """Pairs of open cases of one camera, preset, zone and kind whose boxes overlap at the attach threshold."""
    unrecorded: tuple[str, ...] = ()
    """Objects under cases/ in the bucket that no evidence row names."""

    def counts(self) -> dict[str, int]:
        return {
            "cases": self.cases,
            "evidence": self.evidence,
            "pending": self.pending,
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "unrecorded": len(self.unrecorded),
        }


def _download(endpoint: S3Endpoint, key: str) -> bytes | None:
    client = endpoint.client()
    try:
        response = client.get_object(endpoint.bucket, key)
    except S3Error as error:
        if error.code == "NoSuchKey":
            return None
        raise
    try:
        return bytes(response.read())
    finally:
        response.close()
        response.release_conn()


def duplicate_open_cases(cases: list[CaseRecord]) -> tuple[tuple[int, int], ...]:
    """Pairs of open cases of one place (camera, preset, zone, kind) whose boxes overlap at `ATTACH_IOU`."""
    places: dict[tuple[str, str | None, str, str], list[CaseRecord]] = {}
    for case in cases:
        if case.state in OPEN_STATES:
            places.setdefault((case.camera_id, case.preset_id, case.zone, case.kind), []).append(case)
    return tuple(
        (a.id, b.id)
        for same_place in places.values()
        for a, b in combinations(sorted(same_place, key=lambda c: c.id), 2)
        if box_iou(a.box, b.box) >= ATTACH_IOU
    )


def check_case_data(database_url: str, endpoint: S3Endpoint) -> CaseDataCheck:
    """Download every evidence object `database_url` records from `endpoint.bucket` and compare it."""
    store = CaseStore.from_url(database_url, migrate=False)
    try:
        cases = store.list_cases(limit=1_000_000)
    finally:
        store.engine.dispose()
    records = [e for c in cases for e in c.evidence]
    lost: list[str] = []
    pending = 0
    for record in records:
        data = _download(endpoint, record.key)
        if data is None:
            if record.uploaded:
                lost.append(record.key)
            else:
                pending += 1
        elif hashlib.sha256(data).hexdigest() != record.sha256 or len(data) != record.size:
            lost.append(record.key)
        elif not record.uploaded:
            pending += 1  # stored, not marked yet: the filer or the spool's drain marks it next
    recorded = {r.key for r in records}
    stored = endpoint.client().list_objects(endpoint.bucket, prefix="cases/", recursive=True)
    unrecorded = sorted(str(o.object_name) for o in stored if o.object_name not in recorded)
    return CaseDataCheck(
        cases=len(cases),
        evidence=len(records),
        pending=pending,
        lost=tuple(lost),
        duplicated=duplicate_open_cases(cases),
        unrecorded=tuple(unrecorded),
    )


def settled_check(database_url: str, endpoint: S3Endpoint, timeout: float = 180) -> CaseDataCheck:
    """The check once nothing is pending (every evidence row uploaded and marked); fails after `timeout` s."""

    def settled() -> CaseDataCheck | None:
        check = check_case_data(database_url, endpoint)
        return check if check.pending == 0 else None

    check = wait_until(settled, timeout, "every evidence object uploaded and marked", every=1)
    assert check is not None
    return check


# -- the city under test --------------------------------------------------------------------------------------------


def fault_city(rtsp_url: str, endpoint: S3Endpoint, root: Path, *, live_bucket: str, port: int) -> dict[str, Any]:
    """One fixed camera over the demo clip, sampled once a second, whose fire lane files a case per parked car.

    The smallest city that still files: one camera, one detector replica, one fleet replica (2 CPUs in all)."""
    zone = {"polygon": FIRE_LANE, "rules": ["parking"]}
    return {
        "storage": {
            "evidence": {
                "endpoint": endpoint.endpoint,
                "bucket": endpoint.bucket,
                "access_key": endpoint.access_key,
                "secret_key": endpoint.secret_key,
            },
            # Its own live bucket: the patrol counters there are per camera id and must not mix with other runs.
            "live": {"bucket": live_bucket},
            "database": f"sqlite:///{root / 'cases.db'}",
            "spool_dir": str(root / "spool"),
        },
        "rules": {
            "parking": {
                "type": "dwell",
                "kind": "motor_vehicle_illegal_parking",
                "classes": ["car", "truck"],
                "min_dwell": "4s",
                "min_confidence": 0.4,
                "repeat_every": "2s",
            }
        },
        "cameras": {CAMERA: {"rtsp": rtsp_url, "presets": {"fixed": {"sample_every": "1s", "zones": {"z": zone}}}}},
        "serving": {"port": port, "detector_cpus": 0.5, "fleet_cpus": 0.5, "max_batch_size": 4},
    }


def new_bucket(endpoint: S3Endpoint, prefix: str) -> S3Endpoint:
    """The same S3 server with a fresh bucket of its own."""
    bucket = f"{prefix}-{uuid.uuid4().hex[:8]}"
    endpoint.client().make_bucket(bucket)
    return replace(endpoint, bucket=bucket)


@dataclass
class Stack:
    """A running city (Ray Serve in this process) and the real servers it uses."""

    config: CityConfig
    rtsp: RtspServer
    endpoint: S3Endpoint
    url: str
    store: CaseStore = field(repr=False)

    @property
    def database_url(self) -> str:
        return self.config.storage.database


@contextmanager
def running_stack(rtsp: RtspServer, endpoint: S3Endpoint, root: Path) -> Iterator[Stack]:
    """`fault_city` on Ray Serve until the block exits; `endpoint`'s bucket holds its evidence."""
    from citywatch.serving.runner import running_city

    document = fault_city(
        rtsp.urls["demo"], endpoint, root, live_bucket=f"cw-fault-live-{uuid.uuid4().hex[:8]}", port=free_port()
    )
    config = parse_config(document).anchored(root)
    store = CaseStore.from_url(config.storage.database)
    try:
        with running_city(config, num_cpus=2) as url:
            yield Stack(config, rtsp, endpoint, url, store)
    finally:
        store.engine.dispose()


# -- reading the running city ----------------------------------------------------------------------------------------


def now() -> datetime:
    return datetime.now(UTC)


def camera_health(timeout: float = 10) -> dict[str, Any] | None:
    """The fault camera's health from the fleet (None while no replica answers)."""
    from ray import serve

    try:
        handle = serve.get_deployment_handle("CameraFleet", app_name=APP)
        cameras = handle.health.remote().result(timeout_s=timeout)["cameras"]
    except Exception:  # the replica is being replaced: ask again
        return None
    return next((c for c in cameras if c["camera_id"] == CAMERA), None)


def visit_done_after(moment: datetime) -> datetime | None:
    """When the camera's first completed visit after `moment` finished, if it had one (from its patrol)."""
    health = camera_health()
    if health is None:
        return None
    done = [
        datetime.fromisoformat(v["finished"])
        for v in health["patrol"]["recent_visits"]
        if v["outcome"] == "done" and datetime.fromisoformat(v["finished"]) > moment
    ]
    return min(done) if done else None


def observations(store: CaseStore) -> int:
    """Sightings filed so far: each new case and each attachment adds one."""
    return sum(c.observations for c in store.list_cases(limit=1_000_000, with_evidence=False))


def wait_for_cases(stack: Stack, timeout: float = 300) -> int:
    """Wait until the city has filed at least one case; returns the number of sightings so far."""
    wait_until(lambda: stack.store.count_cases() > 0, timeout, "the first case", every=1)
    return observations(stack.store)


def wait_for_new_sighting(store: CaseStore, before: int, timeout: float = 240) -> float:
    """Wait until a sighting is filed or attached after `before` were; returns the monotonic time it was seen."""
    wait_until(lambda: observations(store) > before, timeout, f"a sighting after the {before} before", every=0.5)
    return time.monotonic()


def replica_names(deployment: str) -> set[str]:
    """The Ray actor names of `deployment`'s live replicas."""
    import ray

    prefix = f"SERVE_REPLICA::{APP}#{deployment}#"
    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)}


def kill_replica(deployment: str) -> str:
    """Kill one replica of `deployment` (its process ends at once, like a crash); returns its actor name."""
    import ray

    name = sorted(replica_names(deployment))[0]
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    return name


# -- the scenarios ---------------------------------------------------------------------------------------------------


def rtsp_outage(stack: Stack, down_s: float) -> dict[str, float]:
    """The RTSP server dies for `down_s` s and comes back on its port; the publisher keeps sending.

    Recovered: the camera completes a visit again (seconds after the server is back), and a new sighting of the
    parked car is filed or attached."""
    before = observations(stack.store)
    server = next(p for p in stack.rtsp.processes if "publisher" not in p.name)
    server.kill()
    killed = time.monotonic()
    wait_until(lambda: (h := camera_health()) is not None and not h["online"], 120, "the camera to go offline", every=1)
    time.sleep(max(0.0, down_s - (time.monotonic() - killed)))  # the outage itself, not a wait for a result
    stack.rtsp.restart_server()
    back, back_wall = time.monotonic(), now()
    patrolled = wait_until(lambda: visit_done_after(back_wall), 180, "a visit after the server came back", every=0.5)
    assert patrolled is not None
    seen = wait_for_new_sighting(stack.store, before)
    return {
        "outage_s": back - killed,
        "patrolled_s": (patrolled - back_wall).total_seconds(),
        "sighting_s": seen - back,
    }


def fleet_replica_killed(stack: Stack) -> dict[str, float]:
    """The CameraFleet replica's process is killed; Serve starts another, whose patrol takes the camera back."""
    before = observations(stack.store)
    killed_name = kill_replica("CameraFleet")
    killed, killed_wall = time.monotonic(), now()
    wait_until(lambda: replica_names("CameraFleet") - {killed_name}, 180, "a new CameraFleet replica", every=0.5)
    replaced = time.monotonic()

    def patrolled_by_new_replica() -> datetime | None:
        health = camera_health()
        if health is None or datetime.fromisoformat(health["patrol"]["started_at"]) <= killed_wall:
            return None  # still the dead replica's last report
        return visit_done_after(killed_wall)

    patrolled = wait_until(patrolled_by_new_replica, 180, "a visit by the new replica's patrol", every=0.5)
    assert patrolled is not None
    seen = wait_for_new_sighting(stack.store, before)
    return {
        "replica_s": replaced - killed,
        "patrolled_s": (patrolled - killed_wall).total_seconds(),
        "sighting_s": seen - killed,
    }


def detector_replica_killed(stack: Stack) -> dict[str, float]:
    """The Detector replica's process is killed; Serve starts another, and the camera's samples are detected again."""
    killed_name = kill_replica("Detector-default")
    killed = time.monotonic()
    wait_until(lambda: replica_names("Detector-default") - {killed_name}, 180, "a new Detector replica", every=0.5)
    replaced = time.monotonic()
    health = wait_until(camera_health, 60, "the fleet's health report", every=0.5)
    assert health is not None
    samples = health["patrol"]["samples"]  # counted only when the detector answered

    def detected_again() -> bool:
        later = camera_health()
        return later is not None and later["patrol"]["samples"] > samples

    wait_until(detected_again, 180, "a frame detected by the new Detector replica", every=0.5)
    detected = time.monotonic()
    before = observations(stack.store)
    seen = wait_for_new_sighting(stack.store, before)
    return {"replica_s": replaced - killed, "detection_s": detected - killed, "sighting_s": seen - killed}


# -- the whole app killed hard and started again ---------------------------------------------------------------------


@dataclass
class ServeProcess:
    """`citywatch serve city.yaml` in its own session on a work folder (its database, spool and config)."""

    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    runs: int = 0

    def start(self) -> None:
        self.runs += 1
        log = (self.workdir / f"serve-{self.runs}.log").open("wb")
        argv = [sys.executable, "-m", "citywatch.serving.cli", "serve", "city.yaml", "--num-cpus", "2"]
        self.process = subprocess.Popen(
            argv, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def descendants(self) -> set[int]:
        """Every process of the app's process group and below it now (Ray's own processes included)."""
        assert self.process is not None
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(parent, []).append(int(entry.name))
        found, todo = set(), [self.process.pid]
        while todo:
            pid = todo.pop()
            found.add(pid)
            todo += children.get(pid, [])
        return found

    def kill_hard(self) -> list[str]:
        """SIGKILL the app's process group, as a power cut would; returns the processes left running after 30 s
        (they are then killed by their ids, so the next start finds a clean machine)."""
        assert self.process is not None
        tree = self.descendants()
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        survivors = wait_for_exit(tree - {self.process.pid}, 30)
        left = [f"{pid} {command_of(pid)}" for pid in survivors]
        for pid in survivors:
            kill_quietly(pid)
        return left

    def stop(self) -> None:
        """Stop it as systemd would (SIGTERM), then hard after 60 s."""
        if self.process is None or self.process.poll() is not None:
            return
        tree = self.descendants()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        for pid in wait_for_exit(tree - {self.process.pid}, 30):
            kill_quietly(pid)

    def log_tail(self) -> str:
        path = self.workdir / f"serve-{self.runs}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
    except OSError:
        return "?"


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_for_exit(pids: set[int], timeout: float) -> set[int]:
    """The `pids` still running after up to `timeout` s."""
    deadline = time.monotonic() + timeout
    while (running := {p for p in pids if alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.5)
    return running


def kill_quietly(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@dataclass
class RestartReport:
    seconds: dict[str, float]
    left_running: list[str]
    """Processes of the killed app still running 30 s after the kill (the parent-death gap, issue 16 item 9)."""
    run1_cases: dict[int, int]
    """Case id → observations when the app was killed."""
    run2_cases: dict[int, int]
    check: CaseDataCheck


def app_killed_and_restarted(workdir: Path, rtsp_url: str, s3_root: Path) -> RestartReport:
    """The whole app SIGKILLed while its evidence waits in the spool (S3 down), then started again on the same
    database, bucket and spool with S3 back.

    Recovered: the spool drains, a case filed before the kill is attached to, and ids continue."""
    log = s3_root.parent / "weed.log"
    s3 = S3Server(s3_root, log_path=log, bucket="cw-restart")
    endpoint = s3.start()  # makes the bucket; then down: the first run files with the object store down
    s3.stop()
    port = int(endpoint.endpoint.rsplit(":", 1)[1])  # it comes back where the app looks for it
    s3 = S3Server(s3_root, log_path=log, bucket="cw-restart", secret_key=endpoint.secret_key, port=port)
    document = fault_city(rtsp_url, endpoint, workdir, live_bucket="cw-restart-live", port=free_port())
    (workdir / "city.yaml").write_text(yaml.safe_dump(document))
    database = f"sqlite:///{workdir / 'cases.db'}"
    spool = EvidenceSpool(workdir / "spool")
    app = ServeProcess(workdir)
    try:
        app.start()
        wait_until(
            lambda: app_running(app) and spool.pending() > 0, 300, "a case filed into the spool (S3 down)", every=1
        )
        run1 = case_observations(database)
        left = app.kill_hard()
        s3.start()
        app.start()
        restarted = time.monotonic()
        wait_until(lambda: app_running(app) and spool.pending() == 0, 300, "the spool to drain", every=0.5)
        drained = time.monotonic()
        wait_until(
            lambda: app_running(app) and any(case_observations(database).get(i, 0) > n for i, n in run1.items()),
            300,
            "a sighting attached to a case filed before the kill",
            every=0.5,
        )
        attached = time.monotonic()
        run2 = case_observations(database)
        check = settled_check(database, endpoint)
        app.stop()
    except BaseException:
        print(app.log_tail(), file=sys.stderr)
        raise
    finally:
        app.stop()
        s3.stop()
    seconds = {"spool_drained_s": drained - restarted, "attached_s": attached - restarted}
    return RestartReport(seconds, left, run1, run2, check)


def app_running(app: ServeProcess) -> bool:
    """True while the app runs; an exited app fails the wait at once with its log."""
    assert app.process is not None
    if app.process.poll() is not None:
        raise AssertionError(f"citywatch serve exited with {app.process.returncode}:\n{app.log_tail()}")
    return True


def case_observations(database_url: str) -> dict[int, int]:
    store = CaseStore.from_url(database_url, migrate=False)
    try:
        return {c.id: c.observations for c in store.list_cases(limit=1_000_000, with_evidence=False)}
    except Exception:  # the app has not made its tables yet
        return {}
    finally:
        store.engine.dispose()
