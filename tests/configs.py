"""Config pieces the tests share."""

from __future__ import annotations

from typing import Any


def no_store() -> dict[str, Any]:
    """A `storage` section whose object store is never reached (nothing is filed, or the test does not need S3).

    A new dict each call: tests change the config they are given."""
    return {"evidence": {"endpoint": "127.0.0.1:1", "access_key": "k", "secret_key": "s"}}
