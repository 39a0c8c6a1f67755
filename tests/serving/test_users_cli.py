"""`citywatch users …` on a real SQLite database: what an admin does when the HTTP API is not at hand."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from citywatch.cases.accounts import AccountStore, AuthenticationFailed
from citywatch.cases.store import CaseStore
from citywatch.serving.users_cli import users_app


def test_add_disable_enable_list_and_revoke_keys(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'cases.db'}"
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(users_app, [*args, "--database", database])
        assert result.exit_code == 0, result.output
        return result.output

    created = run("add", "gateway-7", "--role", "service", "--no-password")
    key = created.split("keep it secret): ")[1].split()[0]
    accounts = AccountStore(CaseStore.from_url(database))
    assert accounts.authenticate(key).username == "gateway-7"

    assert "disabled" in run("disable", "gateway-7")
    with pytest.raises(AuthenticationFailed, match="disabled"):
        accounts.authenticate(key)
    run("disable", "gateway-7", "--enable")
    assert accounts.authenticate(key).username == "gateway-7"

    key_id = key.split("_")[1]
    assert key_id in run("keys", "gateway-7")
    assert "revoked" in run("revoke-key", "gateway-7", key_id)
    with pytest.raises(AuthenticationFailed, match="revoked"):
        accounts.authenticate(key)

    unknown = runner.invoke(users_app, ["revoke-key", "gateway-7", "nope", "--database", database])
    assert unknown.exit_code == 1 and "no API key 'nope'" in unknown.output
    nobody = runner.invoke(users_app, ["disable", "nobody", "--database", database])
    assert nobody.exit_code == 1 and "no user 'nobody'" in nobody.output
