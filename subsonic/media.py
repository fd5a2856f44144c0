"""What ``stream``, ``download`` and ``getCoverArt`` answer with.

``stream`` serves one of the track's MP3 rungs, chosen by ``maxBitRate`` among those the caller's
entitlement allows (``billing/entitlements.py``: the same rule as the signed media URLs), so a
listener never receives a rung their plan excludes. The AAC rungs exist only as CMAF segments for
HLS/DASH, which a Subsonic ``stream`` cannot return as one file, so every ``format`` is answered in
MP3 (``transcodedSuffix`` says so). A stream never counts a play: clients ``scrobble``.

Covers: VerseFlow stores no artwork yet, so every id gets a generated one, a two-colour gradient
derived from the id (stable, so clients cache it).
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import Any

import numpy as np

from accounts.model import Principal
from billing.entitlements import FREE, media_entitlement
from subsonic.protocol import NOT_FOUND, SubsonicError


def mp3_rung(track: dict[str, Any], who: Principal, max_kbps: int | None, *, plan: str = FREE) -> str:
    """The best MP3 rung within the entitlement and ``max_kbps`` (0 or None: no limit); the lowest
    allowed one when even that is above the limit."""
    media = track.get("media") or {}
    available = set(media.get("index", {}).get("mp3", ()))
    allowed = available & media_entitlement(who, owns_track=track["owned"], plan=plan).rungs
    if track["status"] != "ready" or not allowed:
        raise SubsonicError(NOT_FOUND, "this song has no audio you may stream")
    by_rate = sorted(allowed, key=lambda name: int(name.split("_")[1]))
    within = [name for name in by_rate if not max_kbps or int(name.split("_")[1]) <= max_kbps]
    return within[-1] if within else by_rate[0]


def rung_key(track: dict[str, Any], rung: str) -> str:
    return f"{track['media_prefix']}/{track['media']['files'][rung]}"


def cover_png(item_id: str, size: int) -> bytes:
    """A ``size``×``size`` PNG gradient between two colours taken from the id's hash."""
    digest = hashlib.sha256(item_id.encode()).digest()
    start, end = np.frombuffer(digest[:3], np.uint8).astype(float), np.frombuffer(digest[3:6], np.uint8).astype(float)
    axis = np.linspace(0.0, 1.0, size)
    weight = ((axis[:, None] + axis[None, :]) / 2)[..., None]
    pixels = (start * (1 - weight) + end * weight).astype(np.uint8)
    rows = np.concatenate([np.zeros((size, 1), np.uint8), pixels.reshape(size, size * 3)], axis=1)
    return _png(size, size, zlib.compress(rows.tobytes(), 6))


def _png(width: int, height: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
