"""Scoring tempo and key estimates the MIREX way, and running both estimators over synthetic songs.

Why: tempo and key are judged by the standard MIREX measures, so numbers compare with the literature
and with Essentia. Tempo: accuracy 1 is an estimate within ±4 % of the reference; accuracy 2 also
accepts the octave errors ×2, ×½, ×3 and ×⅓ (Gouyon et al. 2006, as MIREX uses). Key (MIREX
2005, as ``mir_eval.key.weighted_score``): same key 1.0; estimate a perfect fifth *above* the
reference in the same mode 0.5 (descending fifths score 0 unless ``allow_descending_fifths``);
relative major/minor 0.3; parallel major/minor (same tonic) 0.2; anything else 0.

:func:`evaluate_tempo_key` renders :mod:`audio.synthetic` songs and scores our estimators and, when the
optional ``essentia`` package is importable (``pip install .[bench]``), Essentia's
``RhythmExtractor2013`` (multifeature) and ``KeyExtractor`` on the same audio. Essentia is AGPL: it is a
reference for benchmarks only and must never be imported by the product path.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import numpy as np

from audio.dsp import resample
from audio.key import NOTE_NAMES, estimate_key
from audio.synthetic import SongSpec, pitch_class, render
from audio.tempo import estimate_tempo

TEMPO_TOLERANCE = 0.04
OCTAVE_FACTORS = (2.0, 0.5, 3.0, 1.0 / 3.0)


class KeyLike(Protocol):
    tonic: str
    mode: str


def tempo_accuracy(estimated: float, reference: float) -> tuple[bool, bool]:
    """(accuracy 1, accuracy 2): within 4 %, and within 4 % of the reference or of it ×2, ×½, ×3, ×⅓."""
    if reference <= 0 or estimated <= 0:
        return False, False
    within = abs(estimated - reference) <= TEMPO_TOLERANCE * reference
    octave = any(abs(estimated - f * reference) <= TEMPO_TOLERANCE * f * reference for f in OCTAVE_FACTORS)
    return within, within or octave


def _tonic_mode(key: KeyLike | str) -> tuple[int, str]:
    if isinstance(key, str):
        tonic, mode = key.split()
    else:
        tonic, mode = key.tonic, key.mode
    mode = mode.lower()
    if mode not in ("major", "minor"):
        raise ValueError(f"mode must be major or minor, not {mode!r}")
    return pitch_class(tonic), mode


def mirex_key_score(estimated: KeyLike | str, reference: KeyLike | str, *,
                    allow_descending_fifths: bool = False) -> float:
    """MIREX weighted key score of an estimate against a reference (Key objects or "A minor" labels)."""
    est_tonic, est_mode = _tonic_mode(estimated)
    ref_tonic, ref_mode = _tonic_mode(reference)
    interval = (est_tonic - ref_tonic) % 12
    if est_mode == ref_mode:
        if interval == 0:
            return 1.0
        if interval == 7 or (allow_descending_fifths and interval == 5):
            return 0.5
        return 0.0
    if (ref_mode == "major" and interval == 9) or (ref_mode == "minor" and interval == 3):
        return 0.3  # relative: A minor for C major, C major for A minor
    if interval == 0:
        return 0.2  # parallel
    return 0.0


def _summary(rows: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    n = len(rows)
    return {
        "acc1": sum(r["acc1"] for r in rows) / n if n else 0.0,
        "acc2": sum(r["acc2"] for r in rows) / n if n else 0.0,
        "key_mirex": sum(r["key_score"] for r in rows) / n if n else 0.0,
        "key_correct": sum(r["key_score"] == 1.0 for r in rows) / n if n else 0.0,
        "seconds_per_track": seconds / n if n else 0.0,
        "misses": [r for r in rows if not r["acc1"] or r["key_score"] < 1.0],
    }


def _row(spec: SongSpec, bpm: float, key: KeyLike | str) -> dict[str, Any]:
    acc1, acc2 = tempo_accuracy(bpm, spec.bpm)
    label = key if isinstance(key, str) else f"{key.tonic} {key.mode}"
    return {"seed": spec.seed, "reference_bpm": spec.bpm, "bpm": round(float(bpm), 2), "acc1": acc1,
            "acc2": acc2, "reference_key": spec.key_label, "key": label,
            "key_score": mirex_key_score(key, spec.key_label), "drums": spec.drums}


def _essentia() -> tuple[Any, Any] | None:
    try:
        import essentia  # optional, AGPL: benchmark reference only
        import essentia.standard as es
    except ImportError:
        return None
    essentia.log.infoActive = False
    essentia.log.warningActive = False
    return es.RhythmExtractor2013(method="multifeature"), es.KeyExtractor(sampleRate=44100.0)


def evaluate_tempo_key(specs: list[SongSpec], rate: int = 44100, *, with_essentia: bool = True) -> dict[str, Any]:
    """Render every spec, estimate tempo and key, and score them.

    Returns ``{"tracks": n, "ours": summary}`` plus ``"essentia": summary`` when Essentia is importable
    (and ``with_essentia``). A summary holds ``acc1``, ``acc2``, ``key_mirex`` (mean MIREX score),
    ``key_correct`` (share of exact keys), ``seconds_per_track`` (analysis only, rendering excluded)
    and ``misses``: one row per track with a tempo not within 4 % or a key not exactly right.
    """
    reference = _essentia() if with_essentia else None
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    our_seconds = their_seconds = 0.0
    for spec in specs:
        mono = render(spec, rate).mean(axis=0, dtype=np.float32)
        started = time.perf_counter()
        tempo, key = estimate_tempo(mono, rate), estimate_key(mono, rate)
        our_seconds += time.perf_counter() - started
        ours.append(_row(spec, tempo.bpm, key))
        if reference is not None:
            rhythm, key_extractor = reference
            audio = np.ascontiguousarray(resample(mono, rate, 44100), dtype=np.float32)
            started = time.perf_counter()
            bpm = float(rhythm(audio)[0])
            tonic, mode, _strength = key_extractor(audio)
            their_seconds += time.perf_counter() - started
            theirs.append(_row(spec, bpm, f"{NOTE_NAMES[pitch_class(tonic)]} {mode}"))
    result: dict[str, Any] = {"tracks": len(specs), "ours": _summary(ours, our_seconds)}
    if reference is not None:
        result["essentia"] = _summary(theirs, their_seconds)
    return result
