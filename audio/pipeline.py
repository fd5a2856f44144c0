"""One upload from source file to publishable outputs: decode once, analyse, fingerprint, draw, encode.

:func:`process` is plain Python, free of databases and Ray, so it runs the same in the transcoding
job actor, in the benchmark and in tests. It writes every output into one folder; publishing that
folder (atomically, with the analysis) is the caller's business (``audio/service.py``).

Order and parallelism. The file is decoded once (PyAV) and every stage reads the same samples. The
AAC ladder is the longest stage, and FFmpeg's encoders and LAME release the GIL, so two lanes run
side by side on two threads: the ladder on one; analysis, fingerprint, waveform and the two MP3s on
the other. Progress is reported after each stage as (stage, fraction of the whole), where each
stage's share is its typical share of the work (``STAGE_WEIGHTS``), not of its lane.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audio import fingerprint, genre, key, loudness, metrics, tempo, timbre, waveform
from audio.decode import DecodedAudio, decode
from audio.dsp import resample
from audio.ladder import AAC_RUNGS, MP3_RUNGS, Ladder, encode_adaptive, encode_mp3

#: ``progress(stage, fraction)``: called under the tracker's lock, so it must only hand the report off.
Progress = Callable[[str, float], None]

#: Share of the whole job each stage typically takes (measured by bench/audio_bench.py), for progress.
STAGE_WEIGHTS = {"decode": 0.05, "analysis": 0.15, "fingerprint": 0.05, "waveform": 0.02,
                 "ladder": 0.45, "mp3_320": 0.14, "mp3_128": 0.14}
ANALYSIS_RATE = 22050  # tempo, key and genre need no more than 11 kHz of bandwidth


@dataclass
class Outputs:
    """What :func:`process` made: the analysis, the landmark fingerprint, and files in ``folder``."""

    folder: Path
    analysis: dict[str, Any]
    fingerprint: fingerprint.Fingerprint
    ladder: Ladder
    files: dict[str, str]  # role ("hls", "dash", "mp3_320", "waveform-256", ...) -> file name
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds of its own work


def process(source: Path, folder: Path, *, max_duration_s: float, progress: Progress | None = None,
            timbre_features: bool = False, torch_threads: int = 1) -> Outputs:
    """Run every stage on ``source`` and write the outputs into ``folder`` (created).

    ``timbre_features``: whether the analysis computes the torchaudio timbre features (``transcode_timbre``);
    ``torch_threads``: torch's intra-op threads for them (``transcode_torch_threads``)."""
    tracker = _Tracker(progress)
    folder.mkdir(parents=True, exist_ok=True)
    with tracker.stage("decode"):
        audio = decode(source, max_duration_s=max_duration_s)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="pipeline") as lanes:
        ladder_lane = lanes.submit(_ladder_lane, audio, folder, tracker)
        other_lane = lanes.submit(_analysis_lane, audio, folder, tracker, timbre_features, torch_threads)
        ladder = ladder_lane.result()
        analysis, constellation, files = other_lane.result()
    files |= {"hls": ladder.master, "dash": ladder.mpd}
    analysis["rungs"] = [{"name": r.rung.name, "bitrate": r.rung.bitrate, "average_bandwidth": r.average_bandwidth,
                          "peak_bandwidth": r.peak_bandwidth, "playlist": r.playlist} for r in ladder.rungs]
    return Outputs(folder=folder, analysis=analysis, fingerprint=constellation, ladder=ladder, files=files,
                   timings=dict(tracker.timings))


def analyse(audio: DecodedAudio, *, timbre_features: bool = False, torch_threads: int = 1) -> dict[str, Any]:
    """Duration, loudness (BS.1770-4 / R128), tempo, key, genre and (with ``timbre_features``) timbre of
    decoded audio, JSON-ready. Without timbre (the default, as ``transcode_timbre``'s) the analysis has no
    ``timbre`` field, as before timbre-v1: the content vector's fallback (``ml.content.timbre_block``) reads
    that, and torch is never imported."""
    measured = loudness.measure(audio.samples, audio.rate)
    mono = _downsampled_mono(audio)
    beat = tempo.estimate_tempo(mono, ANALYSIS_RATE)
    tonality = key.estimate_key(mono, ANALYSIS_RATE)
    style = genre.classify(mono, ANALYSIS_RATE)
    analysis = {
        "duration_s": round(audio.duration_s, 3),
        "sample_rate": audio.rate,
        "channels": audio.channels,
        "source": {"container": audio.info.container, "codec": audio.info.codec, "bit_rate": audio.info.bit_rate},
        "loudness": {
            "integrated_lufs": _finite(measured.integrated_lufs),
            "range_lu": _finite(measured.range_lu),
            "true_peak_dbtp": _finite(measured.true_peak_dbtp),
            "sample_peak_dbfs": _finite(measured.sample_peak_dbfs),
            "gain_db_to_minus_14": _finite(measured.gain_db_to_minus_14),
        },
        "tempo": {"bpm": round(beat.bpm, 2), "confidence": round(beat.confidence, 3)},
        "key": {"label": tonality.label, "tonic": tonality.tonic, "mode": tonality.mode,
                "confidence": round(tonality.confidence, 3)},
        "genre": {"label": style.label, "confidence": round(style.confidence, 3), "model": style.model,
                  "scores": {k: round(v, 4) for k, v in style.scores.items()}},
        # timbre and rhythm features of the genre model's windows, averaged: the recommender's audio embedding
        "embedding": {"model": style.model, "values": [round(v, 3) for v in style.embedding]},
    }
    if timbre_features:
        # MFCC and chroma over the same windows (audio/timbre.py): the content model's timbre and harmony
        analysis["timbre"] = _timbre(mono, torch_threads)
    return analysis


def timbre_of(audio: DecodedAudio, *, torch_threads: int = 1) -> dict[str, Any]:
    """The stored ``timbre`` field alone, as :func:`analyse` computes it: for tracks analysed before it
    existed (``audio.service.add_missing_timbre``)."""
    return _timbre(_downsampled_mono(audio), torch_threads)


def _timbre(mono: np.ndarray, torch_threads: int) -> dict[str, Any]:
    return timbre.compute(mono, ANALYSIS_RATE, threads=torch_threads).to_json()


def _ladder_lane(audio: DecodedAudio, folder: Path, tracker: _Tracker) -> Ladder:
    with tracker.stage("ladder"):
        return encode_adaptive(audio, folder, AAC_RUNGS)


def _analysis_lane(audio: DecodedAudio, folder: Path, tracker: _Tracker, timbre_features: bool,
                   torch_threads: int) -> tuple[dict[str, Any], fingerprint.Fingerprint, dict[str, str]]:
    files: dict[str, str] = {}
    with tracker.stage("analysis"):
        analysis = analyse(audio, timbre_features=timbre_features, torch_threads=torch_threads)
    with tracker.stage("fingerprint"):
        constellation = fingerprint.extract(audio.samples, audio.rate)
    with tracker.stage("waveform"):
        for zoom, document in waveform.levels(audio.mono(), audio.rate).items():
            name = f"waveform-{zoom}.json"
            (folder / name).write_text(json.dumps(document, separators=(",", ":")))
            files[f"waveform-{zoom}"] = name
    for rung in MP3_RUNGS:
        with tracker.stage(rung.name):
            files[rung.name] = encode_mp3(audio, folder / f"{rung.name}.mp3", rung.bitrate).name
    return analysis, constellation, files


def _downsampled_mono(audio: DecodedAudio) -> np.ndarray:
    return resample(audio.mono(), audio.rate, ANALYSIS_RATE).astype(np.float32, copy=False)


def _finite(value: float) -> float | None:
    """JSON has no infinities: silence's -inf LUFS is reported as null."""
    return round(value, 3) if math.isfinite(value) else None


class _Tracker:
    """Times stages and reports cumulative progress, from either lane."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._done = 0.0
        self._lock = threading.Lock()
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block; once it succeeds, record it and report the progress."""
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            metrics.STAGE_FAILURES.inc(stage=name)
            raise
        metrics.STAGE_DURATION.observe(time.perf_counter() - start, stage=name)
        with self._lock:  # reported under the lock, so the two lanes' reports leave in increasing order
            self.timings[name] = round(time.perf_counter() - start, 4)
            self._done += STAGE_WEIGHTS.get(name, 0.0)
            if self._progress is not None:
                self._progress(name, min(self._done, 1.0))
