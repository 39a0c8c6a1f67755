"""Warnings before filing: tables of hand-made violations with frame times, a real HTTP receiver, a real filer."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from citywatch.cases.evidence import EvidenceStore
from citywatch.cases.filing import CaseFiler
from citywatch.cases.spool import EvidenceSpool
from citywatch.cases.store import CaseStore
from citywatch.pipelines.config import ConfigError, parse_config
from citywatch.pipelines.sink import CaseSink
from citywatch.pipelines.warnings import HttpWarning, WarningGate, WarnPolicy
from citywatch.stack.s3 import S3Endpoint
from citywatch.vision.frame import Frame
from citywatch.vision.violation import Violation

T0 = datetime(2026, 5, 4, 2, 0, tzinfo=UTC)
GRACE = timedelta(minutes=3)
TOLERANCE = timedelta(minutes=2)
POLYGON = np.array([[0, 24], [319, 24], [319, 239], [0, 239]], dtype=np.int32)


def violation(
    at_s: float,
    *,
    x: float = 20.0,
    camera: str = "gate-3",
    zone: str = "sidewalk",
    kind: str = "road_occupying_business",
    rule: str = "street_vending",
) -> Violation:
    """A stall at column `x` of a 320×240 frame, reported `at_s` seconds after T0 (its frame time)."""
    seen = T0 + timedelta(seconds=at_s)
    image = np.full((240, 320, 3), 90, dtype=np.uint8)
    image[100:160, int(x) : int(x) + 60] = 200
    return Violation(
        kind=kind,
        code="08001" if kind == "road_occupying_business" else "09009",
        rule=rule,
        zone=zone,
        class_name="umbrella",
        confidence=0.7,
        box=(x, 100.0, x + 60.0, 160.0),
        first_seen=T0,
        last_seen=seen,
        frame=Frame(image, camera, "main", seen, int(at_s)),
        zone_polygon=POLYGON,
    )


class Recorder:
    """The sink the gate passes violations on to."""

    def __init__(self) -> None:
        self.filed: list[Violation] = []

    async def __call__(self, violation: Violation) -> None:
        self.filed.append(violation)


@dataclass
class Receiver:
    """A real little HTTP speaker gateway: records the JSON warnings it is sent, answers `status`."""

    url: str
    status: int = 204
    payloads: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.payloads.append(json.loads(body))
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/speak"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def refused_url() -> str:
    """A port nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/speak"


def gate_for(url: str, sink: Any, *, retries: int = 0) -> WarningGate:
    speaker = HttpWarning("speaker", url, retries=retries, retry_after=timedelta(0), timeout=timedelta(seconds=2))
    policy = WarnPolicy("speaker", GRACE, TOLERANCE)
    return WarningGate(sink, {"speaker": speaker}, {("gate-3", "main", "street_vending"): policy})


async def replay(gate: WarningGate, reports: list[Violation]) -> None:
    for report in reports:
        await gate(report)
    await gate.aclose()


# (name, reports, frame times (s) that reach the sink, warned, cleared, filed after warning)
TABLE = [
    ("still there after the grace: filed once, then attached", [violation(t) for t in (0, 60, 120, 180, 240)],
     [180, 240], 1, 0, 1),
    ("gone within the grace: never filed", [violation(t) for t in (0, 60)] + [violation(400, x=250)],
     [], 2, 1, 0),
    ("back after grace + tolerance: warned again, not filed", [violation(t) for t in (0, 60, 301, 361)],
     [], 2, 1, 0),
    ("a re-report after the grace but within the tolerance files", [violation(t) for t in (0, 299)],
     [299], 1, 0, 1),
    ("two problems apart are independent", [violation(0), violation(30, x=250), violation(180), violation(400)],
     [180, 400], 2, 1, 1),
    ("same box, another zone: another problem", [violation(0), violation(10, zone="gate"), violation(200)],
     [200], 2, 0, 1),
    ("a rule without `warn` passes straight through", [violation(0, rule="illegal_parking",
     kind="motor_vehicle_illegal_parking")], [0], 0, 0, 0),
]  # fmt: skip


@pytest.mark.parametrize(
    ("reports", "filed_at", "warned", "cleared", "filed_after"), [row[1:] for row in TABLE], ids=[r[0] for r in TABLE]
)
def test_grace_table(
    receiver: Receiver, reports: list[Violation], filed_at: list[int], warned: int, cleared: int, filed_after: int
) -> None:
    sink = Recorder()
    gate = gate_for(receiver.url, sink)
    asyncio.run(replay(gate, reports))
    assert [(v.last_seen - T0).total_seconds() for v in sink.filed] == filed_at
    assert (gate.stats.warned, gate.stats.cleared, gate.stats.filed_after_warning) == (warned, cleared, filed_after)
    assert len(receiver.payloads) == warned
    assert gate.stats.action_failures == 0


def test_warning_payload_names_the_place_and_speaks_both_languages(receiver: Receiver) -> None:
    gate = gate_for(receiver.url, Recorder())
    asyncio.run(replay(gate, [violation(0, x=40)]))
    (payload,) = receiver.payloads
    assert payload["camera_id"] == "gate-3" and payload["preset_id"] == "main" and payload["zone"] == "sidewalk"
    assert payload["kind"] == "road_occupying_business" and payload["box"] == [40.0, 100.0, 100.0, 160.0]
    assert payload["seen_at"] == T0.isoformat() and payload["grace_s"] == 180.0
    assert "3分钟" in payload["text_zh"] and "3 minutes" in payload["text_en"]


@pytest.mark.parametrize("failure", ["refused", "http 500"])
def test_failing_speaker_still_files_after_the_grace(receiver: Receiver, failure: str) -> None:
    receiver.status = 500
    url = refused_url() if failure == "refused" else receiver.url
    sink = Recorder()
    gate = gate_for(url, sink, retries=2)
    asyncio.run(replay(gate, [violation(t) for t in (0, 90, 200)]))
    assert [(v.last_seen - T0).total_seconds() for v in sink.filed] == [200]
    assert gate.stats.action_failures == 1 and gate.stats.filed_after_warning == 1
    assert len(receiver.payloads) == (3 if failure == "http 500" else 0)  # one attempt and two retries
    # the warning runs in the background: its failure may be recorded before or after the filing
    assert sorted(r["outcome"] for r in gate.health()["recent"]) == ["action_failed", "filed", "warned"]


def test_a_sink_failure_after_the_grace_keeps_the_hold(receiver: Receiver) -> None:
    class Flaky(Recorder):
        async def __call__(self, violation: Violation) -> None:
            if not self.filed and not getattr(self, "failed", False):
                self.failed = True
                raise RuntimeError("database down")
            await super().__call__(violation)

    sink = Flaky()
    gate = gate_for(receiver.url, sink)

    async def scenario() -> None:
        await gate(violation(0))
        with pytest.raises(RuntimeError):
            await gate(violation(180))
        await gate(violation(200))
        await gate.aclose()

    asyncio.run(scenario())
    assert [(v.last_seen - T0).total_seconds() for v in sink.filed] == [200]


# -- config ----------------------------------------------------------------------------------------------------

CONFIG = """
storage:
  evidence: {endpoint: "127.0.0.1:8333", access_key: k, secret_key: s}
actions:
  speaker: {type: http, url: "URL", timeout: 2s, retries: 0}
rules:
  street_vending:
    {type: presence, kind: road_occupying_business, classes: [umbrella], repeat_every: 1m, warn: WARN}
  illegal_parking: {type: dwell, kind: motor_vehicle_illegal_parking, classes: [car], min_dwell: 5m}
cameras:
  gate-3:
    rtsp: rtsp://127.0.0.1:8554/gate-3
    presets:
      main:
        zones:
          sidewalk: {polygon: [[0, 0], [1, 0], [1, 1]], rules: [street_vending, illegal_parking]}
"""


def config_text(url: str = "http://127.0.0.1:9/speak", warn: str = "{action: speaker, grace: 3m}") -> str:
    return CONFIG.replace("URL", url).replace("WARN", warn)


def test_gate_from_config_warns_the_configured_rule_only(receiver: Receiver) -> None:
    import yaml

    config = parse_config(yaml.safe_load(config_text(receiver.url)))
    sink = Recorder()
    gate = WarningGate.from_config(config, sink)
    speaker = gate.actions["speaker"]  # the action as configured: its URL, timeout and retries
    assert isinstance(speaker, HttpWarning)
    assert (speaker.url, speaker.timeout, speaker.retries) == (receiver.url, 2.0, 0)
    # sample_every 2 s × 5 samples is shorter than repeat_every: the tolerance defaults to twice 1 min
    assert gate.policies == {("gate-3", "main", "street_vending"): WarnPolicy("speaker", GRACE, timedelta(minutes=2))}
    asyncio.run(replay(gate, [violation(0), violation(0, rule="illegal_parking", x=200), violation(190)]))
    assert [v.rule for v in sink.filed] == ["illegal_parking", "street_vending"]
    assert len(receiver.payloads) == 1
    # hot reload: the rule stops warning, then warns again with a longer grace through the same speaker
    gate.apply(config)
    assert gate.actions["speaker"] is speaker  # unchanged: the same client
    gate.apply(parse_config(yaml.safe_load(config_text(receiver.url, warn="null"))))
    assert gate.policies == {} and gate.actions == {}
    gate.apply(parse_config(yaml.safe_load(config_text(receiver.url, warn="{action: speaker, grace: 5m}"))))
    assert gate.policies[("gate-3", "main", "street_vending")].grace == timedelta(minutes=5)
    assert gate.actions["speaker"] is not speaker  # it was dropped in between: a new client


@pytest.mark.parametrize(
    ("warn", "url", "message"),
    [
        ("{action: speaker, grace: 1m}", None, r"rules → street_vending: .*warn → grace: 0:01:00 must be longer"),
        ("{action: horn, grace: 3m}", None, r"rules → street_vending → warn → action: no action named 'horn'"),
        ("{action: speaker, grace: 3m, tolerance: 5s}", None,
         r"cameras → gate-3 → presets → main → zones → sidewalk: rules → street_vending → warn → tolerance"),
        ("{action: speaker, grace: 3m, volume: 11}", None, r"rules → street_vending → warn → volume"),
        ("{action: speaker, grace: 3m}", "ftp://speaker", r"actions → speaker → url"),
    ],
)  # fmt: skip
def test_config_errors_name_the_field(warn: str, url: str | None, message: str) -> None:
    import yaml

    with pytest.raises(ConfigError, match=message):
        parse_config(yaml.safe_load(config_text(url or "http://127.0.0.1:9/speak", warn)))


# -- with the real filer ---------------------------------------------------------------------------------------


def test_real_filer_gets_one_case_for_a_warned_stall_that_stays(
    receiver: Receiver, s3_server: S3Endpoint, tmp_path: Path
) -> None:
    evidence = EvidenceStore.from_endpoint(
        s3_server.endpoint, s3_server.access_key, s3_server.secret_key, f"cw-warn-{uuid.uuid4().hex[:12]}"
    )
    evidence.ensure_bucket()
    store = CaseStore.from_url(f"sqlite:///{tmp_path / 'cases.db'}")
    gate = gate_for(receiver.url, CaseSink(CaseFiler(store, evidence, EvidenceSpool(tmp_path / "spool"))))
    stays = [violation(t) for t in (0, 60, 120, 180, 240)]
    leaves = [violation(t, x=240) for t in (10, 70)]
    asyncio.run(replay(gate, sorted(stays + leaves, key=lambda v: v.last_seen)))
    (case,) = store.list_cases()
    assert case.box == (20.0, 100.0, 60.0 + 20.0, 160.0) and case.observations == 2
    assert case.last_seen == T0 + timedelta(seconds=240)
    assert len(receiver.payloads) == 2
