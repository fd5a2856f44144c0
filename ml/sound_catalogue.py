"""A simulated catalogue with real audio and listeners whose tastes follow its styles.

Why: no public dataset with both listening data and audio is on this machine, so the cold-start
measurement (``bench/recs.py``) and the content tests use generated music: ``ml.genre_styles`` renders
clips of six styles (seeded), each is analysed by the very function the transcoding job runs
(``audio.pipeline.analyse``: loudness, tempo, key, genre and the audio embedding), and simulated
listeners each favour one style (most plays) with a little of everything else, popular tracks more
likely (a Zipf tail). Nothing here reads the style labels when recommending: the content model only
sees the stored analysis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from audio.decode import AudioInfo, DecodedAudio
from audio.pipeline import analyse
from ml import genre_styles


def analysed_clip(style: str, seed: int, seconds: float = 8.0) -> dict[str, Any]:
    """The stored analysis of one rendered clip, as the transcoding job would write it."""
    samples = genre_styles.render(style, seed, seconds=seconds).astype(np.float32)
    rate = genre_styles.RATE
    info = AudioInfo(container="synthetic", codec="pcm", rate=rate, channels=1, duration_s=seconds, bit_rate=None)
    return analyse(DecodedAudio(samples=samples[None, :], rate=rate, info=info))


@dataclass
class SoundCatalogue:
    styles: tuple[str, ...]
    style_of: np.ndarray                 # (items,) index into ``styles``
    analyses: list[dict[str, Any]]       # (items,) what the analysis stored


def catalogue(per_style: int, styles: tuple[str, ...] = genre_styles.STYLES, seed: int = 0,
              seconds: float = 8.0) -> SoundCatalogue:
    """``per_style`` analysed clips of each style (seeds distinct from the genre model's training seeds)."""
    style_of, analyses = [], []
    for s, style in enumerate(styles):
        for i in range(per_style):
            style_of.append(s)
            analyses.append(analysed_clip(style, 50_000 + seed * 1000 + i, seconds))
    return SoundCatalogue(tuple(styles), np.asarray(style_of), analyses)


def listeners(style_of: np.ndarray, users: int, per_user: int, *, loyalty: float = 0.9,
              seed: int = 0) -> sp.csr_matrix:
    """users × items plays: each user favours style ``user % styles`` (``loyalty`` of their plays)."""
    rng = np.random.default_rng(seed)
    items = len(style_of)
    styles = int(style_of.max()) + 1
    popularity = 1.0 / (1.0 + rng.permutation(items)) ** 0.6
    rows, cols = [], []
    for user in range(users):
        favourite = user % styles
        p = popularity * np.where(style_of == favourite, loyalty / max(1, (style_of == favourite).sum()),
                                  (1 - loyalty) / max(1, (style_of != favourite).sum()))
        chosen = rng.choice(items, size=min(per_user, items), replace=False, p=p / p.sum())
        rows += [user] * len(chosen)
        cols += chosen.tolist()
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(users, items))
