"""Radio from a track: an ordered queue that stays in the seed's neighbourhood and flows.

The complaint about "instant mix" features is the jump: Pink Floyd, then a nursery rhyme. Here:

1. **Neighbourhood**: candidates are the seed's nearest tracks (cosine of the served item vectors, so a
   track nobody played is placed by its sound; ``rec_radio_candidates`` of them, searched through the
   index shards), and only those at least ``rec_radio_min_similarity`` to the *seed* are kept, so the
   queue never drifts away from where it started however long it gets.
2. **Flow**: the queue is built greedily; each next track maximises
   ``sim(seed) + sim(previous) − tempo_weight·|tempo change in octaves| − loudness_weight·|LU change|``
   (tempo folded by octave, so 70 and 140 BPM are close; a track without analysis has no penalty),
   i.e. it is close to where the radio started *and* to what just played.
3. **Diversity**: never the same artist twice in a row (a track of the previous artist is skipped
   for this step, not dropped), and each track once.

:func:`build_queue` is the pure part (testable without a database); ``ml.recommend.radio`` feeds it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from verseflow.settings import Settings


@dataclass
class Candidate:
    track_id: str
    artist_id: str
    vector: np.ndarray          # unit length
    bpm: float | None = None
    lufs: float | None = None
    track: dict[str, Any] | None = None   # the catalogue row, for the response


def tempo_distance(a: float | None, b: float | None) -> float:
    """Tempo change in octaves, folded so that half and double time are close (0 … 0.5)."""
    if not a or not b:
        return 0.0
    octaves = abs(math.log2(a / b)) % 1.0
    return min(octaves, 1.0 - octaves)


def build_queue(seed: Candidate, candidates: Sequence[Candidate], limit: int,
                settings: Settings) -> list[tuple[Candidate, float]]:
    """Up to ``limit`` candidates in play order, each with its similarity to the seed."""
    to_seed = {c.track_id: float(c.vector @ seed.vector) for c in candidates}
    pool = [c for c in candidates if c.track_id != seed.track_id
            and to_seed[c.track_id] >= settings.rec_radio_min_similarity]
    queue: list[tuple[Candidate, float]] = []
    previous = seed
    while pool and len(queue) < limit:
        best, best_value = None, -math.inf
        for c in pool:
            if c.artist_id == previous.artist_id:
                continue
            value = (to_seed[c.track_id] + float(c.vector @ previous.vector)
                     - settings.rec_radio_tempo_weight * tempo_distance(c.bpm, previous.bpm)
                     - settings.rec_radio_loudness_weight * (abs(c.lufs - previous.lufs)
                                                             if c.lufs is not None and previous.lufs is not None
                                                             else 0.0))
            if value > best_value:
                best, best_value = c, value
        if best is None:  # only the previous artist is left: the queue ends rather than repeat them
            break
        queue.append((best, to_seed[best.track_id]))
        pool.remove(best)
        previous = best
    return queue
