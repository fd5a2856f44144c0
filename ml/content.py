"""The content model: a track's sound, as stored by its analysis, mapped into the ALS factor space.

Why: a new upload nobody has played has no collaborative vector, yet its sound is known. Following van
den Oord, Dieleman and Schrauwen (NeurIPS 2013), a model trained with each ALS run predicts an item's
latent factors from its audio, so a cold track lands near the tracks it sounds like *as listeners
hear them*, and the home feed, similar tracks and radio can place it.

- :func:`content_vector` reads what the transcoding job stored in ``tracks.analysis``
  (``audio/pipeline.py``): the audio embedding (the genre model's standardised timbre and rhythm
  features averaged over the track's windows), the genre probabilities, tempo (log BPM, folded into
  one octave-insensitive pair), key (pitch class on the circle of fifths, mode) and loudness.
- What is served is the small torch network of ``ml/content_network.py`` (``rec_content_model =
  network``), trained with each ALS run and stored as numpy arrays. :class:`ContentMap` here is ridge
  regression (closed form, numpy) from standardised content vectors to item factors: the network's fixed
  linear path, the baseline ``bench/recs.py`` compares the network with (``rec_content_model = ridge``),
  and how artefacts from before the network still load. Both are a :class:`ContentModel`: ``predict``
  and ``dimensions``, numpy.
- :func:`blend`: an item's served vector is ``w·collaborative + (1−w)·content`` with
  ``w = n / (n + rec_blend_evidence)`` for ``n`` listeners with evidence on it, so scores (inner
  products, linear in the item vector) blend the same way; a track nobody played is content only.

Plain numpy: no Ray, no web.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from audio import timbre

#: Circle-of-fifths position of each tonic as ``audio.key`` spells it (sharps), so related keys sit close.
_FIFTHS = {name: (pc * 7) % 12 for pc, name in enumerate(("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A",
                                                           "A#", "B"))}


def content_vector(analysis: Mapping[str, Any] | None) -> np.ndarray | None:
    """The content features of one track's stored analysis; None when it has no audio embedding.

    Last comes :func:`timbre_block` (``audio/timbre.py``'s MFCC and chroma, and whether they were measured),
    of the same length for tracks analysed before the timbre features existed."""
    if not analysis:
        return None
    embedding = (analysis.get("embedding") or {}).get("values") or []
    if not embedding:
        return None
    scores = (analysis.get("genre") or {}).get("scores") or {}
    genre = [float(scores[k]) for k in sorted(scores)]
    bpm = float((analysis.get("tempo") or {}).get("bpm") or 0.0)
    octave = math.log2(bpm / 60.0) % 1.0 if bpm > 0 else 0.0   # 60, 120 and 240 BPM feel alike
    tempo = [math.log2(max(bpm, 30.0) / 120.0), math.cos(2 * math.pi * octave), math.sin(2 * math.pi * octave)]
    key_info = analysis.get("key") or {}
    tonic = key_info.get("tonic")
    if tonic in _FIFTHS:
        angle = 2 * math.pi * _FIFTHS[tonic] / 12
        tonal = [math.cos(angle), math.sin(angle), 1.0 if key_info.get("mode") == "major" else -1.0]
    else:
        tonal = [0.0, 0.0, 0.0]
    lufs = (analysis.get("loudness") or {}).get("integrated_lufs")
    loud = [(float(lufs) + 14.0) / 10.0 if lufs is not None else 0.0]
    return np.asarray(list(embedding) + genre + tempo + tonal + loud + timbre_block(analysis), dtype=np.float32)


#: Length of :func:`timbre_block`: the timbre values and the flag saying whether they were measured.
TIMBRE_BLOCK = timbre.DIMENSIONS + 1


def timbre_block(analysis: Mapping[str, Any]) -> list[float]:
    """The stored timbre values and 1.0; zeros and 0.0 when there are none of the current model.

    Why a flag and not a shorter vector: ``_with_content`` (``ml/collaborative.py``) fits one content model
    on vectors of one length and drops the rest, so tracks analysed before ``timbre-v1`` would vanish from
    it. With the same length for all, old and new tracks share the model, which learns from the flag what
    a missing block means (for a linear map, zeros plus a flag is mean imputation with its own offset).
    Silence stores an empty ``timbre-v1`` vector and reads as missing too. ``verseflow audio timbre``
    (``audio.service.add_missing_timbre``) measures the old tracks from their stored sources."""
    stored = analysis.get("timbre") or {}
    values = stored.get("values") or []
    if stored.get("model") != timbre.MODEL or len(values) != timbre.DIMENSIONS:
        return [0.0] * TIMBRE_BLOCK
    return [float(v) for v in values] + [1.0]


class ContentModel(Protocol):
    """What serving needs of a content model: item factors predicted from content vectors, in numpy."""

    def predict(self, content: np.ndarray) -> np.ndarray: ...

    @property
    def dimensions(self) -> int: ...


def feature_scale(content: np.ndarray) -> np.ndarray:
    """Each feature's standard deviation over the training rows, infinite where the feature is constant.

    Why infinite: standardised, a feature constant in training (the timbre block while every trained
    track lacks it, ``transcode_timbre`` off) becomes 0 for every later track too, so the model gives
    it no say. A tiny floor instead would blow a new track's value up by a million (the first tracks
    with timbre, before the next training) and throw its predicted factors far off."""
    spread = np.asarray(content, dtype=np.float64).std(axis=0)
    return np.where(spread > 1e-6, spread, np.inf)


@dataclass
class ContentMap:
    """Standardisation and a ridge-regression map from content vectors to item factors (the linear baseline)."""

    mean: np.ndarray      # (features,)
    scale: np.ndarray     # (features,)
    weights: np.ndarray   # (features + 1, factors): the last row is the bias

    @classmethod
    def fit(cls, content: np.ndarray, factors: np.ndarray, regularization: float) -> ContentMap:
        """Least squares with an L2 penalty (the bias is not penalised), in closed form."""
        content = np.asarray(content, dtype=np.float64)
        mean = content.mean(axis=0)
        scale = feature_scale(content)
        design = np.hstack([(content - mean) / scale, np.ones((len(content), 1))])
        penalty = regularization * np.eye(design.shape[1])
        penalty[-1, -1] = 0.0
        weights = np.linalg.solve(design.T @ design + penalty, design.T @ np.asarray(factors, dtype=np.float64))
        return cls(mean.astype(np.float32), scale.astype(np.float32), weights.astype(np.float32))

    def predict(self, content: np.ndarray) -> np.ndarray:
        """Item factors for each row of ``content`` (or one vector)."""
        rows = np.atleast_2d(np.asarray(content, dtype=np.float32))
        design = np.hstack([(rows - self.mean) / self.scale, np.ones((len(rows), 1), dtype=np.float32)])
        return (design @ self.weights).astype(np.float32)

    @property
    def dimensions(self) -> int:
        return len(self.mean)


def blend_weight(evidence: np.ndarray, half_point: float) -> np.ndarray:
    """The collaborative share of each item's vector: 0 without evidence, ½ at ``half_point`` listeners."""
    evidence = np.asarray(evidence, dtype=np.float32)
    return evidence / (evidence + half_point) if half_point > 0 else (evidence > 0).astype(np.float32)


def blend(collaborative: np.ndarray, content: np.ndarray, evidence: np.ndarray, half_point: float) -> np.ndarray:
    """``w·collaborative + (1−w)·content`` per item, ``w`` from :func:`blend_weight`."""
    w = blend_weight(evidence, half_point)[:, None]
    return (w * collaborative + (1.0 - w) * content).astype(np.float32)
