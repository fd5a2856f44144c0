"""Subsonic ids: one string space across artists, albums, singles, tracks and playlists.

Clients mix them up (Ultrasonic calls ``getAlbum`` with a song id, ``getMusicDirectory`` gets an
artist, an album or anything else), so every id says what it names: ``ar-<uuid>`` an artist,
``al-<uuid>`` an album, ``as-<artist uuid>`` the artist's singles (its tracks without an album, shown
as one album so every ready track is reachable by browsing), ``tr-<uuid>`` a track, ``pl-<uuid>`` a
playlist. The UUID is the catalog's own, so ids are stable and never enumerable.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from subsonic.protocol import NOT_FOUND, SubsonicError

Kind = Literal["artist", "album", "singles", "track", "playlist"]

PREFIXES: dict[Kind, str] = {"artist": "ar", "album": "al", "singles": "as", "track": "tr", "playlist": "pl"}
_KINDS = {prefix: kind for kind, prefix in PREFIXES.items()}


@dataclass(frozen=True)
class ItemId:
    kind: Kind
    uuid: uuid.UUID

    def __str__(self) -> str:
        return f"{PREFIXES[self.kind]}-{self.uuid}"


def encode(kind: Kind, value: uuid.UUID | str) -> str:
    return f"{PREFIXES[kind]}-{value}"


def decode(text: str, *allowed: Kind) -> ItemId:
    """Parse an id; a malformed one, or one of a kind the endpoint does not take, is "not found" (70)."""
    prefix, _, rest = text.partition("-")
    kind = _KINDS.get(prefix)
    try:
        value = uuid.UUID(rest)
    except ValueError:
        kind = None
    if kind is None or (allowed and kind not in allowed):
        raise SubsonicError(NOT_FOUND, f"no {' or '.join(allowed) or 'item'} with id {text[:80]!r}")
    return ItemId(kind, value)
