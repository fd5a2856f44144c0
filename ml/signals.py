"""How listening turns into evidence: the rules, with no I/O (``ml/interactions.py`` applies them).

A play is classified by how far it got. It is ``open`` while it may still go on; it becomes ``complete``
on its complete event, and otherwise ends when the same listener starts another play: heard for less
than ``rec_skip_seconds`` or ``rec_skip_fraction`` of the track (whichever comes first, so a 40-second
sketch heard for 20 seconds is a listen, not a skip) it is a ``skip``, a negative signal; beyond that it
is a ``partial``, worth ``rec_partial_weight`` times the share heard, always below a complete play. A start
followed by another play of the *same* track is ``dropped``: a restart, or a Subsonic app's "now playing"
followed by its scrobble, is neither a skip nor a second listen.

Evidence decays exponentially with ``rec_half_life_days``; ``decay`` gives the factor between two times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from verseflow.settings import Settings

PlayState = Literal["open", "skip", "partial", "complete", "dropped"]


@dataclass(frozen=True)
class Evidence:
    """What one play (or one playlist add) adds to its (user, track) row."""

    positive: float = 0.0
    negative: float = 0.0


def ended_state(max_position_ms: int, duration_s: float | None, settings: Settings) -> PlayState:
    """The class of a play that stopped at ``max_position_ms`` without completing."""
    threshold_ms = settings.rec_skip_seconds * 1000
    if duration_s:
        threshold_ms = min(threshold_ms, settings.rec_skip_fraction * duration_s * 1000)
    return "skip" if max_position_ms < threshold_ms else "partial"


def evidence(state: PlayState, max_position_ms: int, duration_s: float | None, settings: Settings) -> Evidence:
    """The evidence a play in ``state`` carries; an open or dropped play carries none yet."""
    if state == "complete":
        return Evidence(positive=settings.rec_complete_weight)
    if state == "skip":
        return Evidence(negative=settings.rec_skip_weight)
    if state == "partial":
        heard = min(1.0, max_position_ms / (duration_s * 1000)) if duration_s else 0.5
        return Evidence(positive=min(settings.rec_partial_weight * heard, settings.rec_complete_weight))
    return Evidence()


def decay(since: datetime, until: datetime, half_life_days: float) -> float:
    """The factor evidence dated ``since`` keeps at ``until`` (1 when ``until`` is not later)."""
    elapsed_days = max(0.0, (until - since).total_seconds() / 86400)
    return math.pow(0.5, elapsed_days / half_life_days)


def confidence(positive: float, negative: float, saved: bool, settings: Settings) -> float:
    """The signed ALS entry of a (user, track) row with decayed evidence: > 0 liked, < 0 disliked, 0 none.

    implicit reads a negative entry as preference 0 with confidence |value| (its documented convention),
    so a track skipped more than it was heard pushes the user's vector away from it.
    """
    value = positive + (settings.rec_save_weight if saved else 0.0) - negative
    return settings.rec_alpha * value
