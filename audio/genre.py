"""Genre of a decoded track from a small classifier — a placeholder trained on synthetic music only.

What the model knows, honestly: ``audio/models/genre-v1.npz`` was trained by ``ml/train_genre.py``
on clips that ``ml/genre_styles.py`` renders with numpy: six archetypes (electronic/house, hip hop
(boom-bap), rock, ambient, classical/acoustic, drum and bass) built from synthetic drums, saw/sine
synths, additive plucked/bowed/piano tones, distortion and reverb, with keys, tempi, timbres, mixes
and noise randomised. No recording of real music was used. It recognises those archetypes' coarse
traits (is there a drum kit, how fast and how regular, how much sub bass, how noisy/bright/sustained
the spectrum is); it will mislabel much real music, knows nothing of vocals, jazz, folk, pop, metal
and the rest, and always answers with one of its six labels. It is a placeholder until a licensed
dataset (e.g. FMA, the Free Music Archive set) is available; ``docs/genre-model.md`` is its model card.

How, briefly:

* The signal is mixed to mono (if given as ``(channels, samples)``), cut into at most
  ``MAX_WINDOWS`` windows of ``WINDOW_SECONDS`` spread evenly over the track (so at most 60 s is
  analysed, whatever its length), and each window is resampled to 22050 Hz (polyphase) and
  normalised to a fixed RMS, so that the sample rate and the level hardly change the answer.
* Per window, from a 1024-point Hann STFT (hop 256): mean and standard deviation of 40 log-mel bands,
  spectral centroid, roll-off, flatness and octave-band contrast, the share of energy below 60 and
  150 Hz, frame-loudness dynamics, the onset rate and spectral-flux statistics (all bands, the kick
  band below 150 Hz, the hat band above 5 kHz), and the strength of the onset envelope's
  autocorrelation in six tempo bands (60-80 ... 160-190 BPM), again for all bands and for the kick
  band (which shows four-on-the-floor). Onsets come from log(1 + 100 x band energy / its mean), so
  a steady noise floor, whose dB values flicker a lot, adds little and a drum hit a lot.
* The model is multinomial logistic regression on standardised features. The probabilities of the
  windows are averaged; the label is the most probable class and the confidence its probability
  (a probability under a model of synthetic music, not calibrated for real recordings).

Silence (every window below -60 dBFS RMS) or less than ``MIN_SECONDS`` of audio gives the label
``"unknown"`` with confidence 0.0 and uniform scores.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal

from audio.dsp import resample

ANALYSIS_RATE = 22050
WINDOW_SECONDS = 10.0
MAX_WINDOWS = 6  # at most 60 s analysed
MIN_SECONDS = 3.0
SILENCE_DBFS = -60.0
TARGET_RMS = 0.1

N_FFT = 1024
HOP = 256
N_MELS = 40
MEL_FMIN_HZ = 30.0
CONTRAST_EDGES_HZ = (0.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0, 11025.0)
TEMPO_BANDS_BPM = ((60, 80), (80, 100), (100, 118), (118, 135), (135, 160), (160, 190))
KICK_BAND_HZ = 150.0
HAT_BAND_HZ = 5000.0
ONSET_COMPRESSION = 100.0
ONSET_MIN_GAP_SECONDS = 0.07

UNKNOWN = "unknown"
DEFAULT_WEIGHTS = Path(__file__).parent / "models" / "genre-v1.npz"


@dataclass(frozen=True, slots=True)
class Genre:
    """What :func:`classify` says about one track; ``scores`` (probability per label) sum to 1."""

    label: str  # one of the model's labels, or "unknown" for silence / too-short input
    confidence: float  # probability of ``label``; 0.0 for "unknown"
    scores: dict[str, float]
    model: str  # e.g. "genre-v1 (synthetic styles)"
    #: the track's timbre/rhythm features standardised by the model and averaged over its windows: the
    #: audio embedding the recommender's content model reads (empty for "unknown")
    embedding: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class GenreModel:
    """Standardised features + multinomial logistic regression, as stored in the weights file."""

    name: str
    labels: tuple[str, ...]
    mean: np.ndarray  # (features,)
    scale: np.ndarray  # (features,)
    weights: np.ndarray  # (features, labels)
    bias: np.ndarray  # (labels,)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities for each row of ``features`` (rows: windows or clips)."""
        logits = ((np.atleast_2d(features) - self.mean) / self.scale) @ self.weights + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path, name=np.array(self.name), labels=np.array(self.labels), feature_names=np.array(FEATURE_NAMES),
            mean=self.mean.astype(np.float32), scale=self.scale.astype(np.float32),
            weights=self.weights.astype(np.float32), bias=self.bias.astype(np.float32),
        )


def load_model(path: Path | str = DEFAULT_WEIGHTS) -> GenreModel:
    """Read a weights file written by :meth:`GenreModel.save`; its features must match this module's."""
    with np.load(path, allow_pickle=False) as data:
        if tuple(str(n) for n in data["feature_names"]) != FEATURE_NAMES:
            raise ValueError(f"{path} was trained on different features; retrain with `python -m ml.train_genre`")
        return GenreModel(
            name=str(data["name"]), labels=tuple(str(label) for label in data["labels"]),
            mean=data["mean"].astype(np.float64), scale=data["scale"].astype(np.float64),
            weights=data["weights"].astype(np.float64), bias=data["bias"].astype(np.float64),
        )


@functools.cache
def default_model() -> GenreModel:
    return load_model(DEFAULT_WEIGHTS)


# --- analysis windows ----------------------------------------------------------------------------


def _mono(samples: np.ndarray) -> np.ndarray:
    array = np.asarray(samples, dtype=np.float64)
    if array.ndim == 2:
        array = array.mean(axis=0)
    if array.ndim != 1:
        raise ValueError("classify() takes mono samples (or (channels, samples), which are mixed down)")
    return np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)


def analysis_windows(mono: np.ndarray, rate: int) -> list[np.ndarray]:
    """Up to ``MAX_WINDOWS`` windows of ``WINDOW_SECONDS`` spread evenly over the signal (or all of it)."""
    length = round(WINDOW_SECONDS * rate)
    if len(mono) <= length:
        return [mono]
    count = min(MAX_WINDOWS, math.ceil(len(mono) / length))
    starts = np.linspace(0, len(mono) - length, count).round().astype(int)
    return [mono[start : start + length] for start in starts]


def audible_windows(samples: np.ndarray, rate: int) -> list[np.ndarray]:
    """The track's analysis windows that are not silent; none for less than ``MIN_SECONDS`` of audio.

    Shared with ``audio/timbre.py``, so that both embeddings describe the same stretches of a track."""
    mono = _mono(samples)
    if len(mono) < MIN_SECONDS * rate:
        return []
    return [w for w in analysis_windows(mono, rate) if _rms_dbfs(w) > SILENCE_DBFS]


def _rms_dbfs(x: np.ndarray) -> float:
    power = float(np.mean(np.square(x))) if x.size else 0.0
    return 10.0 * math.log10(power) if power > 0.0 else -math.inf


# --- features ------------------------------------------------------------------------------------


def _feature_names() -> tuple[str, ...]:
    names = [f"logmel_mean_{i}" for i in range(N_MELS)] + [f"logmel_std_{i}" for i in range(N_MELS)]
    names += ["centroid_mean", "centroid_std", "rolloff_mean", "rolloff_std", "flatness_mean", "flatness_std"]
    names += [f"contrast_{i}" for i in range(len(CONTRAST_EDGES_HZ) - 1)]
    names += ["sub60_ratio", "low150_ratio", "loudness_std", "quiet_frames"]
    names += ["onset_rate", "flux_mean", "flux_cv", "kick_flux_mean", "kick_flux_cv", "hat_flux_mean", "hat_flux_cv"]
    names += [f"tempo_{lo}_{hi}" for lo, hi in TEMPO_BANDS_BPM]
    names += [f"kick_tempo_{lo}_{hi}" for lo, hi in TEMPO_BANDS_BPM]
    return tuple(names)


FEATURE_NAMES = _feature_names()


def _mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


@functools.cache
def mel_filterbank() -> np.ndarray:
    """(N_MELS, N_FFT // 2 + 1) triangular filters, HTK mel scale, 30 Hz to Nyquist."""
    bins = np.fft.rfftfreq(N_FFT, 1.0 / ANALYSIS_RATE)
    edges_mel = np.linspace(_mel(MEL_FMIN_HZ), _mel(ANALYSIS_RATE / 2), N_MELS + 2)
    edges = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
    bank = np.zeros((N_MELS, len(bins)))
    for i in range(N_MELS):
        low, centre, high = edges[i : i + 3]
        rising = (bins - low) / (centre - low)
        falling = (high - bins) / (high - centre)
        bank[i] = np.clip(np.minimum(rising, falling), 0.0, None)
    return bank / (bank.sum(axis=1, keepdims=True) + 1e-12)


def _power_spectrogram(x: np.ndarray) -> np.ndarray:
    """(frames, N_FFT // 2 + 1) power of Hann-windowed frames (hop ``HOP``)."""
    if len(x) < N_FFT:
        x = np.pad(x, (0, N_FFT - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
    return np.square(np.abs(np.fft.rfft(frames * signal.windows.hann(N_FFT, sym=False), axis=1)))


def _flux(log_bands: np.ndarray) -> np.ndarray:
    """Half-wave rectified frame-to-frame increase, summed over bands (an onset-strength envelope)."""
    return np.clip(np.diff(log_bands, axis=0), 0.0, None).sum(axis=1)


def _tempo_strengths(envelope: np.ndarray) -> list[float]:
    """Highest normalised autocorrelation of the onset envelope within each tempo band."""
    frame_rate = ANALYSIS_RATE / HOP
    centred = envelope - envelope.mean()
    n = len(centred)
    spectrum = np.fft.rfft(centred, 2 * n)
    autocorrelation = np.fft.irfft(np.abs(spectrum) ** 2)[:n]
    if autocorrelation[0] <= 0.0:
        return [0.0] * len(TEMPO_BANDS_BPM)
    autocorrelation = autocorrelation / autocorrelation[0]
    strengths = []
    for low_bpm, high_bpm in TEMPO_BANDS_BPM:
        first, last = int(60.0 * frame_rate / high_bpm), int(math.ceil(60.0 * frame_rate / low_bpm))
        band = autocorrelation[first : min(last + 1, n)]
        strengths.append(float(band.max()) if band.size else 0.0)
    return strengths


def _variation(x: np.ndarray) -> float:
    return float(np.std(x) / (np.mean(x) + 1e-9))


def window_features(window: np.ndarray, rate: int) -> np.ndarray:
    """The ``FEATURE_NAMES`` vector of one window (any rate; resampled and level-normalised here)."""
    x = resample(np.asarray(window, dtype=np.float64), rate, ANALYSIS_RATE)
    x = x - x.mean()
    x = x * (TARGET_RMS / (np.sqrt(np.mean(x**2)) + 1e-12))
    power = _power_spectrogram(x) + 1e-12
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / ANALYSIS_RATE)
    nyquist = ANALYSIS_RATE / 2.0
    mel_power = power @ mel_filterbank().T
    log_mel = 10.0 * np.log10(mel_power + 1e-10)

    total = power.sum(axis=1)
    centroid = (power @ freqs) / total / nyquist
    rolloff = freqs[np.argmax(np.cumsum(power, axis=1) >= 0.85 * total[:, None], axis=1)] / nyquist
    voiced = power[:, (freqs >= 100.0) & (freqs <= 10_000.0)]
    flatness = np.exp(np.mean(np.log(voiced), axis=1)) / np.mean(voiced, axis=1)
    contrast = []
    for low, high in zip(CONTRAST_EDGES_HZ, CONTRAST_EDGES_HZ[1:], strict=False):
        band = np.sort(10.0 * np.log10(power[:, (freqs >= low) & (freqs < high)]), axis=1)
        edge = max(1, band.shape[1] // 5)
        contrast.append(float(np.mean(band[:, -edge:].mean(axis=1) - band[:, :edge].mean(axis=1))))
    energy = power.sum()
    frame_db = 10.0 * np.log10(total)

    onset_bands = np.log1p(ONSET_COMPRESSION * mel_power / mel_power.mean(axis=0))
    flux = _flux(onset_bands)
    kick_bands = max(1, int(np.searchsorted(_mel_centres(), KICK_BAND_HZ)))
    hat_bands = int(np.searchsorted(_mel_centres(), HAT_BAND_HZ))
    kick_flux = _flux(onset_bands[:, :kick_bands])
    hat_flux = _flux(onset_bands[:, hat_bands:])
    seconds = len(x) / ANALYSIS_RATE
    smooth = np.convolve(flux, np.ones(3) / 3.0, mode="same")
    peaks, _ = signal.find_peaks(smooth, prominence=np.median(smooth) + 0.5 * np.std(smooth),
                                 distance=max(1, round(ONSET_MIN_GAP_SECONDS * ANALYSIS_RATE / HOP)))

    values = [
        *log_mel.mean(axis=0), *log_mel.std(axis=0),
        centroid.mean(), centroid.std(), rolloff.mean(), rolloff.std(),
        np.log(flatness.mean() + 1e-9), np.log(flatness.std() + 1e-9),
        *contrast,
        np.log(power[:, freqs < 60.0].sum() / energy + 1e-9), np.log(power[:, freqs < 150.0].sum() / energy + 1e-9),
        frame_db.std(), float(np.mean(frame_db < np.max(frame_db) - 30.0)),
        len(peaks) / seconds, flux.mean(), _variation(flux), kick_flux.mean(), _variation(kick_flux),
        hat_flux.mean(), _variation(hat_flux),
        *_tempo_strengths(flux), *_tempo_strengths(kick_flux),
    ]
    return np.asarray(values, dtype=np.float64)


@functools.cache
def _mel_centres() -> np.ndarray:
    return mel_filterbank() @ np.fft.rfftfreq(N_FFT, 1.0 / ANALYSIS_RATE)


# --- classification ------------------------------------------------------------------------------


def _unknown(model: GenreModel) -> Genre:
    share = 1.0 / len(model.labels)
    return Genre(UNKNOWN, 0.0, {label: share for label in model.labels}, model.name)


def classify(mono: np.ndarray, rate: int, model: GenreModel | None = None) -> Genre:
    """The genre of a track given as mono float samples (or ``(channels, samples)``) at ``rate`` Hz."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    model = model or default_model()
    windows = audible_windows(mono, rate)
    if not windows:
        return _unknown(model)
    features = np.array([window_features(window, rate) for window in windows])
    probabilities = model.probabilities(features).mean(axis=0)
    probabilities /= probabilities.sum()
    best = int(np.argmax(probabilities))
    scores = {label: float(p) for label, p in zip(model.labels, probabilities, strict=True)}
    embedding = np.clip(((features - model.mean) / model.scale).mean(axis=0), -10.0, 10.0)
    return Genre(model.labels[best], float(probabilities[best]), scores, model.name,
                 tuple(float(v) for v in embedding))
