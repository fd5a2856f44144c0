"""Account model: roles and the rules that depend on them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    LISTENER = "listener"
    ARTIST = "artist"
    ADMIN = "admin"


SELF_SERVICE_ROLES = frozenset({Role.LISTENER, Role.ARTIST})  # admin is granted, never chosen


@dataclass(frozen=True)
class Principal:
    """Who is making a request: the authenticated user's id and role."""

    user_id: uuid.UUID
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def can_own_artists(self) -> bool:
        return self.role in (Role.ARTIST, Role.ADMIN)


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    email: str
    display_name: str
    role: Role
    status: str
    created_at: datetime


@dataclass(frozen=True)
class Profile:
    bio: str = ""
    avatar_url: str | None = None
    location: str | None = None
    website: str | None = None


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"
