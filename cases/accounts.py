"""Accounts: users with a role, scrypt-hashed passwords, API keys and expiring bearer tokens, in the case database.

Only hashes are stored. Passwords get scrypt (stdlib, memory-hard, salted); API keys and tokens are 256-bit
random strings, so one sha256 is enough to store them safely and lets a request be checked with one indexed
lookup. Credentials look like `cwk_<key id>_<secret>` (API key) and `cwt_<secret>` (token).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from importlib import resources

import sqlalchemy as sa
from sqlalchemy.orm import Session

from citywatch.cases.db import ApiKeyRow, TokenRow, UserRow
from citywatch.cases.lifecycle import Role
from citywatch.cases.store import CaseStore

USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._@-]{1,63}$"
_USERNAME = re.compile(USERNAME_PATTERN)
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
API_KEY_PREFIX = "cwk_"
TOKEN_PREFIX = "cwt_"


class AccountError(ValueError):
    """A bad username, password or role, or a duplicate user."""


class InvalidAccount(AccountError):
    """A username, role or password that breaks the rules (the request is wrong, not the state)."""


class AccountNotFound(AccountError, LookupError):
    """No such user, or no such API key of theirs."""


class AuthenticationFailed(PermissionError):
    """Wrong, expired or revoked credentials (the message never says which part was wrong)."""


@dataclass(frozen=True)
class Principal:
    """Who is making a request."""

    user_id: int
    username: str
    role: Role
    via: str
    """password, token or api_key."""


@dataclass(frozen=True)
class UserInfo:
    id: int
    username: str
    role: Role
    disabled: bool
    created_at: datetime
    api_keys: int


@dataclass(frozen=True)
class ApiKeyInfo:
    """An API key as an admin sees it: never the secret."""

    key_id: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    revoked: bool


@cache
def _common_passwords() -> frozenset[str]:
    text = resources.files("citywatch.cases").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def check_password(password: str) -> None:
    """The strength rule for every password set (API, `citywatch users`, the demo's admin), or AccountError.

    At least MIN_PASSWORD characters that are not all whitespace, no control characters (a NUL cuts some
    tools' strings short), and not a common password, alone or with digits or symbols added around it.
    """
    if len(password) < MIN_PASSWORD or len(password) > MAX_PASSWORD:
        raise InvalidAccount(f"password must have {MIN_PASSWORD} to {MAX_PASSWORD} characters; got {len(password)}")
    if not password.strip():
        raise InvalidAccount("password must not be all whitespace")
    if any(unicodedata.category(c) == "Cc" for c in password):
        raise InvalidAccount("password must not contain control characters (NUL, newline, tab, ...)")
    lowered = password.lower()
    core = re.sub(r"^[\W\d_]+|[\W\d_]+$", "", lowered)
    if lowered in _common_passwords() or core in _common_passwords():
        raise InvalidAccount("password is a common password (or one with digits or symbols added): choose another")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, maxmem=64 * 1024 * 1024, **_SCRYPT)
    encode = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${encode(salt).decode()}${encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=64 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Checked when nobody matches, so a wrong username costs as much time as a wrong password.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


class AccountStore:
    """Users, API keys and tokens in the same database as the cases."""

    def __init__(self, store: CaseStore) -> None:
        self.store = store

    def add_user(self, username: str, role: Role | str, password: str | None = None) -> int:
        """Create a user; `password` None makes an API-key-only account (cameras, devices, outside systems)."""
        if not _USERNAME.match(username):
            raise InvalidAccount(f"username {username!r} must match {_USERNAME.pattern}")
        try:
            role = Role(role)
        except ValueError:
            raise InvalidAccount(f"role {role!r} must be one of {', '.join(r.value for r in Role)}") from None
        if password is not None:
            check_password(password)
        hashed = None if password is None else hash_password(password)
        with self.store.writing() as session:
            if session.scalar(sa.select(UserRow.id).where(UserRow.username == username)) is not None:
                raise AccountError(f"user {username!r} already exists")
            row = UserRow(
                username=username, role=role.value, password_hash=hashed, disabled=False, created_at=self.store.now()
            )
            session.add(row)
            session.flush()
            return row.id

    def set_disabled(self, username: str, disabled: bool) -> None:
        with self.store.writing() as session:
            row = session.scalars(sa.select(UserRow).where(UserRow.username == username)).one_or_none()
            if row is None:
                raise AccountNotFound(f"no user {username!r}")
            row.disabled = disabled
            if disabled:  # logging a user out everywhere is the point of disabling them
                session.execute(sa.delete(TokenRow).where(TokenRow.user_id == row.id))

    def list_users(self) -> list[UserInfo]:
        keys = (
            sa.select(sa.func.count())
            .where(ApiKeyRow.user_id == UserRow.id, ApiKeyRow.revoked.is_(False))
            .scalar_subquery()
        )
        query = sa.select(UserRow, keys).order_by(UserRow.id)
        with self.store.reading() as session:
            return [
                UserInfo(row.id, row.username, Role(row.role), row.disabled, row.created_at, int(count or 0))
                for row, count in session.execute(query)
            ]

    def create_api_key(self, username: str, *, name: str = "", expires_in: timedelta | None = None) -> str:
        """A new API key for `username`; the only time the full key is ever shown."""
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        now = self.store.now()
        with self.store.writing() as session:
            user = session.scalars(sa.select(UserRow).where(UserRow.username == username)).one_or_none()
            if user is None:
                raise AccountNotFound(f"no user {username!r}")
            session.add(
                ApiKeyRow(
                    user_id=user.id,
                    key_id=key_id,
                    secret_sha256=_sha256(secret),
                    name=name[:64],
                    created_at=now,
                    expires_at=None if expires_in is None else now + expires_in,
                    revoked=False,
                )
            )
        return f"{API_KEY_PREFIX}{key_id}_{secret}"

    def list_api_keys(self, username: str) -> list[ApiKeyInfo]:
        with self.store.reading() as session:
            user_id = self._user_id(session, username)
            rows = session.scalars(sa.select(ApiKeyRow).where(ApiKeyRow.user_id == user_id).order_by(ApiKeyRow.id))
            return [ApiKeyInfo(r.key_id, r.name, r.created_at, r.expires_at, r.revoked) for r in rows]

    def revoke_api_key(self, username: str, key_id: str) -> None:
        """Revoke one of the user's keys at once (kept, marked revoked: its use stays explainable)."""
        with self.store.writing() as session:
            user_id = self._user_id(session, username)
            key = session.scalars(
                sa.select(ApiKeyRow).where(ApiKeyRow.user_id == user_id, ApiKeyRow.key_id == key_id)
            ).one_or_none()
            if key is None:
                raise AccountNotFound(f"user {username!r} has no API key {key_id!r}")
            key.revoked = True

    @staticmethod
    def _user_id(session: Session, username: str) -> int:
        user_id = session.scalar(sa.select(UserRow.id).where(UserRow.username == username))
        if user_id is None:
            raise AccountNotFound(f"no user {username!r}")
        return int(user_id)

    def login(self, username: str, password: str, *, ttl: timedelta) -> tuple[str, datetime]:
        """Check a password and issue a bearer token valid for `ttl`; returns (token, expiry)."""
        with self.store.reading() as session:
            user = session.scalars(sa.select(UserRow).where(UserRow.username == username)).one_or_none()
        stored = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH
        valid = verify_password(password, stored)
        if user is None or user.disabled or not user.password_hash or not valid:
            raise AuthenticationFailed("wrong username or password")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self.store.now()
        expires = now + ttl
        with self.store.writing() as session:
            # Expired tokens of anyone are swept here: logins are rare, requests are many.
            session.execute(sa.delete(TokenRow).where(TokenRow.expires_at <= now))
            session.add(TokenRow(token_sha256=_sha256(token), user_id=user.id, created_at=now, expires_at=expires))
        return token, expires

    def logout(self, token: str) -> None:
        with self.store.writing() as session:
            session.execute(sa.delete(TokenRow).where(TokenRow.token_sha256 == _sha256(token)))

    def authenticate(self, credential: str) -> Principal:
        """The principal behind a bearer token or API key, or AuthenticationFailed."""
        now = self.store.now()
        with self.store.reading() as session:
            if credential.startswith(TOKEN_PREFIX):
                row = session.execute(
                    sa.select(UserRow, TokenRow.expires_at)
                    .join(TokenRow, TokenRow.user_id == UserRow.id)
                    .where(TokenRow.token_sha256 == _sha256(credential))
                ).one_or_none()
                if row is None or row[1] <= now:
                    raise AuthenticationFailed("token unknown or expired: log in again")
                user, via = row[0], "token"
            elif credential.startswith(API_KEY_PREFIX):
                key_id, _, secret = credential.removeprefix(API_KEY_PREFIX).partition("_")
                found = session.execute(
                    sa.select(UserRow, ApiKeyRow)
                    .join(ApiKeyRow, ApiKeyRow.user_id == UserRow.id)
                    .where(ApiKeyRow.key_id == key_id)
                ).one_or_none()
                if found is None or not hmac.compare_digest(found[1].secret_sha256, _sha256(secret)):
                    raise AuthenticationFailed("API key unknown")
                key = found[1]
                if key.revoked or (key.expires_at is not None and key.expires_at <= now):
                    raise AuthenticationFailed("API key revoked or expired")
                user, via = found[0], "api_key"
            else:
                raise AuthenticationFailed("credential is neither a token (cwt_...) nor an API key (cwk_...)")
        if user.disabled:
            raise AuthenticationFailed("account disabled")
        return Principal(user.id, user.username, Role(user.role), via)
