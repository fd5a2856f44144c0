"""The streaming ladder: AAC rungs as CMAF segments shared by HLS and DASH, plus MP3 downloads.

Each rung is encoded once. FFmpeg's ``dash`` muxer (through PyAV) writes fMP4 (CMAF) init and
media segments and the MPD. The HLS playlists over the same segments are written here, not by
FFmpeg: its DASH muxer's HLS output lacks ``#EXT-X-PLAYLIST-TYPE:VOD`` and ``AVERAGE-BANDWIDTH`` and
adds wall-clock ``PROGRAM-DATE-TIME`` tags, all contrary to Apple's HLS Authoring Specification.
The master playlist's ``BANDWIDTH`` is the peak segment bit rate and ``AVERAGE-BANDWIDTH`` the
average over the file, both measured from the segments written, as that specification asks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import lameenc
import numpy as np

from audio.decode import DecodedAudio

AAC_LC = "mp4a.40.2"
SEGMENT_S = 6
MP3_QUALITY = 3
MIN_PEAK_SEGMENT_S = 1.0


@dataclass(frozen=True)
class Rung:
    name: str
    bitrate: int


AAC_RUNGS = (Rung("aac64", 64_000), Rung("aac128", 128_000), Rung("aac256", 256_000))
MP3_RUNGS = (Rung("mp3_320", 320_000), Rung("mp3_128", 128_000))


@dataclass(frozen=True)
class RungOutput:
    rung: Rung
    playlist: str
    init: str
    segments: list[tuple[str, float, int]]  # (file name, duration s, bytes)

    @property
    def average_bandwidth(self) -> int:
        seconds = sum(d for _, d, _ in self.segments)
        return math.ceil(sum(b for _, _, b in self.segments) * 8 / seconds)

    @property
    def peak_bandwidth(self) -> int:
        """The highest segment bit rate, leaving out a last segment under ``MIN_PEAK_SEGMENT_S``.

        The encoder's final padding can spill into a last segment of one AAC frame (23 ms), where the
        fragment headers (~300 bytes) alone read as twice the rung's bit rate; counting it would make
        players shun the rung.
        """
        measured = [s for i, s in enumerate(self.segments)
                    if s[1] > 0 and (s[1] >= MIN_PEAK_SEGMENT_S or i < len(self.segments) - 1)]
        return max(math.ceil(b * 8 / d) for _, d, b in measured or self.segments)


@dataclass(frozen=True)
class Ladder:
    master: str
    mpd: str
    rungs: list[RungOutput]


def encode_adaptive(audio: DecodedAudio, out_dir: Path, rungs: tuple[Rung, ...] = AAC_RUNGS,
                    segment_s: int = SEGMENT_S) -> Ladder:
    """Encode every rung once into ``out_dir``: CMAF segments, ``manifest.mpd`` and ``master.m3u8``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    layout = "mono" if audio.channels == 1 else "stereo"
    samples = audio.samples[:2] if layout == "stereo" else audio.samples[:1]
    options = {
        "seg_duration": str(segment_s), "use_template": "1", "use_timeline": "0", "streaming": "0",
        "hls_playlist": "1", "adaptation_sets": "id=0,streams=a",
        "init_seg_name": "init-$RepresentationID$.mp4", "media_seg_name": "seg-$RepresentationID$-$Number%05d$.m4s",
    }
    with av.open(str(out_dir / "manifest.mpd"), "w", format="dash", options=options) as container:
        streams = []
        for rung in rungs:
            stream = container.add_stream("aac", rate=audio.rate, layout=layout)
            stream.bit_rate = rung.bitrate
            streams.append(stream)
        for stream in streams:
            for frame in _frames(samples, audio.rate, layout, stream.codec_context.format.name):
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
    outputs = [_rung_output(out_dir, index, rung) for index, rung in enumerate(rungs)]
    for output in outputs:
        (out_dir / output.playlist).write_text(media_playlist(output, segment_s))
    (out_dir / "master.m3u8").write_text(master_playlist(outputs))
    return Ladder(master="master.m3u8", mpd="manifest.mpd", rungs=outputs)


def encode_mp3(audio: DecodedAudio, path: Path, bitrate: int, *, quality: int = MP3_QUALITY) -> Path:
    """A constant-bit-rate MP3 at ``bitrate``, encoded by LAME through ``lameenc``.

    Not PyAV's ``libmp3lame``: the LAME inside PyAV's wheels is built without its optimisations and
    was measured 3-4x slower here than LAME proper. ``quality`` is LAME's ``-q`` (3 is LAME's and
    ffmpeg's default). The encoder releases the GIL, so rungs can encode on parallel threads.
    """
    channels = 1 if audio.channels == 1 else 2
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(bitrate // 1000)
    encoder.set_in_sample_rate(audio.rate)
    encoder.set_channels(channels)
    encoder.set_quality(quality)
    samples = audio.samples[:channels]
    block = 1 << 16
    with path.open("wb") as out:
        for start in range(0, samples.shape[1], block):
            pcm = np.clip(samples[:, start:start + block], -1.0, 1.0) * 32767.0
            out.write(encoder.encode(np.rint(pcm).astype("<i2").T.tobytes()))
        out.write(encoder.flush())
    return path


def media_playlist(output: RungOutput, segment_s: int) -> str:
    # RFC 8216 4.3.3.1: each EXTINF rounded to the nearest integer must not exceed the target duration;
    # AAC frames make 6 s segments 6.014 s, which is still target 6, as Apple's authoring spec asks.
    target = max(segment_s, max(round(d) for _, d, _ in output.segments))
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", f"#EXT-X-TARGETDURATION:{target}", "#EXT-X-MEDIA-SEQUENCE:1",
             "#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-INDEPENDENT-SEGMENTS", f'#EXT-X-MAP:URI="{output.init}"']
    for name, duration, _ in output.segments:
        lines += [f"#EXTINF:{duration:.6f},", name]
    return "\n".join([*lines, "#EXT-X-ENDLIST", ""])


def master_playlist(outputs: list[RungOutput]) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for output in sorted(outputs, key=lambda o: o.rung.bitrate):
        lines += [f"#EXT-X-STREAM-INF:BANDWIDTH={output.peak_bandwidth},"
                  f"AVERAGE-BANDWIDTH={output.average_bandwidth},CODECS=\"{AAC_LC}\"", output.playlist]
    return "\n".join([*lines, ""])


def _rung_output(out_dir: Path, index: int, rung: Rung) -> RungOutput:
    """Segment names and durations from the muxer's own playlist for this representation."""
    written = (out_dir / f"media_{index}.m3u8").read_text()
    durations = [float(d) for d in re.findall(r"#EXTINF:([0-9.]+),", written)]
    names = re.findall(r"^(seg-[^\s]+\.m4s)$", written, flags=re.MULTILINE)
    if not names or len(names) != len(durations):
        raise RuntimeError(f"unexpected muxer playlist for rung {rung.name}")
    segments = [(name, duration, (out_dir / name).stat().st_size)
                for name, duration in zip(names, durations, strict=True)]
    (out_dir / f"media_{index}.m3u8").unlink()
    return RungOutput(rung=rung, playlist=f"{rung.name}.m3u8", init=f"init-{index}.mp4", segments=segments)


def _frames(samples: np.ndarray, rate: int, layout: str, encoder_format: str,
            block: int = 1 << 16) -> Iterator[av.AudioFrame]:
    """The samples as frames in the encoder's sample format, block by block (bounded memory)."""
    resampler = av.AudioResampler(format=encoder_format, layout=layout, rate=rate)
    for start in range(0, samples.shape[1], block):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + block]), format="fltp",
                                           layout=layout)
        frame.sample_rate = rate
        yield from resampler.resample(frame)
    yield from resampler.resample(None)
