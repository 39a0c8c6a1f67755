"""`citywatch check` on real files: rule classes against the model's own class names (with "did you mean"),
unknown fields with suggestions, a registry model not promoted yet, and `--cameras` against a real RTSP server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from citywatch.serving.cli import app
from citywatch.stack.processes import free_port
from citywatch.stack.rtsp import RtspServer
from tests.configs import no_store

ZONE = {"polygon": [[0, 0], [1, 0], [1, 1]], "rules": ["parking"]}


def city(classes: list[str], *, rtsp: str = "rtsp://127.0.0.1:1/a", **extra: Any) -> dict[str, Any]:
    return {
        "storage": no_store(),
        "detectors": {"street": {"model": "builtin:coco-yolo11n"}},
        "rules": {
            "parking": {"type": "dwell", "kind": "motor_vehicle_illegal_parking", "classes": classes, "min_dwell": "1m"}
        },
        "cameras": {"gate-1": {"rtsp": rtsp, "detector": "street", "presets": {"main": {"zones": {"kerb": ZONE}}}}},
        **extra,
    }


def check(tmp_path: Path, document: dict[str, Any], *args: str) -> tuple[int, str]:
    path = tmp_path / "city.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    result = CliRunner().invoke(app, ["check", str(path), *args], terminal_width=250)
    return result.exit_code, " ".join(result.output.split())


def test_a_class_the_model_does_not_have_is_named_with_close_ones(tmp_path: Path) -> None:
    code, output = check(tmp_path, city(["car", "truk"]))
    assert code == 1, output
    assert (
        "rules → parking → classes: 'truk' is not a class of detector 'street' (used by gate-1/main); "
        "did you mean 'truck'?" in output
    )
    assert "'car' is not" not in output
    code, output = check(tmp_path, city(["car", "truck"]))
    assert code == 0 and "problem" not in output, output


def test_an_unknown_field_gets_a_did_you_mean(tmp_path: Path) -> None:
    document = city(["car"])
    document["rules"]["parking"]["min_dwel"] = "2m"
    document["cameras"]["gate-1"]["presets"]["main"]["setle"] = "2s"
    code, output = check(tmp_path, document)
    assert code == 2, output
    assert "rules → parking → min_dwel: Extra inputs are not permitted; did you mean 'min_dwell'" in output
    assert "setle: Extra inputs are not permitted; did you mean 'settle'" in output


def test_a_registry_model_not_promoted_yet_is_said_so(tmp_path: Path) -> None:
    document = city(["car"])
    document["detectors"]["street"]["model"] = "registry:street-v2"
    code, output = check(tmp_path, document, "--models", str(tmp_path / "registry"))
    assert code == 1, output
    assert "detectors → street → model:" in output and "street-v2" in output
    assert "classes of its rules are not checked" in output


def test_cameras_are_opened_once_with_their_size_or_the_exact_error(tmp_path: Path, rtsp_server: RtspServer) -> None:
    document = city(["car"], rtsp=rtsp_server.urls["demo"])
    refused = f"rtsp://user:secret@127.0.0.1:{free_port()}/nothing"
    document["cameras"]["gone-2"] = {**document["cameras"]["gate-1"], "rtsp": refused}
    code, output = check(tmp_path, document, "--cameras")
    assert code == 1, output
    assert "640×360" in output
    assert "camera 'gone-2': cannot open rtsp://***@127.0.0.1" in output and "Connection refused" in output
    assert "secret" not in output
