"""A simulated catalogue with real audio, and two kinds of simulated listeners.

Why: no public dataset with both listening data and audio is on this machine, so the cold-start
measurement (``bench/recs.py``) and the content tests use generated music: ``ml.genre_styles`` renders
clips of six styles (seeded), each is analysed by the very function the transcoding job runs
(``audio.pipeline.analyse``: loudness, tempo, key, genre and the audio embedding). Nothing here reads
the style labels when recommending: the content model only sees the stored analysis.

Two listener simulations:

- :func:`listeners`: each listener favours one style (most plays) with a little of everything else,
  popular tracks more likely (a Zipf tail). A genre classifier alone explains these tastes.
- :func:`cross_genre_listeners`: tastes that cut across the styles. Each clip's *brightness* (the
  spectral centroid of its long-term spectrum) and *busyness* (how many decibels its level rises per
  second: onsets, their density and sharpness) are measured from the rendered samples, here and not by
  the analysis, and ranked inside the clip's own style, so every style has its bright and dark, busy
  and calm tracks in equal numbers. Each listener likes one corner of that plane (bright and busy, dark
  and calm, bright and calm, dark and busy) in every style alike; with the default sharpness about 89 %
  of their plays fall in their corner, which is a quarter of every style. The style labels carry no
  information about these tastes, so genre probabilities alone cannot explain them: the content model
  has to hear where a track sits *within* its style.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from audio.decode import AudioInfo, DecodedAudio
from audio.pipeline import analyse
from ml import genre_styles

#: what :func:`cross_genre_listeners`' tastes are made of, measured per clip (``SoundCatalogue.attributes``)
ATTRIBUTES = ("brightness", "busyness")
#: the four corners of the (brightness, busyness) plane a cross-genre listener may like
CORNERS = np.array([(1.0, 1.0), (-1.0, -1.0), (1.0, -1.0), (-1.0, 1.0)]) / np.sqrt(2.0)


def analysed_clip(style: str, seed: int, seconds: float = 8.0) -> dict[str, Any]:
    """The stored analysis of one rendered clip, as the transcoding job writes it with ``transcode_timbre``
    on (``bench/recs.py`` strips the timbre to see the default beside it)."""
    return _clip(style, seed, seconds)[0]


def _clip(style: str, seed: int, seconds: float) -> tuple[dict[str, Any], np.ndarray]:
    """One rendered clip's stored analysis and its measured ``ATTRIBUTES``."""
    samples = genre_styles.render(style, seed, seconds=seconds).astype(np.float32)
    rate = genre_styles.RATE
    info = AudioInfo(container="synthetic", codec="pcm", rate=rate, channels=1, duration_s=seconds, bit_rate=None)
    decoded = DecodedAudio(samples=samples[None, :], rate=rate, info=info)
    return analyse(decoded, timbre_features=True), sound_attributes(samples, rate)


def sound_attributes(samples: np.ndarray, rate: int, frame: int = 1024, hop: int = 512) -> np.ndarray:
    """(brightness, busyness) of mono samples: log2 of the long-term spectrum's centroid in Hz, and the
    mean rise of the frame level in dB per second (level falls are not counted: onsets are rises)."""
    x = np.asarray(samples, dtype=np.float64)
    if len(x) < frame:
        x = np.pad(x, (0, frame - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, frame)[::hop] * np.hanning(frame)
    power = np.square(np.abs(np.fft.rfft(frames, axis=1))) + 1e-12
    freqs = np.fft.rfftfreq(frame, 1.0 / rate)
    spectrum = power.mean(axis=0)
    brightness = np.log2(float(spectrum @ freqs / spectrum.sum()))
    level_db = 10.0 * np.log10(power.sum(axis=1))
    busyness = float(np.clip(np.diff(level_db), 0.0, None).mean()) * rate / hop
    return np.array([brightness, busyness])


@dataclass
class SoundCatalogue:
    styles: tuple[str, ...]
    style_of: np.ndarray                 # (items,) index into ``styles``
    analyses: list[dict[str, Any]]       # (items,) what the analysis stored
    attributes: np.ndarray               # (items, len(ATTRIBUTES)) measured from the rendered samples


def catalogue(per_style: int, styles: tuple[str, ...] = genre_styles.STYLES, seed: int = 0,
              seconds: float = 8.0) -> SoundCatalogue:
    """``per_style`` analysed clips of each style (seeds distinct from the genre model's training seeds)."""
    style_of, analyses, attributes = [], [], []
    for s, style in enumerate(styles):
        for i in range(per_style):
            analysis, measured = _clip(style, 50_000 + seed * 1000 + i, seconds)
            style_of.append(s)
            analyses.append(analysis)
            attributes.append(measured)
    return SoundCatalogue(tuple(styles), np.asarray(style_of), analyses, np.asarray(attributes))


def _zipf_popularity(rng: np.random.Generator, items: int) -> np.ndarray:
    return 1.0 / (1.0 + rng.permutation(items)) ** 0.6


def _plays(rng: np.random.Generator, preference: np.ndarray, users: int, per_user: int) -> sp.csr_matrix:
    """users × items plays, each user's ``per_user`` distinct tracks drawn with p ∝ their row of ``preference``."""
    items = preference.shape[1]
    rows, cols = [], []
    for user in range(users):
        p = preference[user] / preference[user].sum()
        chosen = rng.choice(items, size=min(per_user, items), replace=False, p=p)
        rows += [user] * len(chosen)
        cols += chosen.tolist()
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(users, items))


def listeners(style_of: np.ndarray, users: int, per_user: int, *, loyalty: float = 0.9,
              seed: int = 0) -> sp.csr_matrix:
    """users × items plays: each user favours style ``user % styles`` (``loyalty`` of their plays)."""
    rng = np.random.default_rng(seed)
    styles = int(style_of.max()) + 1
    popularity = _zipf_popularity(rng, len(style_of))
    favourite = np.arange(users)[:, None] % styles
    members = np.bincount(style_of, minlength=styles)[favourite]
    share = np.where(style_of[None, :] == favourite, loyalty / np.maximum(1, members),
                     (1 - loyalty) / np.maximum(1, len(style_of) - members))
    return _plays(rng, popularity * share, users, per_user)


def within_style(attributes: np.ndarray, style_of: np.ndarray) -> np.ndarray:
    """Each attribute as its rank inside the track's own style, spread evenly over [-1, 1]."""
    position = np.zeros_like(attributes, dtype=np.float64)
    for style in np.unique(style_of):
        members = np.flatnonzero(style_of == style)
        ranks = np.argsort(np.argsort(attributes[members], axis=0, kind="stable"), axis=0, kind="stable")
        position[members] = (ranks + 0.5) / len(members) * 2.0 - 1.0
    return position


def cross_genre_listeners(attributes: np.ndarray, style_of: np.ndarray, users: int, per_user: int, *,
                          sharpness: float = 4.0, seed: int = 0) -> sp.csr_matrix:
    """users × items plays: user ``u`` likes corner ``u % 4`` of ``CORNERS`` in every style alike, a track's
    weight ``exp(sharpness · corner · within_style(attributes))`` times its (Zipf) popularity."""
    rng = np.random.default_rng(seed)
    popularity = _zipf_popularity(rng, len(style_of))
    taste = CORNERS[np.arange(users) % len(CORNERS)]                       # (users, 2)
    affinity = np.exp(sharpness * taste @ within_style(attributes, style_of).T)   # (users, items)
    return _plays(rng, popularity * affinity, users, per_user)
