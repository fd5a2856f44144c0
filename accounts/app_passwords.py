"""App passwords: per-app secrets a user creates for Subsonic players, shown once, listed, revoked.

The login password stays argon2-hashed and is never accepted by the Subsonic API. Subsonic's token
auth sends ``md5(password + salt)``, which can only be checked against the password itself, so an app
password is stored encrypted (AES-256-GCM, key derived by HKDF from the server secret, the row's id
and owner as associated data so a ciphertext cannot be moved to another row) and found by the SHA-256
of its text for plain (``p``) and API-key auth. The secrets are 160 random bits, so a fast hash is
enough there (as for refresh tokens): there is nothing to brute-force. Rotating the server secret
makes existing app passwords unusable for token auth; they should then be recreated.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from accounts.model import Principal
from verseflow.db import transaction
from verseflow.errors import Conflict, NotFound
from verseflow.settings import Settings

_KDF_INFO = b"verseflow app-passwords v1"
_NONCE_BYTES = 12


@dataclass(frozen=True)
class AppPassword:
    id: uuid.UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True)
class Created:
    app_password: AppPassword
    password: str  # shown once, never stored in clear


@dataclass(frozen=True)
class Stored:
    """One app password of an account, decrypted for a token check."""

    id: uuid.UUID
    password: str


def new_secret() -> str:
    """160 random bits as 32 lower-case base32 characters: easy to type into a phone."""
    return base64.b32encode(secrets.token_bytes(20)).decode().lower()


def lookup_hash(password: str) -> bytes:
    return hashlib.sha256(password.encode()).digest()


def _key(settings: Settings) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KDF_INFO).derive(settings.secret().encode())
    return AESGCM(derived)


def _associated(row_id: uuid.UUID, user_id: uuid.UUID) -> bytes:
    return row_id.bytes + user_id.bytes


def encrypt(settings: Settings, row_id: uuid.UUID, user_id: uuid.UUID, password: str) -> bytes:
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return nonce + _key(settings).encrypt(nonce, password.encode(), _associated(row_id, user_id))


def decrypt(settings: Settings, row_id: uuid.UUID, user_id: uuid.UUID, blob: bytes) -> str | None:
    """The password, or None when the blob does not open (another secret, another row)."""
    try:
        plain = _key(settings).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _associated(row_id, user_id))
    except InvalidTag:
        return None
    return plain.decode()


async def create(pool: asyncpg.Pool, settings: Settings, who: Principal, *, name: str) -> Created:
    """A new app password for ``who``; at most ``app_passwords_max`` per account."""
    password = new_secret()
    row_id = uuid.uuid4()
    async with transaction(pool) as conn:
        await conn.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", who.user_id)  # serialize the count
        count = await conn.fetchval("SELECT count(*) FROM app_passwords WHERE user_id = $1", who.user_id)
        if count >= settings.app_passwords_max:
            raise Conflict(f"an account may hold at most {settings.app_passwords_max} app passwords; revoke one")
        row = await conn.fetchrow(
            """INSERT INTO app_passwords (id, user_id, name, ciphertext, lookup_hash)
               VALUES ($1, $2, $3, $4, $5) RETURNING id, name, created_at, last_used_at""",
            row_id, who.user_id, name, encrypt(settings, row_id, who.user_id, password), lookup_hash(password),
        )
    return Created(AppPassword(**dict(row)), password)


async def list_for(pool: asyncpg.Pool, who: Principal) -> list[AppPassword]:
    rows = await pool.fetch(
        "SELECT id, name, created_at, last_used_at FROM app_passwords WHERE user_id = $1 ORDER BY created_at, id",
        who.user_id,
    )
    return [AppPassword(**dict(r)) for r in rows]


async def revoke(pool: asyncpg.Pool, who: Principal, app_password_id: uuid.UUID) -> None:
    deleted = await pool.fetchval(
        "DELETE FROM app_passwords WHERE id = $1 AND user_id = $2 RETURNING id", app_password_id, who.user_id
    )
    if deleted is None:
        raise NotFound("app password not found")


async def stored_for(pool: asyncpg.Pool, settings: Settings, user_id: uuid.UUID) -> list[Stored]:
    """Every app password of an account, decrypted (for Subsonic token auth)."""
    rows = await pool.fetch("SELECT id, ciphertext FROM app_passwords WHERE user_id = $1", user_id)
    found = [(r["id"], decrypt(settings, r["id"], user_id, r["ciphertext"])) for r in rows]
    return [Stored(row_id, password) for row_id, password in found if password is not None]


async def owner_of(pool: asyncpg.Pool, password: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """(app password id, user id) of the app password with this exact text, if any."""
    row = await pool.fetchrow("SELECT id, user_id FROM app_passwords WHERE lookup_hash = $1", lookup_hash(password))
    return (row["id"], row["user_id"]) if row else None


async def touch(pool: asyncpg.Pool, app_password_id: uuid.UUID) -> None:
    """Record use, at most once a minute per app password (clients authenticate every request)."""
    await pool.execute(
        """UPDATE app_passwords SET last_used_at = now()
           WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')""",
        app_password_id,
    )
