"""Timbre and harmony of a decoded track (MFCC and chroma, computed with torchaudio): a second audio embedding.

Why: the genre model's embedding (``audio/genre.py``) describes loudness shape, brightness, noisiness and
rhythm, but nothing about pitch: two tracks in the same style, one in a bright major and one modal and
dark, look alike to it. Issue 8 asks for an audio embedding from mel/MFCC/chroma features, so that the
content model (``ml/content.py``) can place an unplayed track by how it sounds within a style, too.

What, per analysed frame (22050 Hz, 2048-point Hann STFT, hop 512, computed once and shared):

* MFCC: ``N_MFCC`` coefficients (orthonormal DCT-II of the 64-band HTK log-mel power in dB, 80 dB floor
  below each window's peak), torchaudio's ``melscale_fbanks``, ``amplitude_to_DB`` and ``create_dct``,
  the parts ``torchaudio.transforms.MFCC`` is made of, so the STFT is not computed twice.
* Chroma: the power spectrum folded onto 12 pitch classes (C = 0 ... B = 11, A4 = 440 Hz) through a
  chroma filterbank built here (torchaudio 2.11 has none): each FFT bin above ``CHROMA_FMIN_HZ`` is spread
  over the pitch classes by a Gaussian in semitones as wide as the bin (at least ``CHROMA_SIGMA``), each
  bin's weights sum to 1, and a Gaussian over octaves centred at 880 Hz (two octaves wide) weighs the
  registers where harmony lives (Ellis's chromagram, as librosa builds it). Each frame is divided by its
  largest class, with a floor at ``CHROMA_FLOOR`` of the loudest frame's, so quiet frames stay small.

The stored vector is the mean and standard deviation over every frame of the analysed windows:
``[mfcc_mean(20), mfcc_std(20), chroma_mean(12), chroma_std(12)]`` (``FEATURE_NAMES``), under the model
name ``MODEL``. Changing what is computed means a new model name, never new values under an old one.

Windows are the genre model's (``genre.analysis_windows``: at most six 10 s windows spread over the track,
at most 60 s of audio), each normalised to the same RMS so that the level (stored as loudness) does not
enter timbre; windows below -60 dBFS are skipped. Silence or less than ``genre.MIN_SECONDS`` of audio gives
an empty vector: "analysed, nothing to describe", distinct from an analysis without the field.

torch is imported inside :func:`compute` only: the modules that read stored analyses (``ml/``, the API)
import this one for its constants and never pay for torch. Its intra-op thread count is set on every call
(``threads``; the job passes ``transcode_torch_threads``), because the job runs niced beside the API and
the ladder lane already takes the other core.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from audio import genre
from audio.dsp import resample

if TYPE_CHECKING:
    import torch

MODEL = "timbre-v1"
RATE = genre.ANALYSIS_RATE
N_FFT = 2048
HOP = 512
N_MELS = 64
MEL_FMIN_HZ = 30.0
TOP_DB = 80.0
N_MFCC = 20
N_CHROMA = 12
CHROMA_FMIN_HZ = 55.0   # below A1 a 2048-point frame's bins are wider than an octave's worth of semitones
CHROMA_SIGMA = 0.5      # semitones: the narrowest pitch-class spread of one bin
CHROMA_CENTRE_OCTAVE = 5.0  # octaves above A0 (27.5 Hz): 880 Hz
CHROMA_OCTAVE_WIDTH = 2.0
CHROMA_FLOOR = 1e-3
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

FEATURE_NAMES = tuple(
    [f"mfcc_mean_{i}" for i in range(N_MFCC)] + [f"mfcc_std_{i}" for i in range(N_MFCC)]
    + [f"chroma_mean_{p}" for p in PITCH_CLASSES] + [f"chroma_std_{p}" for p in PITCH_CLASSES])
DIMENSIONS = len(FEATURE_NAMES)
CHROMA_MEAN = slice(2 * N_MFCC, 2 * N_MFCC + N_CHROMA)
CHROMA_STD = slice(2 * N_MFCC + N_CHROMA, DIMENSIONS)


@dataclass(frozen=True, slots=True)
class Timbre:
    """One track's timbre vector (``FEATURE_NAMES``); empty for silence or too little audio."""

    model: str
    values: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        """As stored in ``tracks.analysis["timbre"]``."""
        return {"model": self.model, "values": [round(v, 4) for v in self.values]}


@functools.cache
def chroma_filterbank(n_fft: int = N_FFT, rate: int = RATE) -> np.ndarray:
    """(12, n_fft // 2 + 1) weights folding an FFT power spectrum onto the pitch classes C ... B."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    bank = np.zeros((N_CHROMA, len(freqs)))
    used = freqs >= CHROMA_FMIN_HZ
    semitones = 69.0 + 12.0 * np.log2(freqs[used] / 440.0)          # MIDI pitch, C4 = 60
    width = 12.0 * np.log2((freqs[used] + rate / n_fft) / freqs[used])   # one bin's width in semitones
    sigma = np.maximum(CHROMA_SIGMA, width / 2.0)
    for pitch_class in range(N_CHROMA):
        distance = (semitones - pitch_class + 6.0) % 12.0 - 6.0     # to the nearest octave of the class
        bank[pitch_class, used] = np.exp(-0.5 * (distance / sigma) ** 2)
    bank[:, used] /= bank[:, used].sum(axis=0, keepdims=True)
    octaves = np.log2(freqs[used] / 27.5)
    bank[:, used] *= np.exp(-0.5 * ((octaves - CHROMA_CENTRE_OCTAVE) / CHROMA_OCTAVE_WIDTH) ** 2)
    return bank


def compute(mono: np.ndarray, rate: int = RATE, *, threads: int = 1) -> Timbre:
    """The timbre vector of a track given as mono float samples at ``rate`` Hz (resampled to ``RATE``)."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    windows = genre.audible_windows(mono, rate)
    if not windows:
        return Timbre(MODEL, ())
    import torch  # here, not at the top: readers of stored analyses never load torch

    torch.set_num_threads(threads)
    with torch.inference_mode():
        frames = torch.cat([_frame_features(_prepared(w, rate)) for w in windows], dim=1)
        mfcc, chroma = frames[:N_MFCC], frames[N_MFCC:]
        values = torch.cat([mfcc.mean(dim=1), mfcc.std(dim=1, correction=0),
                            chroma.mean(dim=1), chroma.std(dim=1, correction=0)])
    vector = values.double().numpy()
    if not np.all(np.isfinite(vector)):
        raise ValueError("timbre features are not finite")
    return Timbre(MODEL, tuple(float(v) for v in vector))


def _prepared(window: np.ndarray, rate: int) -> np.ndarray:
    """The window at ``RATE``, without DC, at the genre model's RMS."""
    x = resample(np.asarray(window, dtype=np.float64), rate, RATE)
    x = x - x.mean()
    return x * (genre.TARGET_RMS / (math.sqrt(float(np.mean(x**2))) + 1e-12))


def _frame_features(window: np.ndarray) -> torch.Tensor:
    """(N_MFCC + 12, frames): MFCCs and chroma of one prepared window."""
    import torch
    import torchaudio.functional as F  # noqa: N812 (torchaudio's own spelling)

    x = torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32))
    if x.numel() < N_FFT:
        x = torch.nn.functional.pad(x, (0, N_FFT - x.numel()))
    power = F.spectrogram(x, pad=0, window=_hann(), n_fft=N_FFT, hop_length=HOP, win_length=N_FFT,
                          power=2.0, normalized=False, center=True, pad_mode="reflect")   # (bins, frames)
    mel = _mel_bank().T @ power
    log_mel = F.amplitude_to_DB(mel, multiplier=10.0, amin=1e-10, db_multiplier=0.0, top_db=TOP_DB)
    mfcc = _dct().T @ log_mel
    chroma = _chroma_bank() @ power
    peak = chroma.max(dim=0).values
    chroma = chroma / torch.clamp(peak, min=CHROMA_FLOOR * float(peak.max()) + 1e-12)
    return torch.cat([mfcc, chroma])


@functools.cache
def _hann() -> torch.Tensor:
    import torch

    return torch.hann_window(N_FFT, periodic=True)


@functools.cache
def _mel_bank() -> torch.Tensor:
    import torchaudio.functional as F  # noqa: N812

    return F.melscale_fbanks(N_FFT // 2 + 1, MEL_FMIN_HZ, RATE / 2.0, N_MELS, RATE, norm=None, mel_scale="htk")


@functools.cache
def _dct() -> torch.Tensor:
    import torchaudio.functional as F  # noqa: N812

    return F.create_dct(N_MFCC, N_MELS, norm="ortho")


@functools.cache
def _chroma_bank() -> torch.Tensor:
    import torch

    return torch.from_numpy(chroma_filterbank().astype(np.float32))
