"""`citywatch demo` as a user runs it, a separate process: where it listens, how it stops, what a restart keeps.

One demo starts in the background with SIGINT inherited as ignored (as from a shell script) and serves the first
tests: every listening socket of its processes is on loopback, Ray refuses a client without its token, revoking
its own key does not take it down, and SIGINT still stops it. Then the same workdir is started twice more: the
city continues (case 1 and its evidence), a SIGKILLed demo leaves no process behind, and SIGTERM stops cleanly.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from citywatch.serving.runner import RAY_TOKEN_FILE
from citywatch.stack.processes import free_port, port_is_listening
from citywatch.stack.rtsp import rtsp_available
from tests.procfs import alive, descendants, listeners
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

CITYWATCH = Path(sys.executable).with_name("citywatch")
START_TIMEOUT = 300  # a loaded 2-core machine: the demo is up in ~25 s when idle
STOP_TIMEOUT = 120
AUTH_REFUSED = re.compile(r"AuthenticationError|InvalidAuthToken|Authentication token is missing or incorrect")


@dataclass
class Demo:
    workdir: Path
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    children: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def fail(self, what: str) -> AssertionError:
        return AssertionError(f"{what}; demo output:\n{self.output()[-4000:]}")

    def wait_up(self) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise self.fail(f"the demo exited with {self.proc.returncode} while starting")
            return "watching…" in self.output()  # printed once the app is up and the watcher runs

        wait_until(up, START_TIMEOUT, "the demo's API", every=1)
        self.children = descendants(self.proc.pid)

    def api_key(self) -> str:
        """The key the demo's watcher calls with (printed on its curl line)."""
        return re.findall(r"Bearer (cwk_\S+?)'", self.output())[-1]

    def stop(self, sig: signal.Signals) -> int:
        """Send `sig` to the demo's own process (not its group, as `kill` would) and wait for it to exit."""
        self.children |= descendants(self.proc.pid)
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise self.fail(f"the demo did not exit within {STOP_TIMEOUT} s of {sig.name}") from None

    def assert_nothing_left(self) -> None:
        """Every process the demo started has exited and its API port is free again."""
        wait_until(
            lambda: not [pid for pid in self.children if alive(pid)] or None,
            STOP_TIMEOUT,
            "the demo's processes to exit",
            every=0.5,
        )
        assert not port_is_listening(self.port)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in self.children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def replica_grpc_status(port: int, token: str | None) -> grpc.StatusCode:
    """The status of one call to a Serve replica's inter-deployment gRPC service, with or without Ray's token."""
    metadata = None if token is None else [("authorization", f"Bearer {token}")]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/ray.serve.ASGIService/HandleRequest")
        try:
            call(b"", metadata=metadata, timeout=30)
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def start_demo(workdir: Path, log: Path, *, ignore_sigint: bool = False) -> Demo:
    """`citywatch demo` in its own session (as a service manager or a script's `&` would start it)."""
    port = free_port()
    command = [str(CITYWATCH), "demo", "--workdir", str(workdir), "--port", str(port)]
    if ignore_sigint:  # what a shell gives a background job: SIGINT ignored, inherited through exec
        command = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command]
    env = {**os.environ, "COLUMNS": "250", "TERM": "dumb"}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    return Demo(workdir, port, proc, log)


@dataclass
class FirstRun:
    demo: Demo
    headers: dict[str, str]
    """A test's own admin key (the watcher's is revoked by a test)."""
    first_case: dict[str, Any] | None = None

    def case_one(self) -> dict[str, Any]:
        """Case 1 with its evidence uploaded (waits for the demo to file it)."""
        if self.first_case is None:

            def filed() -> dict[str, Any] | None:
                reply = httpx.get(f"{self.demo.url}/cases/1", headers=self.headers, timeout=10)
                case: dict[str, Any] = reply.json() if reply.status_code == 200 else {}
                return case if case and all(e["uploaded"] for e in case["evidence"]) else None

            self.first_case = wait_until(filed, 300, "case 1 with its evidence uploaded", every=2)
        return self.first_case

    def stopped(self) -> FirstRun:
        """This run with case 1 filed, and stopped (SIGINT)."""
        self.case_one()
        if self.demo.proc.poll() is None:
            assert self.demo.stop(signal.SIGINT) == 0
        return self


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstRun]:
    if reason := rtsp_available():
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("demo")
    demo = start_demo(folder / "city", folder / "run-1.log", ignore_sigint=True)
    try:
        demo.wait_up()
        watcher = {"Authorization": f"Bearer {demo.api_key()}"}
        made = httpx.post(f"{demo.url}/users/admin/api-keys", json={"name": "tests"}, headers=watcher, timeout=10)
        assert made.status_code == 201, made.text
        yield FirstRun(demo, {"Authorization": f"Bearer {made.json()['api_key']}"})
    finally:
        demo.kill()


def test_every_listening_socket_is_loopback_and_ray_refuses_a_client_without_its_token(
    first_run: FirstRun, tmp_path: Path
) -> None:
    demo = first_run.demo
    found = listeners(demo.children | {demo.proc.pid})
    names = " ".join(listener.name for listener in found)
    # The services citywatch starts itself, and Ray's: all there, all on loopback.
    for program in ("weed", "rtsp_server_gst.py", "citywatch.stack.ptz_sim", "gcs_server", "raylet"):
        assert program in names, f"{program} is not listening: {found}"
    assert any(listener.port == demo.port for listener in found), "the API (Serve's proxy) is not listening"
    # Ray Serve's replicas call each other over a gRPC server that Ray binds to every interface ("[::]:0" in
    # ray.serve, no option): those are the only sockets off loopback, and each refuses a call without the token.
    token = (demo.workdir / RAY_TOKEN_FILE).read_text().strip()
    exposed = [listener for listener in found if not listener.loopback]
    assert all("ray::ServeReplica" in listener.name for listener in exposed), exposed
    for listener in exposed:
        assert replica_grpc_status(listener.port, None) == grpc.StatusCode.UNAUTHENTICATED, listener
        assert replica_grpc_status(listener.port, token) != grpc.StatusCode.UNAUTHENTICATED, listener

    # Ray's GCS takes no call without the cluster's token; with it, it does (the probe itself works).
    [gcs] = {listener.port for listener in found if "gcs_server" in listener.name}
    probe = f"import ray; ray.init(address='127.0.0.1:{gcs}'); print('connected', len(ray.nodes()))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env |= {"HOME": str(tmp_path), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # no ~/.ray/auth_token to find
    assert (demo.workdir / RAY_TOKEN_FILE).stat().st_mode & 0o777 == 0o600
    for extra in ({}, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token"}):
        refused = subprocess.run(
            [sys.executable, "-c", probe], env=env | extra, capture_output=True, text=True, timeout=180
        )
        assert refused.returncode != 0 and AUTH_REFUSED.search(refused.stderr), refused.stderr[-2000:]
    allowed = subprocess.run(
        [sys.executable, "-c", probe],
        env=env | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert "connected 1" in allowed.stdout, allowed.stderr[-2000:]


def test_the_demo_keeps_running_when_its_own_key_is_revoked(first_run: FirstRun) -> None:
    demo = first_run.demo
    key = demo.api_key()
    key_id = key.removeprefix("cwk_").split("_", 1)[0]
    revoked = httpx.delete(
        f"{demo.url}/users/admin/api-keys/{key_id}", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert revoked.status_code == 204, revoked.text
    # The watcher reports the refusal (status and detail) and keeps watching: twice, and the city still serves.
    wait_until(
        lambda: demo.output().count("watcher: GET /cases → 401") >= 2, 120, "the watcher to report the 401 twice"
    )
    assert demo.proc.poll() is None, demo.fail("the demo stopped after its key was revoked")
    assert httpx.get(f"{demo.url}/cases", headers=first_run.headers, timeout=10).status_code == 200
    assert "KeyError" not in demo.output()


def test_sigint_stops_a_demo_that_inherited_it_ignored(first_run: FirstRun) -> None:
    demo = first_run.demo
    first_run.case_one()
    assert demo.stop(signal.SIGINT) == 0
    demo.assert_nothing_left()


def test_a_restart_continues_the_city_and_a_killed_demo_leaves_nothing_behind(first_run: FirstRun) -> None:
    case = first_run.stopped().case_one()
    workdir, folder = first_run.demo.workdir, first_run.demo.log.parent

    second = start_demo(workdir, folder / "run-2.log")
    try:
        second.wait_up()
        assert "continuing the city" in second.output()
        kept = httpx.get(f"{second.url}/cases/1", headers=first_run.headers, timeout=10)
        assert kept.status_code == 200, kept.text
        assert {e["sha256"] for e in kept.json()["evidence"]} == {e["sha256"] for e in case["evidence"]}
        listing = httpx.get(f"{second.url}/cases", headers=first_run.headers, timeout=10).json()
        assert min(c["id"] for c in listing["cases"]) == 1  # numbering continues from the kept cases

        # SIGKILL: no cleanup code runs; the services must still go (parent-death signal, Ray's fate sharing).
        second.children |= descendants(second.proc.pid)
        second.proc.kill()
        second.proc.wait()
        second.assert_nothing_left()
    finally:
        second.kill()

    # The next start on the same workdir does not trip over what the killed one left; SIGTERM stops it cleanly.
    third = start_demo(workdir, folder / "run-3.log")
    try:
        third.wait_up()
        assert httpx.get(f"{third.url}/cases/1", headers=first_run.headers, timeout=10).status_code == 200
        assert third.stop(signal.SIGTERM) == 0, third.fail("SIGTERM did not stop the demo cleanly")
        third.assert_nothing_left()
        assert "Traceback" not in third.output(), third.fail("a stack was printed while stopping")
    finally:
        third.kill()
