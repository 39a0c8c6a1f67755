"""Schemathesis against the real app (uvicorn, a real SQLite database, real S3): requests generated from the
OpenAPI spec, with an admin's API key and without credentials, every check on. It passes only with no server
error and no response that breaks the spec (status, content type, headers, body schema).

Bounded and reproducible: a fixed number of examples per operation, a fixed seed, deterministic generation, one
worker (about two minutes for both runs on two cores). The stateful phase is left out: it chains calls through
the spec's links and would disable and revoke the fuzzer's own accounts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from citywatch.cases.lifecycle import Role
from citywatch.serving.api import build_api
from citywatch.stack.s3 import S3Endpoint
from tests.serving.api_support import Api, Served, make_api, served

MAX_EXAMPLES = 40
SEED = 16
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture
def site(s3_server: S3Endpoint, tmp_path: Path) -> Iterator[tuple[Api, Served]]:
    api = make_api(f"sqlite:///{tmp_path / 'cases.db'}", s3_server, tmp_path)
    for index in range(3):
        api.file(index)  # cases 1-3, so generated ids sometimes name a real case
    with served(build_api(api.context)) as site:
        yield api, site


@pytest.mark.parametrize("role", [Role.ADMIN, None], ids=["admin", "anonymous"])
def test_generated_requests_get_no_server_error_and_answers_that_match_the_spec(
    site: tuple[Api, Served], role: Role | None, tmp_path: Path
) -> None:
    api, server = site
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        f"--config-file={CONFIG}",
        "run",
        f"{server.url}/openapi.json",
        "--checks=all",
        f"--max-examples={MAX_EXAMPLES}",
        f"--seed={SEED}",
        "--generation-deterministic",
        "--phases=examples,coverage,fuzzing",
        "--workers=1",
        "--request-timeout=30",
        "--no-color",
        *[f"--header=Authorization: Bearer {api.keys[role]}" for _ in [role] if role is not None],
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=480, cwd=tmp_path, env={**os.environ, "NO_COLOR": "1"}
    )
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
