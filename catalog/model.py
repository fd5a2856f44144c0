"""Catalog rules that need no database: who may read or change what, and playlist ordering."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from accounts.model import Principal


@dataclass(frozen=True)
class PlaylistAccess:
    """The facts about a playlist that authorization depends on."""

    owner_id: uuid.UUID
    public: bool
    collaborators: frozenset[uuid.UUID]

    def can_read(self, who: Principal | None) -> bool:
        return self.public or (who is not None and (who.is_admin or self._is_member(who)))

    def can_edit_tracks(self, who: Principal) -> bool:
        """Owner and collaborators add, move and remove entries."""
        return self._is_member(who)

    def can_manage(self, who: Principal) -> bool:
        """Renaming, visibility, collaborators and deletion belong to the owner (and admins)."""
        return who.user_id == self.owner_id or who.is_admin

    def _is_member(self, who: Principal) -> bool:
        return who.user_id == self.owner_id or who.user_id in self.collaborators


def can_manage_artist(who: Principal, owner_id: uuid.UUID) -> bool:
    return who.user_id == owner_id or who.is_admin


def insertion_position(requested: int | None, length: int) -> int:
    """Where a new entry lands: the end by default, clamped into ``0..length``."""
    if requested is None:
        return length
    return max(0, min(requested, length))


def move_target(requested: int, length: int) -> int:
    """Where a moved entry lands, clamped into ``0..length-1``."""
    return max(0, min(requested, length - 1))
