"""Who is calling the Subsonic API: ``u`` with ``p`` (plain or ``enc:`` hex) or ``t``+``s``, or ``apiKey``.

Only app passwords (``accounts/app_passwords.py``) are accepted, never the login password: Subsonic
clients put credentials in URLs and logs. The username is the account's e-mail. Failed sign-ins count
against the same per-account and per-IP limits as ``POST /v1/auth/token``; successful ones do not
(clients authenticate every request), and a success clears the account's count as a login does.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass

import asyncpg
from redis.asyncio import Redis

from accounts import app_passwords
from accounts.model import Principal, Role
from subsonic.protocol import (
    AUTH_MECHANISM_NOT_SUPPORTED,
    CONFLICTING_AUTH,
    INVALID_API_KEY,
    MISSING_PARAMETER,
    TOKEN_AUTH_NOT_SUPPORTED,
    WRONG_CREDENTIALS,
    Params,
    SubsonicError,
)
from verseflow import ratelimit
from verseflow.errors import RateLimited
from verseflow.redis_client import key
from verseflow.settings import Settings

_MAX_FIELD = 320


@dataclass(frozen=True)
class Caller:
    principal: Principal
    username: str  # the account's e-mail
    display_name: str


async def authenticate(pool: asyncpg.Pool, redis: Redis, settings: Settings, params: Params,
                       client_ip: str) -> Caller:
    api_key, username = params.get("apiKey"), params.get("u")
    password, token, salt = params.get("p"), params.get("t"), params.get("s")
    ip_key = key(settings, "login", "ip", client_ip)
    if api_key is not None:
        if any(v is not None for v in (username, password, token, salt)):
            raise SubsonicError(CONFLICTING_AUTH, "apiKey cannot be combined with u, p, t or s")
        await _check_not_blocked(redis, settings, ip_key, None)
        owner = await app_passwords.owner_of(pool, api_key[:_MAX_FIELD])
        caller = await _caller(pool, owner[1]) if owner else None
        if caller is None:
            await _failed(redis, settings, ip_key, None)
            raise SubsonicError(INVALID_API_KEY, "invalid API key")
        await app_passwords.touch(pool, owner[0])
        return caller
    if password is not None and token is not None:
        raise SubsonicError(CONFLICTING_AUTH, "send either p or t and s, not both")
    if not username:
        raise SubsonicError(MISSING_PARAMETER, "required parameter 'u' (or 'apiKey') is missing")
    if token is not None:
        if not settings.subsonic_token_auth:
            raise SubsonicError(TOKEN_AUTH_NOT_SUPPORTED, "token authentication is disabled on this server; "
                                                          "use apiKey")
        if not salt:
            raise SubsonicError(MISSING_PARAMETER, "required parameter 's' is missing")
    elif password is not None:
        if not settings.subsonic_password_auth:
            raise SubsonicError(AUTH_MECHANISM_NOT_SUPPORTED, "password authentication is disabled on this "
                                                              "server; use t and s, or apiKey")
        password = _decoded(password)
    else:
        raise SubsonicError(MISSING_PARAMETER, "required parameter 'p' or 't' is missing")
    account_key = key(settings, "login", "acct", username.lower()[:_MAX_FIELD])
    await _check_not_blocked(redis, settings, ip_key, account_key)
    row = await pool.fetchrow("SELECT id FROM users WHERE lower(email) = lower($1)", username[:_MAX_FIELD])
    used = None
    if row is not None and password is not None:
        owner = await app_passwords.owner_of(pool, password[:_MAX_FIELD])
        used = owner[0] if owner and owner[1] == row["id"] else None
    elif row is not None and token is not None and salt is not None:
        used = _token_match(await app_passwords.stored_for(pool, settings, row["id"]), token, salt)
    caller = await _caller(pool, row["id"]) if used is not None else None
    if caller is None:
        await _failed(redis, settings, ip_key, account_key)
        raise SubsonicError(WRONG_CREDENTIALS, "wrong username or password (use an app password)")
    await ratelimit.reset(redis, account_key)
    await app_passwords.touch(pool, used)
    return caller


def _decoded(password: str) -> str:
    if password.startswith("enc:"):
        try:
            return bytes.fromhex(password[4:]).decode()
        except (ValueError, UnicodeDecodeError):
            raise SubsonicError(WRONG_CREDENTIALS, "wrong username or password") from None
    return password


def _token_match(stored: list[app_passwords.Stored], token: str, salt: str) -> uuid.UUID | None:
    """The app password whose ``md5(password + salt)`` is ``token`` (each compared in constant time)."""
    found = None
    for candidate in stored:
        expected = hashlib.md5((candidate.password + salt).encode(), usedforsecurity=False).hexdigest()
        if hmac.compare_digest(expected, token.lower()[:64]):
            found = candidate.id
    return found


async def _caller(pool: asyncpg.Pool, user_id: uuid.UUID) -> Caller | None:
    row = await pool.fetchrow("SELECT id, email, display_name, role, status FROM users WHERE id = $1", user_id)
    if row is None or row["status"] != "active":
        return None
    return Caller(Principal(row["id"], Role(row["role"])), row["email"], row["display_name"])


async def _check_not_blocked(redis: Redis, settings: Settings, ip_key: str, account_key: str | None) -> None:
    for k, limit in ((ip_key, settings.login_attempts_per_ip), (account_key, settings.login_attempts_per_account)):
        if k is not None and (wait := await ratelimit.exceeded(redis, k, limit=limit)) is not None:
            raise SubsonicError(WRONG_CREDENTIALS, f"too many failed sign-ins; try again in {wait} s")


async def _failed(redis: Redis, settings: Settings, ip_key: str, account_key: str | None) -> None:
    try:
        await ratelimit.hit(redis, ip_key, limit=settings.login_attempts_per_ip, window_s=settings.login_window_s)
        if account_key is not None:
            await ratelimit.hit(redis, account_key, limit=settings.login_attempts_per_account,
                                window_s=settings.login_window_s)
    except RateLimited:
        pass  # the next attempt is refused by _check_not_blocked
