"""Small signal helpers shared by the analysers."""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import resample_poly


def resample(signal: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``signal`` (last axis is time) at ``target`` Hz, by an exact rational polyphase filter."""
    if rate == target:
        return signal
    common = math.gcd(int(rate), int(target))
    return resample_poly(signal, target // common, rate // common, axis=-1)
