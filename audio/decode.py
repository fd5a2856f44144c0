"""Decoding uploads with PyAV: content is judged by decoding, never by file name or MIME type.

An upload is accepted as audio only when FFmpeg finds an audio stream and decodes real samples from
it. The whole pipeline then works on one decoded copy (:class:`DecodedAudio`), so every stage
(loudness, tempo, key, fingerprint, waveform) sees the same samples and the file is decoded once.
Each way an upload can be unusable has its own reason, because the artist is shown it: not audio,
corrupt, empty, too long.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from verseflow.errors import DomainError


class AudioRejected(DomainError):
    """The upload cannot be used as audio; ``reason`` is a stable code, the detail says why."""

    status, title = 422, "Unusable audio"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail, reason=reason)
        self.reason = reason


@dataclass(frozen=True)
class AudioInfo:
    """What the container says, before decoding."""

    container: str
    codec: str
    rate: int
    channels: int
    duration_s: float | None
    bit_rate: int | None


@dataclass(frozen=True)
class DecodedAudio:
    """PCM as float32 in [-1, 1], shaped (channels, samples), at ``rate``."""

    samples: np.ndarray
    rate: int
    info: AudioInfo

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration_s(self) -> float:
        return self.samples.shape[1] / self.rate

    def mono(self) -> np.ndarray:
        return self.samples.mean(axis=0, dtype=np.float32)


MIN_AUDIO_S = 0.1  # less than this is an empty upload
SLACK_S = 0.1  # encoder priming and padding: a 600 s file may decode to 600.05 s


def seconds_text(seconds: float, *, up: bool = False) -> str:
    """A length for a message, to the millisecond, trailing zeros dropped; rounded down unless ``up``.

    Rounding away from the limit keeps a refusal truthful: a clip of 4.8996 s printed as "4.9" next
    to "4.9 s accepted" would contradict itself (as "5.0 s long; needs 5 s" once did), so a length
    found too short is rounded down and one found too long is rounded up.
    """
    milliseconds = math.ceil(seconds * 1000 - 1e-6) if up else math.floor(seconds * 1000 + 1e-6)
    return f"{milliseconds / 1000:.3f}".rstrip("0").rstrip(".")


def probe(path: Path) -> AudioInfo:
    """Open the file and describe its first audio stream; raises :class:`AudioRejected`."""
    with _open(path) as container:
        return _info(container, _audio_stream(container))


def check(path: Path, *, max_duration_s: float, probe_s: float = 3.0) -> AudioInfo:
    """The upload-time verdict: an audio stream, a declared length within the limit, real samples.

    Decodes only the first ``probe_s`` seconds, so a request answers quickly even for a long file;
    the transcoding job's full :func:`decode` still enforces every rule on all the samples (a file
    damaged further in, or longer than it declares, fails the job with the same reasons).
    """
    with _opened(path, max_duration_s, SLACK_S) as (container, stream, info):
        decoded = 0.0
        try:
            for frame in container.decode(stream):
                decoded += frame.samples / (frame.sample_rate or info.rate)
                if decoded >= probe_s:
                    break
        except (av.error.InvalidDataError, av.error.EOFError) as exc:
            if decoded == 0:
                raise AudioRejected("corrupt", f"the audio data cannot be decoded: {_short(exc)}") from None
    if decoded < MIN_AUDIO_S:
        raise _empty()
    return info


def decode(path: Path, *, max_duration_s: float, rate: int | None = None, max_channels: int = 8,
           slack_s: float = SLACK_S) -> DecodedAudio:
    """Decode the first audio stream to float32 planar PCM, resampled to ``rate`` if given.

    Stops as soon as the decoded audio exceeds ``max_duration_s`` by more than ``slack_s`` (a
    container may lie about its duration, so the limit is enforced on samples, not on metadata;
    the slack absorbs what codecs add, so a file cut to exactly the limit is not refused).
    """
    with _opened(path, max_duration_s, slack_s) as (container, stream, info):
        channels = min(max(info.channels, 1), max_channels)
        out_rate = rate or info.rate
        layout = "mono" if channels == 1 else "stereo" if channels == 2 else av.AudioLayout(channels).name
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=out_rate)
        chunks: list[np.ndarray] = []
        total = 0
        limit = int((max_duration_s + slack_s) * out_rate)
        try:
            for frame in container.decode(stream):
                frame.pts = None  # the resampler keeps its own clock; broken timestamps must not stop it
                for converted in resampler.resample(frame):
                    chunk = converted.to_ndarray()
                    chunks.append(chunk)
                    total += chunk.shape[1]
                if total > limit:
                    raise _too_long("audio is longer than allowed", max_duration_s, slack_s)
            for converted in resampler.resample(None):
                chunks.append(converted.to_ndarray())
        except (av.error.InvalidDataError, av.error.EOFError) as exc:
            if not chunks:
                raise AudioRejected("corrupt", f"the audio data cannot be decoded: {exc}") from None
            # A damaged tail after real audio: keep what decoded (FFmpeg's own behaviour too).
    samples = np.concatenate(chunks, axis=1).astype(np.float32, copy=False) if chunks else np.zeros((channels, 0),
                                                                                                   np.float32)
    if samples.shape[1] < out_rate * MIN_AUDIO_S:
        raise _empty()
    if not np.isfinite(samples).all():
        raise AudioRejected("corrupt", "decoded samples are not finite")
    return DecodedAudio(samples=samples, rate=out_rate, info=info)


@contextmanager
def _opened(path: Path, max_duration_s: float,
            slack_s: float) -> Iterator[tuple[av.container.InputContainer, av.audio.stream.AudioStream, AudioInfo]]:
    """The open container, its first audio stream and what it declares, refused if declared too long."""
    with _open(path) as container:
        stream = _audio_stream(container)
        info = _info(container, stream)
        if info.duration_s is not None and info.duration_s > max_duration_s + slack_s:
            raise _too_long(f"audio is {seconds_text(info.duration_s, up=True)} s long", max_duration_s, slack_s)
        yield container, stream, info


def _too_long(what: str, max_duration_s: float, slack_s: float) -> AudioRejected:
    return AudioRejected("too_long", f"{what}; the limit is {seconds_text(max_duration_s)} s "
                                     f"({seconds_text(max_duration_s + slack_s)} s accepted)")


def _empty() -> AudioRejected:
    return AudioRejected("empty", f"the file holds less than {MIN_AUDIO_S} s of audio")


def _open(path: Path) -> av.container.InputContainer:
    if path.stat().st_size == 0:
        raise AudioRejected("empty", "the file is empty")
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.FileNotFoundError:
        raise
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise AudioRejected("not_audio", f"not a recognised audio file ({_short(exc)})") from None


def _audio_stream(container: av.container.InputContainer) -> av.audio.stream.AudioStream:
    streams = container.streams.audio
    if not streams:
        raise AudioRejected("not_audio", f"no audio stream in this {container.format.name} file")
    return streams[0]


def _info(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> AudioInfo:
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    if not stream.codec_context.sample_rate:
        raise AudioRejected("corrupt", "the audio stream has no sample rate")
    return AudioInfo(
        container=container.format.name,
        codec=stream.codec_context.name,
        rate=int(stream.codec_context.sample_rate),
        channels=int(stream.codec_context.channels or 0),
        duration_s=duration,
        bit_rate=int(stream.bit_rate) if stream.bit_rate else None,
    )


def _short(exc: BaseException) -> str:
    return (getattr(exc, "strerror", None) or str(exc))[:120]
