"""Passwords (argon2id), access tokens (short-lived JWT) and refresh tokens (opaque, stored hashed).

Access tokens carry the user id, role and a unique ``jti`` so that logout can deny the token in
Redis until it expires. Refresh tokens are random 256-bit strings; only their SHA-256 is stored, so
a database leak does not yield usable tokens.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from verseflow.errors import Unauthorized

# argon2-cffi's defaults follow RFC 9106's second recommended (low-memory) argon2id profile.
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """``password_hash`` None (no such account) is checked against :func:`dummy_password_hash`, taking as
    long as a wrong password, and fails."""
    if password_hash is None:
        verify_password(dummy_password_hash(), password)
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


@functools.cache
def dummy_password_hash() -> str:
    """A hash to verify against when the account does not exist, so that login takes the same time for
    unknown emails and wrong passwords (no account enumeration by timing). Made on first use, not at
    import: argon2id costs about half a second of CPU by design, and every Ray worker and Serve replica
    that imports this module would pay it at start, including the replica a scale-up is waiting for."""
    return hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    role: str
    jti: str
    expires_at: int
    issued_at: int


def issue_access_token(
    user_id: uuid.UUID, role: str, *, secret: str, ttl_s: int, issuer: str, algorithm: str = "HS256"
) -> tuple[str, AccessClaims]:
    now = int(time.time())
    claims = AccessClaims(
        user_id=user_id, role=role, jti=uuid.uuid4().hex, expires_at=now + ttl_s, issued_at=now
    )
    token = jwt.encode(
        {"sub": str(user_id), "role": role, "jti": claims.jti, "iat": now, "exp": claims.expires_at, "iss": issuer},
        secret,
        algorithm=algorithm,
    )
    return token, claims


def decode_access_token(token: str, *, secret: str, issuer: str, algorithm: str = "HS256") -> AccessClaims:
    """Verify signature, expiry and issuer; any failure is ``Unauthorized`` with a reason."""
    try:
        payload = jwt.decode(
            token, secret, algorithms=[algorithm], issuer=issuer,
            options={"require": ["exp", "iat", "sub", "jti", "iss"]},
        )
        return AccessClaims(
            user_id=uuid.UUID(payload["sub"]), role=str(payload["role"]), jti=str(payload["jti"]),
            expires_at=int(payload["exp"]), issued_at=int(payload["iat"]),
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("access token expired") from exc
    except (jwt.InvalidTokenError, KeyError, ValueError) as exc:
        raise Unauthorized("invalid access token") from exc


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def refresh_token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
