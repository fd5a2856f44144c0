"""Which renditions of a track a listener may receive: the one place that decides it.

Every signed media URL carries the rung set this module grants, and the media deployment refuses
anything outside it, so the decision cannot be bypassed by editing a playlist URL. Until
subscriptions land (the billing issue), listeners get the standard rungs (AAC 64/128 and MP3 128);
the track's own artist and admins get everything. Subscriptions will add a ``premium`` tier here
without any change to the media path.
"""

from __future__ import annotations

from dataclasses import dataclass

from accounts.model import Principal

STANDARD_RUNGS = frozenset({"aac64", "aac128", "mp3_128"})
ALL_RUNGS = frozenset({"aac64", "aac128", "aac256", "mp3_128", "mp3_320"})


@dataclass(frozen=True)
class Entitlement:
    tier: str
    rungs: frozenset[str]


def media_entitlement(who: Principal, *, owns_track: bool) -> Entitlement:
    """The tier and rungs ``who`` may stream or download for one track."""
    if who.is_admin or owns_track:
        return Entitlement("owner", ALL_RUNGS)
    return Entitlement("standard", STANDARD_RUNGS)
