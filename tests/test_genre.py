"""The placeholder genre classifier: held-out synthetic styles, scores, silence, weights, sample rates.

The held-out clips are rendered with seeds from ``TEST_SEED_START`` on, which training never uses.
Measured when genre-v1 was trained: 60/60 such clips (10 per style) at 22050 Hz and 48/48 12 s clips
at 44100 Hz were labelled correctly; the thresholds below leave a little room under that.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from audio.genre import (
    DEFAULT_WEIGHTS,
    FEATURE_NAMES,
    MAX_WINDOWS,
    UNKNOWN,
    WINDOW_SECONDS,
    Genre,
    analysis_windows,
    classify,
    default_model,
    load_model,
)
from ml.genre_styles import STYLES, TEST_SEED_START, TRAIN_SEEDS, VALIDATION_SEEDS, render

HELD_OUT_SEEDS = range(TEST_SEED_START, TEST_SEED_START + 6)


@pytest.fixture(scope="module")
def held_out() -> list[tuple[str, int, Genre]]:
    return [(style, seed, classify(render(style, seed), 22050)) for style in STYLES for seed in HELD_OUT_SEEDS]


def test_test_seeds_are_never_used_in_training() -> None:
    assert TEST_SEED_START > max(TRAIN_SEEDS) and TEST_SEED_START > max(VALIDATION_SEEDS)


def test_held_out_styles_are_recognised(held_out: list[tuple[str, int, Genre]]) -> None:
    correct = [style == genre.label for style, _, genre in held_out]
    assert sum(correct) / len(correct) >= 0.9, [(s, seed, g.label) for s, seed, g in held_out if s != g.label]
    for style in STYLES:  # every style, not only on average
        assert sum(s == style and g.label == style for s, _, g in held_out) >= len(HELD_OUT_SEEDS) - 1, style


def test_scores_are_a_distribution_over_the_labels(held_out: list[tuple[str, int, Genre]]) -> None:
    for _, _, genre in held_out:
        assert set(genre.scores) == set(STYLES)
        assert sum(genre.scores.values()) == pytest.approx(1.0, abs=1e-9)
        assert all(0.0 <= p <= 1.0 for p in genre.scores.values())
        assert genre.confidence == pytest.approx(genre.scores[genre.label])
        assert genre.confidence == pytest.approx(max(genre.scores.values()))
        assert genre.model == "genre-v1 (synthetic styles)"


@pytest.mark.parametrize("samples", [
    np.zeros(22050 * 10, dtype=np.float32),  # digital silence
    (1e-5 * np.random.default_rng(0).standard_normal(22050 * 10)).astype(np.float32),  # -100 dBFS hiss
    np.zeros(0, dtype=np.float32),  # empty
], ids=["silence", "hiss", "empty"])
def test_silence_is_unknown(samples: np.ndarray) -> None:
    genre = classify(samples, 22050)
    assert genre.label == UNKNOWN and genre.confidence == 0.0
    assert sum(genre.scores.values()) == pytest.approx(1.0)


def test_very_short_input_is_unknown() -> None:
    assert classify(render("rock", TEST_SEED_START, seconds=1.0), 22050).label == UNKNOWN


def test_committed_weights_load() -> None:
    assert DEFAULT_WEIGHTS.name == "genre-v1.npz" and DEFAULT_WEIGHTS.stat().st_size < 200_000
    model = load_model(DEFAULT_WEIGHTS)
    assert model.labels == STYLES
    assert model.weights.shape == (len(FEATURE_NAMES), len(STYLES))
    assert np.isfinite(model.weights).all() and np.isfinite(model.mean).all() and (model.scale > 0).all()
    assert default_model().name == model.name == "genre-v1 (synthetic styles)"


@pytest.mark.parametrize("style", STYLES)
def test_sample_rate_does_not_change_the_label(style: str) -> None:
    piece = render(style, TEST_SEED_START + 50, seconds=12.0, rate=44100)
    labels = {
        44100: classify(piece, 44100).label,
        22050: classify(signal.resample_poly(piece, 1, 2), 22050).label,
        48000: classify(signal.resample_poly(piece, 160, 147), 48000).label,
    }
    assert set(labels.values()) == {style}, labels


def test_stereo_is_mixed_down_and_level_does_not_matter() -> None:
    piece = render("drum and bass", TEST_SEED_START + 60)
    assert classify(np.stack([piece, piece]), 22050).label == "drum and bass"
    assert classify(piece * 0.05, 22050).label == "drum and bass"


def test_long_tracks_are_analysed_in_bounded_windows() -> None:
    five_minutes = np.zeros(300 * 44100, dtype=np.float32)
    windows = analysis_windows(five_minutes, 44100)
    assert len(windows) == MAX_WINDOWS
    assert all(len(w) == round(WINDOW_SECONDS * 44100) for w in windows)
    piece = render("ambient", TEST_SEED_START + 70, seconds=40.0)
    assert classify(piece, 22050).label == "ambient"


def test_rendering_is_deterministic_by_seed() -> None:
    first, again, other = render("hip hop", 7), render("hip hop", 7), render("hip hop", 8)
    assert first.dtype == np.float32 and np.array_equal(first, again) and not np.array_equal(first, other)
    assert np.abs(first).max() <= 1.0
