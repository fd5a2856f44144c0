"""Loudness of a decoded track: ITU-R BS.1770-4 / EBU R 128 integrated loudness, EBU Tech 3342 loudness
range, BS.1770 true peak, and the gain that brings a track to a playback target (-14 LUFS by default).

Why: players normalise tracks so that one song is not much louder than the next (ReplayGain-style).
The gain must come from a perceptual measure, not from peaks, and R 128 is the broadcast/streaming
standard for that. Everything here works on float samples shaped ``(channels, samples)`` in [-1, 1].

How, briefly:

* K-weighting is the cascade of two biquads, a high-shelf "pre-filter" (+4 dB above ~1.7 kHz, the
  head's acoustic effect) and the RLB high-pass (~38 Hz). BS.1770 publishes their coefficients for
  48 kHz only; like libebur128 and pyloudnorm, they are re-derived here for any rate from the analog
  prototypes (centre frequency, Q, gain) with the bilinear transform, which reproduces the published
  48 kHz coefficients.
* The K-weighted power of every channel is summed over 100 ms segments (the hop of both the 400 ms
  momentary blocks, 75 % overlap, and the 3 s short-term blocks, 10 Hz), weighted per channel
  (L, R, C = 1.0; Ls, Rs = 1.41; LFE excluded) and turned into block powers with a cumulative sum
  over segments. Filtering is done per channel in 10 s pieces to keep memory flat on long tracks.
* Integrated loudness gates the 400 ms blocks at -70 LUFS (absolute), then at -10 LU below the
  loudness of the blocks that passed (relative). Loudness range gates the 3 s blocks at -70 LUFS and
  -20 LU and is the spread between their 10th and 95th percentiles.
* True peak oversamples ×4 (×2 above 96 kHz) with a 32-taps-per-phase Kaiser-windowed low-pass
  (flat to 0.85 × Nyquist, > 60 dB rejection from 1.15 × Nyquist), as polyphase matrix products.

Silence (or a signal shorter than one 400 ms block) has an integrated loudness of ``-inf``; its
loudness range is 0.0 and its gain to target is 0.0 (nothing to normalise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import signal

LOUDNESS_OFFSET_DB = -0.691  # BS.1770: makes a 1 kHz stereo sine at -23 dBFS per channel read -23 LUFS
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0  # integrated loudness (BS.1770-4)
RANGE_RELATIVE_GATE_LU = -20.0  # loudness range (EBU Tech 3342)
RANGE_PERCENTILES = (10.0, 95.0)
DEFAULT_TARGET_LUFS = -14.0

SEGMENT_SECONDS = 0.1  # hop of both block kinds
MOMENTARY_SEGMENTS = 4  # 400 ms blocks
SHORT_TERM_SEGMENTS = 30  # 3 s blocks
FILTER_CHUNK_SEGMENTS = 100  # K-weight 10 s at a time

# Analog prototypes of the BS.1770 filters (as fitted to the 48 kHz coefficients by libebur128).
SHELF_F0_HZ = 1681.974450955533
SHELF_GAIN_DB = 3.999843853973347
SHELF_Q = 0.7071752369554196
SHELF_BAND_EXPONENT = 0.4996667741545416
HIGH_PASS_F0_HZ = 38.13547087602444
HIGH_PASS_Q = 0.5003270373238773

TRUE_PEAK_TAPS_PER_PHASE = 32
TRUE_PEAK_KAISER_BETA = 8.0
TRUE_PEAK_ROWS_PER_PRODUCT = 1 << 16


@dataclass(frozen=True, slots=True)
class Loudness:
    """What :func:`measure` finds in one track.

    ``gain_db_to_minus_14`` is the plain gain that brings the integrated loudness to -14 LUFS. A player
    that must not clip (or wants headroom for its codec) caps it by the true peak, e.g. with a -1 dBTP
    ceiling: ``min(gain_db_to_minus_14, -1.0 - true_peak_dbtp)``; that cap is left to the player.
    """

    integrated_lufs: float  # -inf for silence
    range_lu: float  # 0.0 when nothing passes the gates
    true_peak_dbtp: float  # -inf for digital silence
    sample_peak_dbfs: float  # -inf for digital silence
    gain_db_to_minus_14: float  # 0.0 for silence


# --- K-weighting ---------------------------------------------------------------------------------


def _high_shelf(rate: int) -> tuple[np.ndarray, np.ndarray]:
    k = math.tan(math.pi * SHELF_F0_HZ / rate)
    vh = 10.0 ** (SHELF_GAIN_DB / 20.0)
    vb = vh**SHELF_BAND_EXPONENT
    a0 = 1.0 + k / SHELF_Q + k * k
    b = np.array([vh + vb * k / SHELF_Q + k * k, 2.0 * (k * k - vh), vh - vb * k / SHELF_Q + k * k]) / a0
    a = np.array([a0, 2.0 * (k * k - 1.0), 1.0 - k / SHELF_Q + k * k]) / a0
    return b, a


def _high_pass(rate: int) -> tuple[np.ndarray, np.ndarray]:
    k = math.tan(math.pi * HIGH_PASS_F0_HZ / rate)
    a0 = 1.0 + k / HIGH_PASS_Q + k * k
    # BS.1770 keeps the unnormalised [1, -2, 1] numerator (the -0.691 offset accounts for it).
    b = np.array([1.0, -2.0, 1.0])
    a = np.array([a0, 2.0 * (k * k - 1.0), 1.0 - k / HIGH_PASS_Q + k * k]) / a0
    return b, a


def k_weighting_sos(rate: int) -> np.ndarray:
    """The K-weighting filter at ``rate`` as second-order sections (pre-filter, then RLB high-pass)."""
    if rate <= 2 * SHELF_F0_HZ:
        raise ValueError(f"sample rate {rate} Hz is too low for K-weighting")
    return np.array([np.concatenate(_high_shelf(rate)), np.concatenate(_high_pass(rate))])


def channel_weights(channels: int) -> np.ndarray:
    """BS.1770 weights; 6 channels are L R C LFE Ls Rs (LFE excluded), 5 are L R C Ls Rs, else all 1.0."""
    if channels == 6:
        return np.array([1.0, 1.0, 1.0, 0.0, 1.41, 1.41])
    if channels == 5:
        return np.array([1.0, 1.0, 1.0, 1.41, 1.41])
    return np.ones(channels)


# --- block powers --------------------------------------------------------------------------------


def _as_channels(samples: np.ndarray) -> np.ndarray:
    array = np.asarray(samples)
    if array.ndim == 1:
        array = array[np.newaxis, :]
    if array.ndim != 2:
        raise ValueError("samples must be shaped (channels, samples)")
    return array


def _segment_length(rate: int) -> int:
    return max(1, round(rate * SEGMENT_SECONDS))


def _channel_segment_energy(channel: np.ndarray, sos: np.ndarray, segment: int, segments: int) -> np.ndarray:
    """Sum of K-weighted squares over each whole 100 ms segment of one channel."""
    energy = np.empty(segments)
    state = np.zeros((sos.shape[0], 2))
    step = FILTER_CHUNK_SEGMENTS
    for first in range(0, segments, step):
        count = min(step, segments - first)
        piece = channel[first * segment : (first + count) * segment].astype(np.float64)
        filtered, state = signal.sosfilt(sos, piece, zi=state)
        energy[first : first + count] = np.square(filtered).reshape(count, segment).sum(axis=1)
    return energy


def segment_energies(samples: np.ndarray, rate: int, weights: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Channel-weighted K-weighted energy per 100 ms segment, and the segment length in samples.

    Samples after the last whole segment cannot complete any block, so they are ignored.
    """
    array = _as_channels(samples)
    weights = channel_weights(array.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    if weights.shape != (array.shape[0],):
        raise ValueError("one weight per channel")
    segment = _segment_length(rate)
    segments = array.shape[1] // segment
    sos = k_weighting_sos(rate)
    total = np.zeros(segments)
    for channel, weight in zip(array, weights, strict=True):
        if weight:
            total += weight * _channel_segment_energy(channel, sos, segment, segments)
    return total, segment


def _block_powers(energies: np.ndarray, segment: int, span: int) -> np.ndarray:
    """Mean-square power of every block of ``span`` consecutive segments (hop: one segment)."""
    if len(energies) < span:
        return np.empty(0)
    cumulative = np.concatenate(([0.0], np.cumsum(energies)))
    return (cumulative[span:] - cumulative[:-span]) / (span * segment)


def _power(lufs: float) -> float:
    return 10.0 ** ((lufs - LOUDNESS_OFFSET_DB) / 10.0)


def _lufs(power: np.ndarray | float) -> np.ndarray | float:
    return LOUDNESS_OFFSET_DB + 10.0 * np.log10(power)


def _gated(powers: np.ndarray, relative_gate_lu: float) -> np.ndarray:
    """Block powers above the absolute gate and then above the relative gate (may be empty)."""
    above_absolute = powers[powers > _power(ABSOLUTE_GATE_LUFS)]
    if above_absolute.size == 0:
        return above_absolute
    relative_threshold = above_absolute.mean() * 10.0 ** (relative_gate_lu / 10.0)
    return above_absolute[above_absolute > relative_threshold]


# --- the measures --------------------------------------------------------------------------------


def _integrated_from(energies: np.ndarray, segment: int) -> float:
    kept = _gated(_block_powers(energies, segment, MOMENTARY_SEGMENTS), RELATIVE_GATE_LU)
    return float(_lufs(kept.mean())) if kept.size else -math.inf


def _range_from(energies: np.ndarray, segment: int) -> float:
    kept = _gated(_block_powers(energies, segment, SHORT_TERM_SEGMENTS), RANGE_RELATIVE_GATE_LU)
    if kept.size == 0:
        return 0.0
    low, high = np.percentile(_lufs(kept), RANGE_PERCENTILES)
    return float(high - low)


def integrated_loudness(samples: np.ndarray, rate: int, weights: np.ndarray | None = None) -> float:
    """Gated integrated loudness in LUFS (BS.1770-4); ``-inf`` for silence or < 400 ms of audio."""
    return _integrated_from(*segment_energies(samples, rate, weights))


def loudness_range(samples: np.ndarray, rate: int, weights: np.ndarray | None = None) -> float:
    """Loudness range in LU (EBU Tech 3342): 95th minus 10th percentile of gated 3 s loudness."""
    return _range_from(*segment_energies(samples, rate, weights))


def oversampling_factor(rate: int) -> int:
    return 4 if rate <= 96_000 else 2


def _interpolation_phases(factor: int) -> np.ndarray:
    """(taps, factor) matrix: column p turns the last ``taps`` input samples into output phase p."""
    taps = TRUE_PEAK_TAPS_PER_PHASE
    # Odd length, so the delay is a whole number of input samples: phase 0 lands on the original
    # samples and the other phases exactly between them (an even length would shift the grid).
    lowpass = signal.firwin(factor * taps + 1, 1.0 / factor, window=("kaiser", TRUE_PEAK_KAISER_BETA)) * factor
    lowpass = np.concatenate((lowpass, np.zeros(factor - 1)))
    return np.ascontiguousarray(lowpass.reshape(taps + 1, factor)[::-1], dtype=np.float32)


def _channel_true_peak(channel: np.ndarray, phases: np.ndarray) -> float:
    taps = phases.shape[0]
    padding = np.zeros(taps - 1, dtype=np.float32)
    padded = np.concatenate((padding, channel.astype(np.float32, copy=False), padding))
    windows = np.lib.stride_tricks.sliding_window_view(padded, taps)
    peak = 0.0
    for first in range(0, len(windows), TRUE_PEAK_ROWS_PER_PRODUCT):
        upsampled = windows[first : first + TRUE_PEAK_ROWS_PER_PRODUCT] @ phases
        peak = max(peak, float(np.abs(upsampled).max()))
    return peak


def true_peak(samples: np.ndarray, rate: int) -> float:
    """Largest absolute value of the oversampled signal over all channels (linear, 1.0 = 0 dBTP)."""
    array = _as_channels(samples)
    if array.shape[1] == 0:
        return 0.0
    phases = _interpolation_phases(oversampling_factor(rate))
    return max(_channel_true_peak(channel, phases) for channel in array)


def _decibels(linear: float) -> float:
    return 20.0 * math.log10(linear) if linear > 0.0 else -math.inf


def true_peak_dbtp(samples: np.ndarray, rate: int) -> float:
    return _decibels(true_peak(samples, rate))


def sample_peak_dbfs(samples: np.ndarray) -> float:
    array = _as_channels(samples)
    return _decibels(float(np.abs(array).max())) if array.size else -math.inf


def gain_to_target(integrated: float, target: float = DEFAULT_TARGET_LUFS) -> float:
    """Gain in dB that moves ``integrated`` LUFS to ``target`` LUFS; 0.0 when there is nothing to measure."""
    if not math.isfinite(integrated):
        return 0.0
    return target - integrated


def measure(samples: np.ndarray, rate: int) -> Loudness:
    """Integrated loudness, loudness range, peaks and the gain to -14 LUFS of one decoded track."""
    energies, segment = segment_energies(samples, rate)
    integrated = _integrated_from(energies, segment)
    return Loudness(
        integrated_lufs=integrated,
        range_lu=_range_from(energies, segment),
        true_peak_dbtp=true_peak_dbtp(samples, rate),
        sample_peak_dbfs=sample_peak_dbfs(samples),
        gain_db_to_minus_14=gain_to_target(integrated, DEFAULT_TARGET_LUFS),
    )
