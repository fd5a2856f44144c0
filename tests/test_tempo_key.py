"""Tempo and key estimation on synthetic songs with known ground truth, and the MIREX scoring rules."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from audio.evaluation import evaluate_tempo_key, mirex_key_score, tempo_accuracy
from audio.key import Key, estimate_key
from audio.synthetic import SongSpec, corpus, pitch_class, render
from audio.tempo import Tempo, estimate_tempo

RATE = 44100


def mono(spec: SongSpec, rate: int = RATE) -> np.ndarray:
    return render(spec, rate).mean(axis=0)


@pytest.mark.parametrize("bpm", [90.0, 120.0, 128.0, 140.0])
def test_drum_pattern_tempo_within_four_percent(bpm: float) -> None:
    spec = SongSpec(seed=int(bpm), bpm=bpm, tonic="C", mode="major", seconds=15.0, drums="straight",
                    comping="sustained", melody=False)
    tempo = estimate_tempo(mono(spec), RATE)
    assert abs(tempo.bpm - bpm) <= 0.04 * bpm
    assert 0.0 < tempo.confidence <= 1.0


def test_tempo_at_other_sample_rates() -> None:
    spec = SongSpec(seed=3, bpm=105.0, tonic="G", mode="major", seconds=15.0, drums="syncopated")
    tempo = estimate_tempo(mono(spec, 48000), 48000)
    assert tempo_accuracy(tempo.bpm, 105.0)[0]


@pytest.mark.parametrize(("tonic", "mode", "label"), [("A", "minor", "A minor"), ("Eb", "major", "D# major"),
                                                      ("F#", "minor", "F# minor"), ("C", "major", "C major")])
def test_key_of_rendered_progressions(tonic: str, mode: str, label: str) -> None:
    spec = SongSpec(seed=7, bpm=100.0, tonic=tonic, mode=mode, seconds=15.0, drums="straight")
    key = estimate_key(mono(spec), RATE)
    assert key.label == label
    assert 0.0 < key.confidence <= 1.0


def test_key_survives_detuning() -> None:
    spec = SongSpec(seed=7, bpm=100.0, tonic="A", mode="minor", seconds=15.0, detune_cents=-20.0)
    assert estimate_key(mono(spec), RATE).label == "A minor"


def test_silence_and_short_input_have_no_confidence() -> None:
    silence = np.zeros(RATE * 5, dtype=np.float32)
    assert estimate_tempo(silence, RATE) == Tempo(0.0, 0.0)
    assert estimate_key(silence, RATE).confidence == 0.0
    blip = np.random.default_rng(0).standard_normal(RATE // 10).astype(np.float32)
    assert estimate_tempo(blip, RATE) == Tempo(0.0, 0.0)
    assert estimate_key(blip, RATE).confidence == 0.0
    assert estimate_tempo(np.zeros(0, np.float32), RATE).bpm == 0.0


def test_corpus_accuracy() -> None:
    # Measured: corpus(30) acc1 0.77, acc2 1.00, MIREX 0.83 (dev corpora seeds 1-4: 0.81, 1.00, 0.93);
    # these 12 songs acc1 1.00, acc2 1.00, MIREX 0.875. The thresholds leave a margin of one (acc2) to
    # six (acc1) tracks.
    result = evaluate_tempo_key(corpus(12, seed=5, seconds=20.0), with_essentia=False)
    ours = result["ours"]
    assert result["tracks"] == 12
    assert ours["acc2"] >= 0.9
    assert ours["acc1"] >= 0.5
    assert ours["key_mirex"] >= 0.7


def test_corpus_is_reproducible_and_varied() -> None:
    specs = corpus(30)
    assert specs == corpus(30)
    assert {pitch_class(s.tonic) for s in specs} == set(range(12))
    assert {s.mode for s in specs} == {"major", "minor"}
    assert min(s.bpm for s in specs) >= 70 and max(s.bpm for s in specs) <= 180
    assert {"none", "swing", "halftime"} <= {s.drums for s in specs}
    first = render(dataclasses.replace(specs[0], seconds=5.0))
    assert first.shape == (2, 5 * RATE) and first.dtype == np.float32 and np.abs(first).max() <= 1.0
    assert np.array_equal(first, render(dataclasses.replace(specs[0], seconds=5.0)))
    # Same key and tempo, another seed: a different song, not a copy.
    other = render(dataclasses.replace(specs[0], seed=specs[0].seed + 1, seconds=5.0))
    assert np.corrcoef(first[0], other[0])[0, 1] < 0.5


def test_tempo_accuracy_octaves() -> None:
    assert tempo_accuracy(121.0, 120.0) == (True, True)
    assert tempo_accuracy(240.0, 120.0) == (False, True)
    assert tempo_accuracy(60.5, 120.0) == (False, True)
    assert tempo_accuracy(40.0, 120.0) == (False, True)
    assert tempo_accuracy(360.0, 120.0) == (False, True)
    assert tempo_accuracy(180.0, 120.0) == (False, False)
    assert tempo_accuracy(0.0, 120.0) == (False, False)


def test_mirex_key_score() -> None:
    assert mirex_key_score("C major", "C major") == 1.0
    assert mirex_key_score(Key("G", "major", 0.5), "C major") == 0.5  # fifth above
    assert mirex_key_score("F major", "C major") == 0.0  # fifth below: MIREX/mir_eval default
    assert mirex_key_score("F major", "C major", allow_descending_fifths=True) == 0.5
    assert mirex_key_score("E minor", "A minor") == 0.5
    assert mirex_key_score("A minor", "C major") == 0.3  # relative
    assert mirex_key_score("Eb major", "C minor") == 0.3
    assert mirex_key_score("C minor", "C major") == 0.2  # parallel
    assert mirex_key_score("D major", "C major") == 0.0
    assert mirex_key_score("D# major", "Eb major") == 1.0
