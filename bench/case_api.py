"""Case API latency: a filtered GET /cases over 100,000 cases, SQLite vs PostgreSQL, with concurrent clients.

    python bench/case_api.py            # 100,000 cases, 8 clients, 400 requests per database
    python bench/case_api.py --quick    # 10,000 cases, 4 clients, 100 requests (CI smoke run, under var/)

The real app (`build_api`) is served by uvicorn on 127.0.0.1 and called over HTTP with an API key, so each
request pays for authentication, the filtered page (limit 50), the filtered count and JSON. The same query
mix runs against each database; the store call alone (no HTTP) is timed too, to show where the time goes.
Query mix, drawn at random: (a) camera + state + a 7-day window, (b) kind + state, (c) free text.
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn
from common import environment, write_results

from citywatch.cases.db import CaseRow
from citywatch.cases.evidence import EvidenceStore
from citywatch.cases.lifecycle import Role, State
from citywatch.cases.store import CaseFilter, CaseStore
from citywatch.serving.api import ApiContext, build_api
from citywatch.stack.postgres import PostgresServer

KINDS = [
    "motor_vehicle_illegal_parking",
    "exposed_garbage",
    "road_occupying_business",
    "stacked_materials",
    "overflowing_bin",
]
CODES = {
    "motor_vehicle_illegal_parking": "09009",
    "exposed_garbage": "06010",
    "road_occupying_business": "09001",
    "stacked_materials": "06036",
    "overflowing_bin": "06042",
}
CAMERAS = [f"cam-{i:03d}" for i in range(50)]
STATES = [s.value for s in State]
END = datetime(2026, 5, 1, tzinfo=UTC)
SPAN_DAYS = 90


def populate(store: CaseStore, count: int, seed: int = 7) -> None:
    """`count` cases spread over 90 days, 50 cameras, 5 kinds, every state; inserted in bulk."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for index in range(count):
        created = END - timedelta(seconds=SPAN_DAYS * 86400 * (1 - index / count))
        kind = rng.choice(KINDS)
        rows.append(
            {
                "kind": kind,
                "code": CODES[kind],
                "state": rng.choice(STATES),
                "camera_id": rng.choice(CAMERAS),
                "preset_id": "main",
                "zone": f"zone-{rng.randrange(8)}",
                "rule": "bench",
                "class_name": "car",
                "confidence": 0.5,
                "box_x1": 0.0,
                "box_y1": 0.0,
                "box_x2": 10.0,
                "box_y2": 10.0,
                "first_seen": created,
                "last_seen": created,
                "created_at": created,
                "updated_at": created,
                "observations": 1,
                "model_version": "bench",
                "source": "camera",
                "state_changed_at": created,
                "due_at": created + timedelta(hours=2),
            }
        )
    with store.writing() as session:
        for start in range(0, count, 5000):
            session.execute(sa.insert(CaseRow), rows[start : start + 5000])
    with store.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("ANALYZE cases"))
        else:
            connection.execute(sa.text("ANALYZE"))


def query_mix(rng: random.Random) -> dict[str, str]:
    pick = rng.random()
    if pick < 0.5:
        since = END - timedelta(days=rng.uniform(7, SPAN_DAYS))
        return {
            "camera_id": rng.choice(CAMERAS),
            "state": rng.choice(STATES),
            "since": since.isoformat(),
            "until": (since + timedelta(days=7)).isoformat(),
        }
    if pick < 0.8:
        return {"kind": rng.choice(KINDS), "state": rng.choice(STATES)}
    return {"q": rng.choice(["garbage", "cam-01", "09009", "zone-3"])}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _no_health() -> dict[str, Any]:
    return {}


def serve(store: CaseStore) -> tuple[str, str, Callable[[], None]]:
    """The real app on a free port; returns its URL, an inspector's API key and a stop function."""
    evidence = EvidenceStore.from_endpoint("127.0.0.1:9", "k", "s", "bench-unused")  # list pages need no S3
    context = ApiContext(store=store, evidence=evidence, health=_no_health)
    context.accounts.add_user("bench", Role.INSPECTOR, "benchmark-password")
    key = context.accounts.create_api_key("bench")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_api(context), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return f"http://127.0.0.1:{port}", key, stop


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(store: CaseStore, clients: int, requests: int) -> dict[str, Any]:
    url, key, stop = serve(store)
    headers = {"Authorization": f"Bearer {key}"}
    try:
        latencies: list[float] = []
        lock = threading.Lock()

        def client(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
                http.get("/cases", params={"limit": 1}).raise_for_status()  # connect outside the timing
                for _ in range(requests // clients):
                    params = {**query_mix(rng), "limit": "50"}
                    start = time.perf_counter()
                    http.get("/cases", params=params).raise_for_status()
                    with lock:
                        latencies.append(time.perf_counter() - start)

        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(client, range(clients)))
        wall = time.perf_counter() - started
    finally:
        stop()
    direct: list[float] = []
    rng = random.Random(99)
    for _ in range(min(requests, 200)):
        params: dict[str, Any] = query_mix(rng)
        for name in ("since", "until"):
            if name in params:
                params[name] = datetime.fromisoformat(params[name])
        if "q" in params:
            params["text"] = params.pop("q")
        start = time.perf_counter()
        where = CaseFilter(**params)
        store.list_cases(where, limit=50, with_evidence=False)
        store.count_cases(where)
        direct.append(time.perf_counter() - start)
    return {
        "http_p50_ms": 1000 * percentile(latencies, 0.50),
        "http_p99_ms": 1000 * percentile(latencies, 0.99),
        "http_mean_ms": 1000 * statistics.fmean(latencies),
        "requests": len(latencies),
        "requests_per_s": len(latencies) / wall,
        "store_only_p50_ms": 1000 * percentile(direct, 0.50),
        "store_only_p99_ms": 1000 * percentile(direct, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 cases, 4 clients, 100 requests")
    parser.add_argument("--cases", type=int, default=None)
    parser.add_argument("--clients", type=int, default=None)
    parser.add_argument("--requests", type=int, default=None)
    args = parser.parse_args()
    cases = args.cases or (10_000 if args.quick else 100_000)
    clients = args.clients or (4 if args.quick else 8)
    requests = args.requests or (100 if args.quick else 400)

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cw-bench-") as tmp, PostgresServer() as postgres:
        urls = {"sqlite": f"sqlite:///{Path(tmp) / 'cases.db'}", "postgresql": postgres.create_database()}
        for name, url in urls.items():
            store = CaseStore.from_url(url, pool_size=clients + 2)
            started = time.perf_counter()
            populate(store, cases)
            print(f"{name}: {cases} cases inserted in {time.perf_counter() - started:.1f} s; measuring…")
            results[name] = measure(store, clients, requests)
            store.engine.dispose()
            print(f"{name}: {results[name]}")

    lines = [
        "# Case API: filtered list latency",
        "",
        f"{cases:,} cases, {clients} concurrent HTTP clients, {requests} requests per database; GET /cases with",
        "an API key, limit 50, plus the filtered total. Query mix: camera + state + 7-day window (50 %),",
        "kind + state (30 %), free text (20 %). `store only` is the same queries without HTTP, one at a time.",
        "",
        "| database | HTTP p50 | HTTP p99 | requests/s | store only p50 | store only p99 |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['http_p50_ms']:.1f} ms | {r['http_p99_ms']:.1f} ms | {r['requests_per_s']:.0f} | "
            f"{r['store_only_p50_ms']:.1f} ms | {r['store_only_p99_ms']:.1f} ms |"
        )
    report = "\n".join(lines) + "\n"
    payload = {
        "cases": cases,
        "clients": clients,
        "requests": requests,
        "results": results,
        "environment": environment(),
    }
    json_path, md_path = write_results("case_api", payload, report, quick=args.quick)
    print(report)
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
