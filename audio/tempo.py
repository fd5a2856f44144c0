"""Global tempo (BPM) of a track: onset-strength envelope, then an octave-aware periodicity salience.

Why: the catalogue shows a BPM, playlists and DJ features sort and match by it. What is wanted is the
*notated* tempo (quarter-note rate), so the hard part is not the period but its metrical level:
every pulse train is also periodic at twice and three times its period, and its subdivisions
repeat at half of it ("octave errors"). The method is the standard one of the MIREX tempo
literature, in the form that measured best on the synthetic corpus (:mod:`audio.synthetic`):

1. Onset strength (as librosa's ``onset_strength`` and Böck/Ellis): power STFT (46 ms Hann window,
   11.6 ms hop at any rate), 40 mel bands from 30 Hz to 11 kHz, log power (dB, floored 80 dB below the
   maximum), half-wave rectified first difference per band (spectral flux), averaged over bands, then a
   moving average of ~1 s is subtracted. The log makes soft notes count next to drums; the flux is
   high only where energy rises, i.e. at onsets. A second envelope averages only the mid bands
   (``MID_BANDS``, about 0.55-4.5 kHz: snare, chord and melody attacks, without kick boom and hi-hats):
   the all-band flux is dominated by whatever is loudest or densest (often eighth-note hats), while the
   backbeat and the chord changes that mark the beat level sit in the mid range (the multi-band
   evidence of Klapuri 2006 and Gkiokas 2012 in its simplest form).
2. Periodicity: the autocorrelation (ACF) of the envelope, read on a fine log-spaced BPM grid by linear
   interpolation at lags of 1, 2, 3 and 4 beats (60·fps/bpm × k) and averaged (a comb over one bar of
   4/4). One lag alone has a resolution of one frame (3 % at 180 BPM); the comb is sharp to ~0.3 %,
   and a steady pulse must recur at every beat of the bar, not once. The salience of a tempo is the
   all-band comb plus ``MID_WEIGHT`` times the mid-band comb.
3. A perceptual prior (Parncutt 1994; librosa's ``beat.tempo`` and Essentia use the same idea): a
   log-normal weight centred on ``PRIOR_CENTER_BPM`` with ``PRIOR_OCTAVES`` standard deviation, since
   listeners prefer beats near 120-130 BPM (Moelants 2002) when the metrical level is ambiguous
   (half-time grooves, eighth-note hi-hats on slow songs). The winner is refined on a 0.025 % grid
   within ±3 % (on the all-band comb).

Measured (MIREX accuracy 1; tuned on ``corpus(30, seed=s)`` for s = 1-4, checked on s = 6-9, the
benchmark's seed 0 only read at the end): the all-band comb with a 120 BPM prior 0.742 / 0.817; plus
the mid-band comb 0.750 / 0.833; plus the 125 BPM centre 0.808 / 0.833 (Essentia's
``RhythmExtractor2013`` 0.725 / 0.808); on seed 0 both the old and this version score 0.767 (Essentia
0.800). A low-band (kick, < 150 Hz) envelope comb made it worse (0.733 / 0.775); priors of 0.6-1.4
octaves or centred at 100-110 BPM were not better on both dev sets; centres of 130-135 BPM scored
0.775-0.783 / 0.875-0.892, i.e. the flat top lies around 125-135.
Earlier: Peeters' ACF × DFT product fixed more octave errors one way than it caused the other (acc1 0.60
vs 0.73 for the comb), and a bar-level chord-change cue did not separate the octaves. Octave errors
remain on the slowest and fastest songs (a 72 BPM song with eighth-note hats is heard at 144 by the
envelope); they count under MIREX accuracy 2, which allows ×2, ×½, ×3 and ×⅓.

The returned confidence is the normalised ACF at the beat lag (1.0 = a perfectly periodic envelope),
scaled by how much the winner stands out from the best tempo outside ±8 % of it. Silence or less than
``MIN_SECONDS`` of audio gives ``Tempo(0.0, 0.0)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_BPM, MAX_BPM = 40.0, 240.0
GRID_POINTS = 1200  # log-spaced BPM grid: 0.15 % steps over 40-240 BPM
REFINE_STEPS = 241  # ±3 % around the winner
PRIOR_CENTER_BPM = 125.0
PRIOR_OCTAVES = 1.0
MID_WEIGHT = 1.0  # weight of the mid-band envelope's comb next to the all-band one
MID_BANDS = (8, 28)  # mel bands 8..27 of 40: about 0.55-4.5 kHz (snare, chord and melody attacks)
MEL_BANDS = 40
MEL_FMIN_HZ, MEL_FMAX_HZ = 30.0, 11000.0
WINDOW_SECONDS = 0.046
HOPS_PER_WINDOW = 4
TOP_DB = 80.0
DETREND_SECONDS = 1.0
MIN_SECONDS = 2.0
SILENCE_RMS = 1e-5  # -100 dBFS
REFINE_BEATS = 4


@dataclass(frozen=True)
class Tempo:
    bpm: float  # 0.0 when no tempo can be found
    confidence: float  # 0..1


NO_TEMPO = Tempo(bpm=0.0, confidence=0.0)


# --- onset strength ------------------------------------------------------------------------------


def _mel_filterbank(rate: int, n_fft: int) -> np.ndarray:
    """(bands, bins) triangular filters, equally spaced on the HTK mel scale, area-normalised."""
    def to_mel(hz: np.ndarray | float) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    fmax = min(MEL_FMAX_HZ, rate / 2.0)
    edges_hz = 700.0 * (10.0 ** (np.linspace(to_mel(MEL_FMIN_HZ), to_mel(fmax), MEL_BANDS + 2) / 2595.0) - 1.0)
    bins_hz = np.arange(n_fft // 2 + 1) * rate / n_fft
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bins_hz - lower) / (centre - lower)
    falling = (upper - bins_hz) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return weights * (2.0 / (upper - lower))


def _power_spectrogram(mono: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """(frames, bins) power of the Hann-windowed STFT, frames centred by half-window padding."""
    padded = np.pad(mono.astype(np.float32, copy=False), (n_fft // 2, n_fft // 2))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    spectrum = np.fft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=1)
    return spectrum.real**2 + spectrum.imag**2


def onset_strengths(mono: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Detrended spectral flux of all log-mel bands and of the mid bands ``MID_BANDS``, and the frame rate."""
    n_fft = 1 << int(round(math.log2(WINDOW_SECONDS * rate)))
    hop = n_fft // HOPS_PER_WINDOW
    mel = _power_spectrogram(mono, n_fft, hop) @ _mel_filterbank(rate, n_fft).T.astype(np.float32)
    log_mel = 10.0 * np.log10(np.maximum(mel, 1e-10))
    log_mel = np.maximum(log_mel, log_mel.max() - TOP_DB)
    rises = np.maximum(0.0, np.diff(log_mel, axis=0))
    fps = rate / hop
    width = max(1, int(DETREND_SECONDS * fps))

    def detrended(flux: np.ndarray) -> np.ndarray:
        return (flux - np.convolve(flux, np.ones(width) / width, mode="same")).astype(np.float64)

    return detrended(rises.mean(axis=1)), detrended(rises[:, slice(*MID_BANDS)].mean(axis=1)), fps


def onset_strength(mono: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
    """Detrended spectral flux of the log-mel spectrogram, and its frame rate in Hz."""
    envelope, _mid, fps = onset_strengths(mono, rate)
    return envelope, fps


# --- periodicity ---------------------------------------------------------------------------------


def _autocorrelation(envelope: np.ndarray) -> np.ndarray:
    """Normalised autocorrelation (lag 0 = 1) via the FFT."""
    n = len(envelope)
    spectrum = np.fft.rfft(envelope, 2 * n)
    acf = np.fft.irfft(spectrum.real**2 + spectrum.imag**2)[:n]
    return acf / acf[0] if acf[0] > 0 else acf


def _acf_at(acf: np.ndarray, lags: np.ndarray) -> np.ndarray:
    return np.interp(lags, np.arange(len(acf)), acf, right=0.0)


def tempo_prior(bpm: np.ndarray) -> np.ndarray:
    """Log-normal preference for beats near ``PRIOR_CENTER_BPM``."""
    return np.exp(-0.5 * (np.log2(bpm / PRIOR_CENTER_BPM) / PRIOR_OCTAVES) ** 2)


def _comb(acf: np.ndarray, fps: float, bpm: float | np.ndarray) -> np.ndarray:
    """Mean ACF over lags of 1..REFINE_BEATS beats: sharp around the exact beat period."""
    lag = 60.0 * fps / np.asarray(bpm, dtype=np.float64)
    return np.mean([_acf_at(acf, k * lag) for k in range(1, REFINE_BEATS + 1)], axis=0)


def _refine(acf: np.ndarray, fps: float, bpm: float) -> float:
    fine = bpm * np.linspace(0.97, 1.03, REFINE_STEPS)
    return float(fine[int(np.argmax(_comb(acf, fps, fine)))])


def salience(acf: np.ndarray, fps: float, bpm: np.ndarray, mid_acf: np.ndarray | None = None) -> np.ndarray:
    """Prior-weighted comb strength of the envelope's ACF (plus the mid-band envelope's) at each BPM (≥ 0)."""
    strength = np.maximum(_comb(acf, fps, bpm), 0.0)
    if mid_acf is not None:
        strength = strength + MID_WEIGHT * np.maximum(_comb(mid_acf, fps, bpm), 0.0)
    return strength * tempo_prior(bpm)


def estimate_tempo(mono: np.ndarray, rate: int) -> Tempo:
    """The track's tempo in BPM (40-240) and a confidence; ``Tempo(0.0, 0.0)`` for silence or < 2 s."""
    samples = np.asarray(mono, dtype=np.float32).reshape(-1)
    if rate <= 0 or len(samples) < MIN_SECONDS * rate or not np.isfinite(samples).all():
        return NO_TEMPO
    if float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) < SILENCE_RMS:
        return NO_TEMPO
    envelope, mid, fps = onset_strengths(samples, rate)
    if not np.any(envelope):
        return NO_TEMPO
    grid = np.geomspace(MIN_BPM, MAX_BPM, GRID_POINTS)
    acf = _autocorrelation(envelope)
    scores = salience(acf, fps, grid, _autocorrelation(mid))
    best = int(np.argmax(scores))
    if scores[best] <= 0.0:
        return NO_TEMPO
    bpm = _refine(acf, fps, float(grid[best]))
    outside = np.abs(np.log(grid / grid[best])) > math.log(1.08)
    runner_up = float(scores[outside].max()) if outside.any() else 0.0
    distinct = 1.0 - runner_up / float(scores[best])
    periodicity = float(np.clip(_acf_at(acf, np.array([60.0 * fps / bpm]))[0], 0.0, 1.0))
    confidence = float(np.clip(periodicity * (0.5 + 0.5 * distinct), 0.0, 1.0))
    return Tempo(bpm=round(bpm, 2), confidence=round(confidence, 3))
