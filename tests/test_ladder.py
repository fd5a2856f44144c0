"""The ladder: Debian's ffprobe reads the master playlist, every rung, the MPD and the MP3s."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from audio.decode import decode
from audio.ladder import AAC_RUNGS, encode_adaptive, encode_mp3
from tests.audio_fixtures import write_audio

FFPROBE = shutil.which("ffprobe")
pytestmark = pytest.mark.skipif(FFPROBE is None, reason="ffprobe (Debian's ffmpeg) is installed by `make test`")
SECONDS = 20.0


def _ffprobe(target: Path) -> dict:
    result = subprocess.run([FFPROBE, "-v", "error", "-show_format", "-show_streams", "-of", "json", str(target)],
                            capture_output=True, text=True, timeout=60, check=True)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def music(tmp_path_factory) -> object:
    rng = np.random.default_rng(3)
    rate = 44100
    t = np.arange(int(rate * SECONDS)) / rate
    melody = sum(0.15 * np.sin(2 * np.pi * f * t) for f in (220, 330, 440, 660))
    signal = (melody + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    path = write_audio(tmp_path_factory.mktemp("src") / "song.flac", np.stack([signal, signal[::-1]]), rate)
    return decode(path, max_duration_s=600)


def test_hls_and_dash_share_one_set_of_segments_and_ffprobe_reads_them(music, tmp_path: Path):
    ladder = encode_adaptive(music, tmp_path)
    master = (tmp_path / ladder.master).read_text()
    assert master.count("#EXT-X-STREAM-INF") == 3 and 'CODECS="mp4a.40.2"' in master
    assert all(f"AVERAGE-BANDWIDTH={r.average_bandwidth}" in master for r in ladder.rungs)
    averages = [r.average_bandwidth for r in ladder.rungs]
    assert averages == sorted(averages)
    for rung, output in zip(AAC_RUNGS, ladder.rungs, strict=True):
        playlist = (tmp_path / output.playlist).read_text()
        assert "#EXT-X-PLAYLIST-TYPE:VOD" in playlist and "#EXT-X-ENDLIST" in playlist
        assert "#EXT-X-TARGETDURATION:6\n" in playlist
        assert "PROGRAM-DATE-TIME" not in playlist
        assert all(d <= 6.1 for _, d, _ in output.segments[:-1]) and len(output.segments) == 4
        assert 0.7 * rung.bitrate < output.average_bandwidth < 1.3 * rung.bitrate
        probed = _ffprobe(tmp_path / output.playlist)
        assert float(probed["format"]["duration"]) == pytest.approx(SECONDS, abs=0.1)
        assert probed["streams"][0]["codec_name"] == "aac" and probed["streams"][0]["profile"] == "LC"
    probed = _ffprobe(tmp_path / ladder.master)
    assert len(probed["streams"]) == 3 and float(probed["format"]["duration"]) == pytest.approx(SECONDS, abs=0.1)
    probed = _ffprobe(tmp_path / ladder.mpd)
    assert len(probed["streams"]) == 3 and float(probed["format"]["duration"]) == pytest.approx(SECONDS, abs=0.1)
    assert sorted(p.name for p in tmp_path.glob("*.m4s")) == sorted(
        name for output in ladder.rungs for name, _, _ in output.segments)  # one set, shared


@pytest.mark.parametrize("bitrate", [320_000, 128_000])
def test_mp3_downloads(music, tmp_path: Path, bitrate: int):
    path = encode_mp3(music, tmp_path / f"{bitrate}.mp3", bitrate)
    probed = _ffprobe(path)
    assert probed["streams"][0]["codec_name"] == "mp3"
    assert int(probed["format"]["bit_rate"]) == pytest.approx(bitrate, rel=0.03)
    assert float(probed["format"]["duration"]) == pytest.approx(SECONDS, abs=0.1)


def test_a_one_frame_last_segment_does_not_inflate_the_advertised_peak(tmp_path: Path):
    """12 s splits into two full segments plus the encoder's padding: one 23 ms segment of headers."""
    rate = 44100
    rng = np.random.default_rng(5)
    noise = (0.2 * rng.standard_normal((2, 12 * rate))).astype(np.float32)
    source = decode(write_audio(tmp_path / "twelve.flac", noise, rate), max_duration_s=60)
    ladder = encode_adaptive(source, tmp_path / "out")
    for output in ladder.rungs:
        assert output.segments[-1][1] < 0.1  # the padding segment is there...
        full = max(b * 8 / d for _, d, b in output.segments[:-1])
        assert output.peak_bandwidth == pytest.approx(full, rel=0.01)  # ...and does not set the peak
        assert output.peak_bandwidth < 1.3 * output.average_bandwidth
