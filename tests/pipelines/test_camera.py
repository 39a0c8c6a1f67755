"""The camera reader on bad input: one clear error naming the camera, and the reader keeps trying."""

from __future__ import annotations

import logging
import socket

import pytest

from citywatch.pipelines.camera import CameraUnavailable, RtspReader, redact
from citywatch.stack.processes import free_port
from tests.waiting import wait_until


def test_unreachable_camera_is_reported_once_with_its_id(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nothing listens there
    reader = RtspReader("gate-7", f"rtsp://admin:hunter2@127.0.0.1:{port}/live", open_timeout=1, backoff_min=0.1)
    caplog.set_level(logging.DEBUG, logger="citywatch.pipelines.camera")
    reader.start()
    try:
        with pytest.raises(CameraUnavailable, match=r"camera 'gate-7': cannot open rtsp://\*\*\*@127.0.0.1") as refused:
            reader.read(timeout=3)
        # Refused at once: the message says so, and does not claim a timeout it never waited for.
        assert "Connection refused" in str(refused.value) and "within" not in str(refused.value)
        wait_until(lambda: reader.health.reconnects >= 3, 60, "three retries")
    finally:
        reader.stop()
    health = reader.health
    assert not health.online
    assert health.reconnects >= 3  # it kept retrying
    assert health.offline_since is not None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per outage, not once per retry
    assert "gate-7" in warnings[0].getMessage()
    assert "hunter2" not in caplog.text  # credentials never reach the logs


def test_redact_hides_credentials_only() -> None:
    assert redact("rtsp://u:p@10.0.0.1:554/a") == "rtsp://***@10.0.0.1:554/a"
    assert redact("rtsp://10.0.0.1:554/a@b") == "rtsp://10.0.0.1:554/a@b"


def test_a_camera_that_never_answers_is_reported_with_the_timeout() -> None:
    with socket.socket() as silent:  # accepts the connection (the kernel does), never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        reader = RtspReader("mute-1", f"rtsp://127.0.0.1:{port}/live", open_timeout=1, backoff_min=5)
        reader.start()
        try:
            error = wait_until(lambda: reader.health.last_error, 30, "the open to time out")
        finally:
            reader.stop()
    assert "no answer within 1 s" in error, error
