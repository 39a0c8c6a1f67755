"""`citywatch users …`: create the first admin, service accounts for devices, API keys; list, disable, revoke."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from citywatch.cases.accounts import AccountError, AccountStore
from citywatch.cases.lifecycle import Role
from citywatch.cases.store import CaseStore
from citywatch.pipelines.config import ConfigError, load_config

users_app = typer.Typer(help="Accounts of the case API: users, roles, API keys.", no_args_is_help=True)
console = Console()

DatabaseOption = Annotated[
    str | None, typer.Option("--database", help="SQLAlchemy URL of the case database (or give --config)")
]
ConfigOption = Annotated[Path | None, typer.Option("--config", help="The city's YAML config (its storage.database)")]


def _accounts(database: str | None, config: Path | None) -> AccountStore:
    if (database is None) == (config is None):
        console.print("[red]give exactly one of --database or --config[/]")
        raise typer.Exit(2)
    if config is not None:
        try:
            database = load_config(config).anchored(Path.cwd()).storage.database
        except ConfigError as error:
            console.print(f"[red]config error:[/] {error}")
            raise typer.Exit(2) from None
    assert database is not None
    return AccountStore(CaseStore.from_url(database))


@contextmanager
def _refused_exits() -> Iterator[None]:
    """An AccountError (no such user, a duplicate, a bad role…) is printed in red and exits with status 1."""
    try:
        yield
    except AccountError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None


@users_app.command("add")
def add(
    username: Annotated[str, typer.Argument(help="Login name (lower case)")],
    role: Annotated[Role, typer.Option(help="viewer, inspector, supervisor, admin or service")] = Role.VIEWER,
    database: DatabaseOption = None,
    config: ConfigOption = None,
    password_env: Annotated[
        str | None, typer.Option(help="Read the password from this environment variable instead of a prompt")
    ] = None,
    api_key: Annotated[bool, typer.Option("--api-key", help="Also create an API key and print it once")] = False,
    no_password: Annotated[bool, typer.Option("--no-password", help="API keys only (devices, systems)")] = False,
) -> None:
    """Create a user. `citywatch users add admin --role admin --config city.yaml` makes the first admin."""
    accounts = _accounts(database, config)
    password: str | None = None
    if not no_password:
        if password_env is not None:
            password = os.environ.get(password_env)
            if not password:
                console.print(f"[red]environment variable {password_env} is empty or not set[/]")
                raise typer.Exit(2)
        else:
            password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    with _refused_exits():
        accounts.add_user(username, role, password)
        key = accounts.create_api_key(username, name="cli") if api_key or no_password else None
    console.print(f"user [cyan]{username}[/] created with role {role.value}")
    if key is not None:
        console.print(f"API key (shown once, keep it secret): {key}", soft_wrap=True)


@users_app.command("list")
def list_users(database: DatabaseOption = None, config: ConfigOption = None) -> None:
    """List accounts with their role and number of live API keys."""
    table = Table("id", "username", "role", "disabled", "API keys", "created")
    for user in _accounts(database, config).list_users():
        table.add_row(
            str(user.id),
            user.username,
            user.role.value,
            "yes" if user.disabled else "",
            str(user.api_keys),
            user.created_at.strftime("%Y-%m-%d %H:%M UTC"),
        )
    console.print(table)


@users_app.command("api-key")
def api_key(
    username: Annotated[str, typer.Argument(help="Whose key")],
    database: DatabaseOption = None,
    config: ConfigOption = None,
    name: Annotated[str, typer.Option(help="What the key is for")] = "",
    expires_days: Annotated[int | None, typer.Option(help="Valid this many days (default: until revoked)")] = None,
) -> None:
    """Create an API key for an existing user and print it once."""
    expires = None if expires_days is None else timedelta(days=expires_days)
    with _refused_exits():
        key = _accounts(database, config).create_api_key(username, name=name, expires_in=expires)
    console.print(f"API key (shown once, keep it secret): {key}", soft_wrap=True)


@users_app.command("disable")
def disable(
    username: Annotated[str, typer.Argument(help="Who")],
    database: DatabaseOption = None,
    config: ConfigOption = None,
    enable: Annotated[bool, typer.Option("--enable", help="Let the user back in instead")] = False,
) -> None:
    """Disable a user: logged out everywhere, their API keys refused. `--enable` undoes it."""
    with _refused_exits():
        _accounts(database, config).set_disabled(username, not enable)
    console.print(f"user [cyan]{username}[/] {'enabled' if enable else 'disabled'}")


@users_app.command("keys")
def keys(
    username: Annotated[str, typer.Argument(help="Whose keys")],
    database: DatabaseOption = None,
    config: ConfigOption = None,
) -> None:
    """List a user's API keys (never the secret)."""
    with _refused_exits():
        found = _accounts(database, config).list_api_keys(username)
    table = Table("key id", "name", "created", "expires", "revoked")
    for key in found:
        expires = key.expires_at.strftime("%Y-%m-%d") if key.expires_at else ""
        table.add_row(
            key.key_id, key.name, key.created_at.strftime("%Y-%m-%d %H:%M UTC"), expires, "yes" if key.revoked else ""
        )
    console.print(table)


@users_app.command("revoke-key")
def revoke_key(
    username: Annotated[str, typer.Argument(help="Whose key")],
    key_id: Annotated[str, typer.Argument(help="The key id (`cwk_<key id>_…`, or from `citywatch users keys`)")],
    database: DatabaseOption = None,
    config: ConfigOption = None,
) -> None:
    """Revoke one API key at once."""
    with _refused_exits():
        _accounts(database, config).revoke_api_key(username, key_id)
    console.print(f"API key {key_id} of [cyan]{username}[/] revoked")
