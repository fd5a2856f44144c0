"""Finding people by the start of their display name, for pickers (a playlist's collaborators).

Only what a public profile shows leaves here: the id and the display name (never the email). A name
matches when it, or one of its later words, starts with the typed text, case-insensitively: "carl"
finds "Carla Bley" and "Collab Carla". Whole-name matches come first, then alphabetical order.
Disabled accounts are never found.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from verseflow.db import like_literal


@dataclass(frozen=True, slots=True)
class UserRef:
    id: uuid.UUID
    display_name: str


async def find_users(pool: asyncpg.Pool, prefix: str, *, limit: int) -> list[UserRef]:
    """Active users whose display name, or a word in it, starts with ``prefix`` (best first, at most ``limit``)."""
    folded = like_literal(" ".join(prefix.lower().split()))
    rows = await pool.fetch(
        """SELECT id, display_name FROM users
            WHERE status = 'active'
              AND (lower(display_name) LIKE $1 || '%' OR lower(display_name) LIKE '% ' || $1 || '%')
            ORDER BY lower(display_name) LIKE $1 || '%' DESC, lower(display_name), id
            LIMIT $2""",
        folded, limit,
    )
    return [UserRef(id=r["id"], display_name=r["display_name"]) for r in rows]
