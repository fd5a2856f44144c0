"""Waveform peaks follow audiowaveform's v2 JSON; coarser zoom levels equal direct computation."""

from __future__ import annotations

import numpy as np
import pytest

from audio.waveform import levels, peaks, zoom_out


def test_peaks_of_a_known_signal():
    rate = 44100
    signal = np.zeros(256 * 3 + 100, dtype=np.float32)
    signal[10], signal[20] = 0.5, -1.0   # pixel 0
    signal[300] = 1.0                    # pixel 1 (clipped to 127)
    signal[256 * 3 + 50] = -0.25         # the partial last pixel
    doc = peaks(signal, rate)
    assert {k: doc[k] for k in ("version", "channels", "sample_rate", "samples_per_pixel", "bits", "length")} == {
        "version": 2, "channels": 1, "sample_rate": rate, "samples_per_pixel": 256, "bits": 8, "length": 4}
    assert doc["data"] == [-128, 64, 0, 127, 0, 0, -32, 0]


@pytest.mark.parametrize("factor", [2, 4, 16])
def test_zooming_out_equals_computing_directly(factor: int):
    rng = np.random.default_rng(7)
    signal = (rng.standard_normal(256 * 1000 + 77) * 0.3).clip(-1, 1).astype(np.float32)
    assert zoom_out(peaks(signal, 48000), factor) == peaks(signal, 48000, 256 * factor)


def test_levels_cover_every_zoom():
    signal = np.sin(np.linspace(0, 200, 48000 * 3)).astype(np.float32)
    result = levels(signal, 48000)
    assert sorted(result) == [256, 512, 1024, 2048, 4096, 8192]
    assert [result[z]["length"] for z in sorted(result)] == [-(-len(signal) // z) for z in sorted(result)]
    assert max(result[256]["data"]) == 127 and min(result[256]["data"]) == -128


def test_multichannel_input_is_refused():
    with pytest.raises(ValueError, match="mix down"):
        peaks(np.zeros((2, 10), np.float32), 44100)
