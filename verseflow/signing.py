"""Short-lived signed media URLs: the grant lives in the path, so relative URIs inherit it.

A grant names one published version of a track, the rungs the listener may receive
(``billing/entitlements.py``) and an expiry; an HMAC-SHA256 over those, keyed from the deployment's
secret, makes it unforgeable. It is carried as path segments::

    /media/{track_id}/{version}/{rungs}/{expires}/{signature}/{file}

so that an HLS or DASH player resolving ``aac128.m3u8`` or ``seg-1-00001.m4s`` against the master
playlist's URL stays inside the same grant, and no database is consulted per segment. A URL whose
signature does not match, or whose expiry has passed, is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass

from verseflow.errors import Forbidden

_CONTEXT = b"verseflow media urls v1"
RUNG_SEPARATOR = "+"


@dataclass(frozen=True)
class MediaGrant:
    track_id: uuid.UUID
    version: str
    rungs: frozenset[str]
    expires: int  # Unix seconds

    def path(self, secret: str) -> str:
        """The grant's path prefix, ending in '/', ready for a file name."""
        return f"/media/{self._message()}/{sign(secret, self._message())}/"

    def _message(self) -> str:
        return f"{self.track_id}/{self.version}/{RUNG_SEPARATOR.join(sorted(self.rungs))}/{self.expires}"


def sign(secret: str, message: str) -> str:
    key = hmac.new(secret.encode(), _CONTEXT, hashlib.sha256).digest()
    mac = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def verify(secret: str, track_id: str, version: str, rungs: str, expires: str, signature: str,
           *, now: float | None = None) -> MediaGrant:
    """The grant the path segments carry, or :class:`Forbidden` (tampered, malformed or expired)."""
    message = f"{track_id}/{version}/{rungs}/{expires}"
    if not hmac.compare_digest(sign(secret, message), signature):
        raise Forbidden("the media URL's signature is not valid")
    try:
        grant = MediaGrant(uuid.UUID(track_id), version, frozenset(rungs.split(RUNG_SEPARATOR)), int(expires))
    except ValueError:
        raise Forbidden("the media URL is malformed") from None
    if grant.expires < (time.time() if now is None else now):
        raise Forbidden("the media URL has expired")
    return grant
