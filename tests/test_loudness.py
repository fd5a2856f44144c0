"""BS.1770-4 / EBU R 128 loudness: EBU Tech 3341 and 3342 cases synthesised here, true peak, gain."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import signal

from audio.loudness import (
    Loudness,
    gain_to_target,
    integrated_loudness,
    k_weighting_sos,
    loudness_range,
    measure,
    sample_peak_dbfs,
    true_peak_dbtp,
)


def tone(dbfs: float, seconds: float, rate: int = 48000, freq: float = 1000.0, channels: int = 2,
         phase: float = 0.0) -> np.ndarray:
    """A sine with peak ``dbfs`` in every channel, shaped (channels, samples), float32."""
    t = np.arange(round(seconds * rate)) / rate
    mono = 10.0 ** (dbfs / 20.0) * np.sin(2 * np.pi * freq * t + phase)
    return np.tile(mono.astype(np.float32), (channels, 1))


def sequence(parts: list[tuple[float, float]], rate: int = 48000) -> np.ndarray:
    """1 kHz stereo tones of (dBFS, seconds) one after the other."""
    return np.concatenate([tone(level, seconds, rate) for level, seconds in parts], axis=1)


def faded(samples: np.ndarray, rate: int, seconds: float = 0.01) -> np.ndarray:
    """Raised-cosine fade in and out, so the onset is band-limited (no Gibbs overshoot at the edges)."""
    n = round(seconds * rate)
    ramp = (np.sin(np.linspace(0.0, np.pi / 2, n)) ** 2).astype(np.float32)
    out = samples.copy()
    out[..., :n] *= ramp
    out[..., -n:] *= ramp[::-1]
    return out


# --- K-weighting ---------------------------------------------------------------------------------


def test_48k_coefficients_match_bs1770_tables():
    sos = k_weighting_sos(48000)
    np.testing.assert_allclose(sos[0], [1.53512485958697, -2.69169618940638, 1.19839281085285,
                                        1.0, -1.69065929318241, 0.73248077421585], atol=1e-9)
    np.testing.assert_allclose(sos[1], [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621], atol=1e-9)


@pytest.mark.parametrize("rate", [22050, 44100, 48000, 96000])
def test_k_weighting_response_hardly_depends_on_rate(rate: int):
    """Below a few kHz the bilinear designs at every rate agree with the 48 kHz filter."""
    freqs = np.array([20.0, 100.0, 1000.0, 4000.0])
    _, at_rate = signal.sosfreqz(k_weighting_sos(rate), worN=freqs, fs=rate)
    _, at_48k = signal.sosfreqz(k_weighting_sos(48000), worN=freqs, fs=48000)
    np.testing.assert_allclose(20 * np.log10(np.abs(at_rate)), 20 * np.log10(np.abs(at_48k)), atol=0.1)


# --- integrated loudness (EBU Tech 3341) ---------------------------------------------------------


@pytest.mark.parametrize("level", [-23.0, -33.0])
def test_tech3341_stereo_1k_sine(level: float):
    assert integrated_loudness(tone(level, 20), 48000) == pytest.approx(level, abs=0.1)


@pytest.mark.parametrize("rate", [22050, 44100, 48000, 96000, 192000])
def test_1k_sine_does_not_depend_on_rate(rate: int):
    assert integrated_loudness(tone(-23.0, 20, rate), rate) == pytest.approx(-23.0, abs=0.1)


def test_tech3341_case3_relative_gate():
    parts = [(-36.0, 10), (-23.0, 60), (-36.0, 10)]
    assert integrated_loudness(sequence(parts), 48000) == pytest.approx(-23.0, abs=0.1)


@pytest.mark.parametrize("rate", [44100, 48000])
def test_tech3341_case4_absolute_and_relative_gates(rate: int):
    parts = [(-72.0, 10), (-36.0, 10), (-23.0, 60), (-36.0, 10), (-72.0, 10)]
    assert integrated_loudness(sequence(parts, rate), rate) == pytest.approx(-23.0, abs=0.1)


def test_mono_is_one_channel_at_weight_one():
    # One channel of a -20 dBFS sine has half the power of the stereo pair: -20 - 3.01 LUFS.
    expected = -20.0 - 10 * math.log10(2)
    assert integrated_loudness(tone(-20.0, 20, channels=1), 48000) == pytest.approx(expected, abs=0.1)
    assert integrated_loudness(tone(-20.0, 20, channels=1)[0], 48000) == pytest.approx(expected, abs=0.1)


def test_5_1_weights_surrounds_and_excludes_lfe():
    levels = [-28.0, -28.0, -28.0, 0.0, -30.0, -30.0]  # L R C LFE Ls Rs; a full-scale LFE must not count
    samples = np.concatenate([tone(level, 20, channels=1) for level in levels])
    weights = [1.0, 1.0, 1.0, 0.0, 1.41, 1.41]
    expected = 10 * math.log10(sum(w * 10 ** (lv / 10) / 2 for w, lv in zip(weights, levels, strict=True)))
    assert integrated_loudness(samples, 48000) == pytest.approx(expected, abs=0.1)


def test_matches_a_plain_block_by_block_reference():
    """The segment/cumulative-sum shortcut and 10 s filter pieces equal a direct BS.1770 computation."""
    rate = 44100
    rng = np.random.default_rng(3)
    envelope = np.repeat(10 ** (rng.uniform(-60, -10, 50) / 20), rate // 2)  # a new level every 0.5 s
    samples = (rng.standard_normal((2, envelope.size)) * envelope).astype(np.float32)
    samples = samples[:, : envelope.size - 1234]  # a partial segment at the end
    filtered = signal.sosfilt(k_weighting_sos(rate), samples.astype(np.float64), axis=1)
    block, hop = round(0.4 * rate), round(0.1 * rate)
    powers = np.array([np.mean(filtered[:, s : s + block] ** 2, axis=1).sum()
                       for s in range(0, samples.shape[1] - block + 1, hop)])
    loud = -0.691 + 10 * np.log10(powers)
    kept = powers[loud > -70]
    kept = kept[-0.691 + 10 * np.log10(kept) > -0.691 + 10 * np.log10(kept.mean()) - 10]
    expected = -0.691 + 10 * np.log10(kept.mean())
    assert integrated_loudness(samples, rate) == pytest.approx(expected, abs=1e-6)


# --- loudness range (EBU Tech 3342) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([(-20.0, 20), (-30.0, 20)], 10.0),  # case 1
        ([(-20.0, 20), (-15.0, 20)], 5.0),  # case 2
        ([(-40.0, 20), (-20.0, 20)], 20.0),  # case 3
        ([(-50.0, 20), (-35.0, 20), (-20.0, 20), (-35.0, 20), (-50.0, 20)], 15.0),  # case 4
    ],
)
def test_tech3342_loudness_range(parts: list[tuple[float, float]], expected: float):
    assert loudness_range(sequence(parts), 48000) == pytest.approx(expected, abs=1.0)


def test_steady_tone_has_no_range():
    assert loudness_range(tone(-23.0, 20), 48000) == pytest.approx(0.0, abs=0.01)


# --- peaks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "freq"), [(48000, 12000.0), (44100, 11025.0), (192000, 48000.0)])
def test_true_peak_finds_the_peak_between_samples(rate: int, freq: float):
    # A full-scale sine at fs/4, 45 degrees off: every sample is at +-0.707 (-3 dBFS), the wave reaches 1.0.
    samples = faded(tone(0.0, 2, rate, freq=freq, phase=math.pi / 4), rate)
    assert sample_peak_dbfs(samples) == pytest.approx(-3.01, abs=0.01)
    assert true_peak_dbtp(samples, rate) == pytest.approx(0.0, abs=0.3)


def test_true_peak_of_a_low_tone_equals_its_sample_peak():
    samples = faded(tone(-6.0, 2), 48000)
    assert true_peak_dbtp(samples, 48000) == pytest.approx(-6.0, abs=0.05)
    assert true_peak_dbtp(samples, 48000) >= sample_peak_dbfs(samples) - 1e-4


# --- silence, gain, the whole measurement --------------------------------------------------------


@pytest.mark.parametrize("length", [0, 100, 48000 * 5])
def test_silence_is_minus_infinity_without_warnings(length: int):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = measure(np.zeros((2, length), dtype=np.float32), 48000)
    assert result == Loudness(-math.inf, 0.0, -math.inf, -math.inf, 0.0)


def test_below_the_absolute_gate_is_silence():
    result = measure(tone(-80.0, 5), 48000)
    assert result.integrated_lufs == -math.inf
    assert result.sample_peak_dbfs == pytest.approx(-80.0, abs=0.01)


def test_gain_to_target_arithmetic():
    assert gain_to_target(-23.0) == pytest.approx(9.0)
    assert gain_to_target(-8.5) == pytest.approx(-5.5)
    assert gain_to_target(-20.0, target=-16.0) == pytest.approx(4.0)
    assert gain_to_target(-math.inf) == 0.0


def test_measure_puts_it_together():
    result = measure(faded(tone(-23.0, 20), 48000), 48000)
    assert result.integrated_lufs == pytest.approx(-23.0, abs=0.1)
    assert result.range_lu == pytest.approx(0.0, abs=0.1)
    assert result.true_peak_dbtp == pytest.approx(-23.0, abs=0.05)
    assert result.sample_peak_dbfs == pytest.approx(-23.0, abs=0.01)
    assert result.gain_db_to_minus_14 == pytest.approx(-14.0 - result.integrated_lufs)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        measure(np.zeros((1, 2, 48000), dtype=np.float32), 48000)


def test_five_minutes_of_steady_stereo_measure_as_any_minute_of_it():
    """A long input is measured whole (no cut-off or overflow in the gating blocks); speed is the audio
    benchmark's business (``bench/audio_bench.py``), not a test's."""
    rng = np.random.default_rng(0)
    samples = (rng.standard_normal((2, 48000 * 300)) * 0.1).clip(-1, 1).astype(np.float32)
    whole = measure(samples, 48000).integrated_lufs
    one_minute = measure(samples[:, 48000 * 120:48000 * 180], 48000).integrated_lufs
    assert math.isfinite(whole)
    assert abs(whole - one_minute) < 0.05


def test_agrees_with_pyloudnorm_when_installed():
    pyloudnorm = pytest.importorskip("pyloudnorm")
    rate = 44100
    rng = np.random.default_rng(5)
    envelope = np.repeat(10 ** (rng.uniform(-45, -15, 30) / 20), rate)
    samples = (rng.standard_normal((2, envelope.size)) * envelope).clip(-1, 1).astype(np.float32)
    expected = pyloudnorm.Meter(rate).integrated_loudness(samples.T.astype(np.float64))
    assert integrated_loudness(samples, rate) == pytest.approx(expected, abs=0.1)
