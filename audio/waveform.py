"""Waveform peaks in audiowaveform's JSON format (version 2), at several zoom levels.

Players draw waveforms with peaks.js and similar tools, which read what BBC's ``audiowaveform``
writes: for every block of ``samples_per_pixel`` samples a (min, max) pair. With ``bits`` 8 the
values are in -128..127, mixed to one channel (audiowaveform's default). The finest level is 256
samples per pixel. Each coarser level halves the resolution by merging neighbouring pairs: a
min of mins and a max of maxes gives exactly what a direct computation would.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BASE_SAMPLES_PER_PIXEL = 256
ZOOM_LEVELS = (256, 512, 1024, 2048, 4096, 8192)


def peaks(mono: np.ndarray, rate: int, samples_per_pixel: int = BASE_SAMPLES_PER_PIXEL) -> dict[str, Any]:
    """The audiowaveform v2 document for float samples in [-1, 1]."""
    if mono.ndim != 1:
        raise ValueError("peaks() takes one channel; mix down first")
    pixels = -(-len(mono) // samples_per_pixel)
    padded = np.zeros(pixels * samples_per_pixel, dtype=np.float32)
    padded[: len(mono)] = mono
    blocks = padded.reshape(pixels, samples_per_pixel)
    if len(mono) % samples_per_pixel:  # the last block holds real samples only up to the end
        tail = blocks[-1, : len(mono) % samples_per_pixel]
        lows, highs = blocks[:-1].min(axis=1), blocks[:-1].max(axis=1)
        lows, highs = np.append(lows, tail.min()), np.append(highs, tail.max())
    else:
        lows, highs = blocks.min(axis=1), blocks.max(axis=1)
    return _document(_to_8bit(lows), _to_8bit(highs), rate, samples_per_pixel)


def zoom_out(document: dict[str, Any], factor: int) -> dict[str, Any]:
    """A coarser level (``factor`` × samples per pixel) from a finer one, exactly."""
    if factor < 1:
        raise ValueError("factor must be >= 1")
    data = np.asarray(document["data"], dtype=np.int16)
    lows, highs = data[0::2], data[1::2]
    pixels = -(-len(lows) // factor)
    pad = pixels * factor - len(lows)
    lows = np.concatenate([lows, np.full(pad, 127, np.int16)]).reshape(pixels, factor).min(axis=1)
    highs = np.concatenate([highs, np.full(pad, -128, np.int16)]).reshape(pixels, factor).max(axis=1)
    return _document(lows, highs, document["sample_rate"], document["samples_per_pixel"] * factor)


def levels(mono: np.ndarray, rate: int, zooms: tuple[int, ...] = ZOOM_LEVELS) -> dict[int, dict[str, Any]]:
    """Every zoom level, keyed by samples per pixel, each computed from the finest."""
    finest = peaks(mono, rate, zooms[0])
    result = {zooms[0]: finest}
    for zoom in zooms[1:]:
        if zoom % zooms[0]:
            raise ValueError("zoom levels must be multiples of the finest")
        result[zoom] = zoom_out(finest, zoom // zooms[0])
    return result


def _to_8bit(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values * 128.0), -128, 127).astype(np.int16)


def _document(lows: np.ndarray, highs: np.ndarray, rate: int, samples_per_pixel: int) -> dict[str, Any]:
    data = np.empty(2 * len(lows), dtype=np.int16)
    data[0::2], data[1::2] = lows, highs
    return {"version": 2, "channels": 1, "sample_rate": int(rate), "samples_per_pixel": int(samples_per_pixel),
            "bits": 8, "length": int(len(lows)), "data": data.tolist()}
