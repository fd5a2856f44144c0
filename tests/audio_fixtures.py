"""Audio the tests make themselves: tones and noise, written in real codecs with PyAV."""

from __future__ import annotations

import numpy as np

from audio.synthetic import CODECS, write_audio  # noqa: F401 - re-exported for the tests


def tone(freq: float = 440.0, seconds: float = 2.0, rate: int = 44100, *, channels: int = 2,
         amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.tile((amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32), (channels, 1))
