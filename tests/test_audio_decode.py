"""Uploads are judged by decoding: real codecs in, float PCM out; everything else gets a reason."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from audio.decode import AudioRejected, decode, probe
from tests.audio_fixtures import CODECS, tone, write_audio


@pytest.mark.parametrize("suffix", sorted(CODECS))
def test_every_codec_decodes_to_the_same_tone(tmp_path: Path, suffix: str):
    rate = 48000 if suffix == ".ogg" else 44100  # Opus only runs at 48 kHz
    path = write_audio(tmp_path / f"tone{suffix}", tone(440.0, 2.0, rate), rate)
    audio = decode(path, max_duration_s=600)
    assert audio.channels == 2 and audio.rate == rate
    assert abs(audio.duration_s - 2.0) < 0.06  # AAC adds its priming frame
    spectrum = np.abs(np.fft.rfft(audio.mono()[rate // 4: rate // 4 + rate]))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 s window: bins are 1 Hz
    assert 0.4 < np.abs(audio.samples).max() < 0.6
    assert probe(path).codec == audio.info.codec


def test_decode_resamples_and_mono_mixes(tmp_path: Path):
    path = write_audio(tmp_path / "a.flac", tone(1000.0, 1.0, 44100), 44100)
    audio = decode(path, max_duration_s=10, rate=22050)
    assert audio.rate == 22050 and audio.samples.shape == (2, 22050)
    assert audio.mono().shape == (22050,) and audio.mono().dtype == np.float32


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "empty"),
    (b"hello, this is certainly not audio\n" * 20, "not_audio"),
    (os.urandom(20_000), "not_audio"),
    (b"\x89PNG\r\n\x1a\n" + os.urandom(2000), "not_audio"),
])
def test_non_audio_is_rejected_with_a_reason(tmp_path: Path, content: bytes, reason: str):
    path = tmp_path / "upload.mp3"  # the name claims audio; the content decides
    path.write_bytes(content)
    with pytest.raises(AudioRejected) as rejected:
        decode(path, max_duration_s=600)
    assert rejected.value.reason == reason and rejected.value.status == 422 and rejected.value.detail


def test_a_header_without_samples_is_rejected(tmp_path: Path):
    full = write_audio(tmp_path / "a.wav", tone(seconds=1.0), 44100).read_bytes()
    path = tmp_path / "header.wav"
    path.write_bytes(full[:44])
    with pytest.raises(AudioRejected) as rejected:
        decode(path, max_duration_s=600)
    assert rejected.value.reason in ("empty", "not_audio")


def test_too_long_is_rejected_on_samples_not_metadata(tmp_path: Path):
    path = write_audio(tmp_path / "a.flac", tone(seconds=3.0), 44100)
    with pytest.raises(AudioRejected) as rejected:
        decode(path, max_duration_s=2.0)
    assert rejected.value.reason == "too_long"
    assert decode(path, max_duration_s=3.0).duration_s == pytest.approx(3.0, abs=0.01)


def test_a_damaged_tail_keeps_the_audio_before_it(tmp_path: Path):
    good = write_audio(tmp_path / "a.mp3", tone(seconds=4.0), 44100).read_bytes()
    path = tmp_path / "damaged.mp3"
    path.write_bytes(good[: len(good) // 2] + os.urandom(len(good) // 2))
    audio = decode(path, max_duration_s=600)
    assert 1.5 < audio.duration_s < 4.5
