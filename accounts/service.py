"""Account use cases: register, log in, rotate refresh tokens, log out, read and update profiles.

Each function takes its dependencies by name (pool, redis, settings) and the command's data, and
records its events in the same transaction as the change it makes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
from redis.asyncio import Redis

from accounts.model import SELF_SERVICE_ROLES, Principal, Profile, Role, TokenPair, User
from verseflow import ratelimit, security
from verseflow.db import transaction
from verseflow.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from verseflow.events.outbox import emit
from verseflow.redis_client import key
from verseflow.settings import Settings

_USER_COLUMNS = "id, email, display_name, role, status, created_at"


def _user(row: asyncpg.Record) -> User:
    return User(
        id=row["id"], email=row["email"], display_name=row["display_name"], role=Role(row["role"]),
        status=row["status"], created_at=row["created_at"],
    )


async def register(
    pool: asyncpg.Pool, settings: Settings, *, email: str, password: str, display_name: str, role: Role
) -> User:
    """Create an account (the saga's first step); ``user.registered`` drives the rest.

    ``role`` is one the user may choose; an e-mail listed in ``settings.admin_emails`` gets admin instead.
    """
    if role not in SELF_SERVICE_ROLES:
        raise Forbidden("this role cannot be chosen at registration")
    if len(password) < settings.password_min_length:
        raise InvalidInput(f"password must be at least {settings.password_min_length} characters")
    if email.lower() in settings.admin_emails:  # VERSEFLOW_ADMIN_EMAILS: the operator's first administrators
        role = Role.ADMIN
    password_hash = await asyncio.to_thread(security.hash_password, password)
    user_id = uuid.uuid4()
    try:
        async with transaction(pool) as conn:
            row = await conn.fetchrow(
                f"""INSERT INTO users (id, email, password_hash, display_name, role)
                    VALUES ($1, $2, $3, $4, $5) RETURNING {_USER_COLUMNS}""",
                user_id, email, password_hash, display_name, role.value,
            )
            await emit(conn, "user.registered", user_id, user_id=user_id, role=role.value, display_name=display_name)
    except asyncpg.UniqueViolationError as exc:
        raise Conflict("an account with this email already exists") from exc
    return _user(row)


async def login(
    pool: asyncpg.Pool, redis: Redis, settings: Settings, *, email: str, password: str, client_ip: str
) -> TokenPair:
    """Check the password (rate-limited per account and per IP) and open a new token family."""
    await ratelimit.hit(
        redis, key(settings, "login", "ip", client_ip),
        limit=settings.login_attempts_per_ip, window_s=settings.login_window_s,
    )
    account_key = key(settings, "login", "acct", email.lower())
    await ratelimit.hit(
        redis, account_key, limit=settings.login_attempts_per_account, window_s=settings.login_window_s
    )
    row = await pool.fetchrow(
        "SELECT id, role, status, password_hash FROM users WHERE lower(email) = lower($1)", email
    )
    # An unknown account is verified against a dummy hash, so both failures take the same time.
    valid = await asyncio.to_thread(security.verify_password, row["password_hash"] if row else None, password)
    if not row or not valid or row["status"] != "active":
        raise Unauthorized("incorrect email or password")
    await ratelimit.reset(redis, account_key)
    if security.needs_rehash(row["password_hash"]):
        await pool.execute(
            "UPDATE users SET password_hash = $2 WHERE id = $1", row["id"],
            await asyncio.to_thread(security.hash_password, password),
        )
    async with transaction(pool) as conn:
        refresh = await _store_refresh_token(conn, settings, row["id"], family_id=uuid.uuid4())
    return _pair(settings, row["id"], Role(row["role"]), refresh)


async def refresh(pool: asyncpg.Pool, settings: Settings, *, refresh_token: str) -> TokenPair:
    """Rotate a refresh token. Presenting one that was already rotated revokes its whole family."""
    token_hash = security.refresh_token_hash(refresh_token)
    async with transaction(pool) as conn:
        row = await conn.fetchrow(
            """SELECT t.id, t.user_id, t.family_id, t.expires_at, t.rotated_at, t.revoked_at, u.role, u.status
               FROM refresh_tokens t JOIN users u ON u.id = t.user_id
               WHERE t.token_hash = $1 FOR UPDATE OF t""",
            token_hash,
        )
        if row is None:
            raise Unauthorized("invalid refresh token")
        if row["rotated_at"] is not None and row["revoked_at"] is None:
            await _revoke_family(conn, row["family_id"])
            reused = True
        else:
            reused = False
    if reused:
        raise Unauthorized("refresh token reuse detected; all sessions of this login were revoked")
    if row["revoked_at"] is not None or row["expires_at"] <= datetime.now(UTC) or row["status"] != "active":
        raise Unauthorized("refresh token expired or revoked")
    async with transaction(pool) as conn:
        rotated = await conn.fetchval(
            "UPDATE refresh_tokens SET rotated_at = now() WHERE id = $1 AND rotated_at IS NULL RETURNING id",
            row["id"],
        )
        if rotated is None:  # lost a race with a concurrent rotation of the same token
            raise Unauthorized("refresh token already used")
        new_token = await _store_refresh_token(conn, settings, row["user_id"], family_id=row["family_id"])
    return _pair(settings, row["user_id"], Role(row["role"]), new_token)


async def logout(
    pool: asyncpg.Pool, redis: Redis, settings: Settings, *, claims: security.AccessClaims,
    refresh_token: str | None,
) -> None:
    """Deny the access token until it expires and revoke the refresh token's family."""
    ttl = max(1, claims.expires_at - int(datetime.now(UTC).timestamp()))
    await redis.set(key(settings, "denied-jti", claims.jti), "1", ex=ttl)
    if refresh_token:
        async with transaction(pool) as conn:
            family = await conn.fetchval(
                "SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND user_id = $2",
                security.refresh_token_hash(refresh_token), claims.user_id,
            )
            if family is not None:
                await _revoke_family(conn, family)


async def authenticate(redis: Redis, settings: Settings, token: str) -> Principal:
    """Turn a bearer token into a principal: signature, expiry, issuer and the logout denylist."""
    claims = await authenticate_claims(redis, settings, token)
    return Principal(user_id=claims.user_id, role=Role(claims.role))


async def authenticate_claims(redis: Redis, settings: Settings, token: str) -> security.AccessClaims:
    claims = decode_claims(settings, token)
    (revoked,) = await revoked_claims(redis, settings, [claims])
    if revoked:
        raise Unauthorized("access token revoked")
    return claims


def decode_claims(settings: Settings, token: str) -> security.AccessClaims:
    """Signature, expiry and issuer (no I/O); revocation is :func:`revoked_claims`."""
    return security.decode_access_token(
        token, secret=settings.secret(), issuer=settings.jwt_issuer, algorithm=settings.jwt_algorithm
    )


async def revoked_claims(redis: Redis, settings: Settings,
                         claims: Sequence[security.AccessClaims]) -> list[bool]:
    """Which tokens were revoked (logout denylist, or all of a user's tokens cut off), in one round trip."""
    keys = []
    for c in claims:
        keys += [key(settings, "denied-jti", c.jti), key(settings, "tokens-valid-after", c.user_id)]
    values = await redis.mget(keys)
    return [denied is not None or (valid_after is not None and c.issued_at <= int(valid_after))
            for c, denied, valid_after in zip(claims, values[::2], values[1::2], strict=True)]


async def revoke_access_tokens(redis: Redis, settings: Settings, user_id: uuid.UUID) -> None:
    """Invalidate every access token already issued to ``user_id`` (role change, disabled account).

    Tokens are stateless, so the cut-off time is kept in Redis for as long as a token can live.
    """
    await redis.set(
        key(settings, "tokens-valid-after", user_id), int(datetime.now(UTC).timestamp()),
        ex=settings.access_token_ttl_s,
    )


async def get_user(pool: asyncpg.Pool, user_id: uuid.UUID) -> tuple[User, Profile | None]:
    row = await pool.fetchrow(
        """SELECT u.id, u.email, u.display_name, u.role, u.status, u.created_at,
                  p.user_id AS has_profile, p.bio, p.avatar_url, p.location, p.website
            FROM users u LEFT JOIN profiles p ON p.user_id = u.id WHERE u.id = $1""",
        user_id,
    )
    if row is None or row["status"] != "active":
        raise NotFound("user not found")
    profile = (
        Profile(bio=row["bio"], avatar_url=row["avatar_url"], location=row["location"], website=row["website"])
        if row["has_profile"] else None
    )
    return _user(row), profile


async def update_profile(
    pool: asyncpg.Pool, user_id: uuid.UUID, *, display_name: str | None, profile_fields: dict[str, object]
) -> tuple[User, Profile | None]:
    """Change the display name and/or profile fields; the profile row is created if still missing."""
    async with transaction(pool) as conn:
        if display_name is not None:
            await conn.execute(
                "UPDATE users SET display_name = $2, updated_at = now() WHERE id = $1", user_id, display_name
            )
        if profile_fields:
            columns = list(profile_fields)
            assignments = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
            placeholders = ", ".join(f"${i + 2}" for i in range(len(columns)))
            await conn.execute(
                f"""INSERT INTO profiles (user_id, {', '.join(columns)}) VALUES ($1, {placeholders})
                    ON CONFLICT (user_id) DO UPDATE SET {assignments}, updated_at = now()""",
                user_id, *profile_fields.values(),
            )
        await emit(conn, "user.updated", user_id, user_id=user_id, fields=sorted(
            [*profile_fields, *(["display_name"] if display_name is not None else [])]
        ))
    return await get_user(pool, user_id)


async def set_role(
    pool: asyncpg.Pool, redis: Redis, settings: Settings, actor: Principal, user_id: uuid.UUID, role: Role
) -> User:
    """Admins grant roles; nobody else can. Tokens carrying the old role stop working at once."""
    if not actor.is_admin:
        raise Forbidden("only administrators can change roles")
    return await change_role(pool, redis, settings, user_id, role)


async def change_role(pool: asyncpg.Pool, redis: Redis, settings: Settings, user_id: uuid.UUID, role: Role) -> User:
    """The role change itself, for callers that have authorized it: :func:`set_role` (an admin over the
    API) and the operator's ``verseflow admin`` command, so both emit ``user.role_changed`` and cut off
    the tokens that carry the old role in the same way."""
    async with transaction(pool) as conn:
        row = await conn.fetchrow(
            f"UPDATE users SET role = $2, updated_at = now() WHERE id = $1 RETURNING {_USER_COLUMNS}",
            user_id, role.value,
        )
        if row is None:
            raise NotFound("user not found")
        await emit(conn, "user.role_changed", user_id, user_id=user_id, role=role.value)
    await revoke_access_tokens(redis, settings, user_id)
    return _user(row)


# --- operators (``verseflow admin``) ------------------------------------------------------------
# Whoever can reach the database is trusted: these take no Principal, and nothing over HTTP calls them.


async def find_user_by_email(pool: asyncpg.Pool, email: str) -> User:
    """The account with this e-mail (case-insensitive, as logins are); NotFound otherwise."""
    row = await pool.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE lower(email) = lower($1)", email)
    if row is None:
        raise NotFound(f"no account has the e-mail {email}")
    return _user(row)


async def grant_admin(pool: asyncpg.Pool, redis: Redis, settings: Settings, email: str) -> tuple[User, bool]:
    """Make an account an administrator; the user and whether anything changed (granting twice is a no-op)."""
    user = await find_user_by_email(pool, email)
    if user.status != "active":
        raise Conflict(f"the account {user.email} is disabled")
    if user.role is Role.ADMIN:
        return user, False
    return await change_role(pool, redis, settings, user.id, Role.ADMIN), True


async def revoke_admin(pool: asyncpg.Pool, redis: Redis, settings: Settings, email: str, *,
                       role: Role = Role.LISTENER) -> tuple[User, bool]:
    """Turn an administrator back into ``role``; the user and whether anything changed.

    An account that is not an administrator is left as it is (an artist does not become a listener).
    """
    if role not in SELF_SERVICE_ROLES:
        raise InvalidInput(f"an administrator can only become one of {sorted(SELF_SERVICE_ROLES)}")
    user = await find_user_by_email(pool, email)
    if user.role is not Role.ADMIN:
        return user, False
    return await change_role(pool, redis, settings, user.id, role), True


async def list_admins(pool: asyncpg.Pool) -> list[User]:
    """Every administrator account (disabled ones included, flagged by their status), oldest first."""
    rows = await pool.fetch(f"SELECT {_USER_COLUMNS} FROM users WHERE role = 'admin' ORDER BY created_at, email")
    return [_user(r) for r in rows]


async def _store_refresh_token(
    conn: asyncpg.Connection, settings: Settings, user_id: uuid.UUID, *, family_id: uuid.UUID
) -> str:
    token = security.new_refresh_token()
    await conn.execute(
        """INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at)
           VALUES ($1, $2, $3, $4, $5)""",
        uuid.uuid4(), user_id, family_id, security.refresh_token_hash(token),
        datetime.now(UTC) + timedelta(seconds=settings.refresh_token_ttl_s),
    )
    return token


async def _revoke_family(conn: asyncpg.Connection, family_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL", family_id
    )


def _pair(settings: Settings, user_id: uuid.UUID, role: Role, refresh_token: str) -> TokenPair:
    access, _ = security.issue_access_token(
        user_id, role.value, secret=settings.secret(), ttl_s=settings.access_token_ttl_s,
        issuer=settings.jwt_issuer, algorithm=settings.jwt_algorithm,
    )
    return TokenPair(access_token=access, refresh_token=refresh_token, expires_in=settings.access_token_ttl_s)
