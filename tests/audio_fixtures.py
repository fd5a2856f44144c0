"""Audio the tests make themselves: tones and noise, written in real codecs with PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

CODECS = {  # suffix: (container format, codec)
    ".wav": ("wav", "pcm_s16le"),
    ".flac": ("flac", "flac"),
    ".mp3": ("mp3", "libmp3lame"),
    ".m4a": ("ipod", "aac"),
    ".ogg": ("ogg", "libopus"),
}


def tone(freq: float = 440.0, seconds: float = 2.0, rate: int = 44100, *, channels: int = 2,
         amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.tile((amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32), (channels, 1))


def write_audio(path: Path, samples: np.ndarray, rate: int) -> Path:
    """Encode (channels, n) float32 samples into the codec that ``path``'s suffix names."""
    container_format, codec = CODECS[path.suffix]
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, np.float32), format="fltp", layout=layout)
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=layout, rate=rate)
        for converted in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(converted):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path
