"""Audio benchmark: the pipeline against the ffmpeg CLI, identification accuracy, tempo and key accuracy.

Run: ``make bench-audio`` (or ``.venv/bin/python -m bench.audio_bench [--seconds 180] [--tracks 30]``).

1. **Pipeline vs ffmpeg.** One rendered song (``audio/synthetic.py``) is written as FLAC. The full
   pipeline (``audio/pipeline.py``: decode, analysis, fingerprint, waveform, AAC ladder as CMAF + HLS
   + DASH, MP3 320/128) runs on it; then the ffmpeg CLI (Debian's) encodes the same ladder alone in
   one command (decode once, five encodes, same DASH muxer options). Reported: wall time and real-time
   factor (seconds of work per second of audio) per stage, and the pipeline / ffmpeg ratio, both
   measured in this run. Stages run on two lanes, so their times add up to more than the wall time.
2. **Identification.** ``--tracks`` distinct songs of 30 s are fingerprinted into a landmark index
   (the same ranking code as production; an in-memory store instead of the PostgreSQL table, which
   holds the same postings). Clips of 5 s and 10 s at random offsets, under each degradation (clean,
   white noise at 10 and 0 dB SNR, MP3 64 kbit/s, speed ±3 %), must return the right track with the
   offset within 0.5 s, for pair landmarks (13 speed candidates), for the triplet hashes the catalogue's
   shards serve (``audio/landmark_index.py``), and for the baseline, in the same run over the same
   postings: classic landmark matching at one speed (audfprint's design). Clips of songs *not* in the
   index measure false positives.
3. **Tempo and key** over ``corpus(--tracks)`` (seed 0) and ``corpus(3 × --tracks)`` (seed 100), both
   never used for tuning: accuracy 1 (±4 %), accuracy 2 (also ×2, ×½, ×3, ×⅓), MIREX-weighted key score;
   Essentia's estimators side by side when the ``bench`` extra is installed.
4. **Timbre** (``audio/timbre.py``, torchaudio): what the features add to a job. (a) The import in a
   fresh process, as each ``TranscodeJob`` actor pays it once per upload: wall and CPU seconds and peak
   memory of ``import audio.pipeline`` (what a job imports anyway), then ``import torch``, then
   ``torchaudio.functional``, then the first and second ``timbre.compute`` (``--probes`` processes, the
   median). (b) CPU and wall seconds of ``timbre.compute`` per track against the rest of ``analyse``
   (loudness, tempo, key, genre) on rendered songs of 30 s, 3 min and 10 min, with 1 and 2 torch threads.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from audio import fingerprint, timbre
from audio.decode import AudioInfo, DecodedAudio, decode
from audio.dsp import resample
from audio.evaluation import evaluate_tempo_key
from audio.ladder import encode_mp3
from audio.landmark_index import CatalogueIndex
from audio.pipeline import analyse, process
from audio.synthetic import SongSpec, corpus, render, write_audio
from bench.harness import say

RATE = 44100
DEGRADATIONS = ("clean", "noise 10 dB", "noise 0 dB", "mp3 64k", "speed +3%", "speed -3%")
CLIP_LENGTHS = (5.0, 10.0)
OFFSET_TOLERANCE_S = 0.5


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="length of the pipeline benchmark's song")
    parser.add_argument("--tracks", type=int, default=30, help="songs for identification, tempo and key")
    parser.add_argument("--repeat", type=int, default=2, help="pipeline/ffmpeg runs (the best of each is kept)")
    parser.add_argument("--only", choices=("pipeline", "identification", "tempo-key", "timbre"), help="run one part")
    parser.add_argument("--probes", type=int, default=5, help="fresh processes measuring the torch import")
    parser.add_argument("--smoke", action="store_true",
                        help="every part at tiny sizes (a 20 s song, 3 tracks, one run): proves it runs (make test)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.tracks, args.repeat, args.probes = 20.0, 3, 1, 1
    if args.only in (None, "pipeline") and shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg not found: run `make system-deps` (Debian's ffmpeg is the baseline)")
    with tempfile.TemporaryDirectory(prefix="vf-bench-audio-") as scratch:
        if args.only in (None, "pipeline"):
            pipeline_vs_ffmpeg(Path(scratch), args.seconds, args.repeat)
        if args.only in (None, "identification"):
            identification(args.tracks)
        if args.only in (None, "tempo-key"):
            tempo_and_key(args.tracks)
        if args.only in (None, "timbre"):
            timbre_cost(args.probes, (20.0,) if args.smoke else (30.0, 180.0, 600.0))


# --- 1. pipeline vs ffmpeg ------------------------------------------------------------------------

def pipeline_vs_ffmpeg(scratch: Path, seconds: float, repeat: int) -> None:
    say(f"rendering a {seconds:.0f} s song")
    spec = SongSpec(seed=2026, bpm=124, tonic="F", mode="minor", seconds=seconds)
    source = write_audio(scratch / "source.flac", render(spec, RATE), RATE)
    pipeline_runs, ffmpeg_runs = [], []
    for attempt in range(repeat):  # alternate, so drift in machine load hits both alike
        out = scratch / f"pipeline-{attempt}"
        start = time.perf_counter()
        outputs = process(source, out, max_duration_s=seconds + 60)
        pipeline_runs.append((time.perf_counter() - start, outputs.timings))
        ffmpeg_runs.append(_ffmpeg_ladder(source, scratch / f"ffmpeg-{attempt}"))
    wall, timings = min(pipeline_runs, key=lambda run: run[0])
    baseline = min(ffmpeg_runs)
    print(f"\n== Pipeline on one {seconds:.0f} s song (FLAC, stereo, {RATE} Hz), best of {repeat} ==")
    print(f"{'stage':<14}{'seconds':>10}{'RTF':>10}")
    for stage, spent in timings.items():
        print(f"{stage:<14}{spent:>10.2f}{spent / seconds:>10.4f}")
    print(f"{'pipeline wall':<14}{wall:>10.2f}{wall / seconds:>10.4f}")
    print(f"{'ffmpeg ladder':<14}{baseline:>10.2f}{baseline / seconds:>10.4f}   (ffmpeg CLI: the same 3 AAC + 2 MP3, "
          "DASH/CMAF)")
    print(f"ratio pipeline / ffmpeg = {wall / baseline:.2f}x (target <= 1.5x)")


def _ffmpeg_ladder(source: Path, out: Path) -> float:
    out.mkdir()
    command = [
        "ffmpeg", "-v", "error", "-y", "-i", str(source),
        "-map", "0:a", "-map", "0:a", "-map", "0:a", "-c:a", "aac",
        "-b:a:0", "64k", "-b:a:1", "128k", "-b:a:2", "256k",
        "-f", "dash", "-seg_duration", "6", "-use_template", "1", "-use_timeline", "0", "-hls_playlist", "1",
        "-adaptation_sets", "id=0,streams=a",
        "-init_seg_name", "init-$RepresentationID$.mp4", "-media_seg_name", "seg-$RepresentationID$-$Number%05d$.m4s",
        str(out / "manifest.mpd"),
        "-map", "0:a", "-c:a", "libmp3lame", "-b:a", "320k", str(out / "mp3_320.mp3"),
        "-map", "0:a", "-c:a", "libmp3lame", "-b:a", "128k", str(out / "mp3_128.mp3"),
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


# --- 2. identification ----------------------------------------------------------------------------

def identification(tracks: int) -> None:
    say(f"identification: indexing {tracks} songs of 30 s")
    rng = np.random.default_rng(1)
    specs = corpus(tracks, seed=11, seconds=30.0)
    strangers = corpus(tracks, seed=97, seconds=30.0)
    index = fingerprint.LandmarkIndex()
    # The baseline: classic landmark matching at one speed (audfprint's and Shazam's 2003 design), over
    # the same postings; it shows what the speed candidates add.
    classic = fingerprint.LandmarkIndex(index.store, speeds=(1.0,))
    # What production serves: triplet hashes in the catalogue's compact index (audio/landmark_index.py).
    triplets = CatalogueIndex()
    songs = {}
    for number, spec in enumerate(specs):
        songs[number] = render(spec, RATE)
        full = fingerprint.extract(songs[number], RATE)
        index.add(str(number), full)
        hashes = full.triplets()
        triplets.add(str(number), hashes.hashes, hashes.times)
    results: dict[tuple[str, float, str], list[bool]] = {}
    started = time.perf_counter()
    queries = 0
    for number, samples in songs.items():
        for length in CLIP_LENGTHS:
            start_s = float(rng.uniform(1.0, 30.0 - length - 1.5))
            clip = samples[:, int(start_s * RATE): int((start_s + length) * RATE)]
            for degradation in DEGRADATIONS:
                query = fingerprint.extract(_degrade(clip, degradation, rng), RATE)
                queries += 1
                for name, searched in (("pairs", index), ("classic", classic), ("triplets", triplets)):
                    matches = _search(searched, query)
                    hit = bool(matches) and matches[0].track_id == str(number) and \
                        abs(matches[0].offset_s - start_s) <= OFFSET_TOLERANCE_S
                    results.setdefault((name, length, degradation), []).append(hit)
    false_positives = {"pairs": 0, "triplets": 0}
    for spec in strangers:
        samples = render(spec, RATE)
        for length in CLIP_LENGTHS:
            query = fingerprint.extract(samples[:, 5 * RATE: int((5 + length) * RATE)], RATE)
            false_positives["pairs"] += bool(index.query(query))
            false_positives["triplets"] += bool(_search(triplets, query))
    per_query_ms = (time.perf_counter() - started) / (queries + 2 * len(strangers)) * 1000
    print(f"\n== Identification: {tracks} indexed songs, right track and offset within {OFFSET_TOLERANCE_S} s ==")
    columns = [(name, length) for name in ("pairs", "classic", "triplets") for length in CLIP_LENGTHS]
    print(f"{'degradation':<14}" + "".join(f"{f'{name} {length:.0f} s':>15}" for name, length in columns))
    for degradation in DEGRADATIONS:
        row = "".join(f"{_share(results[(name, length, degradation)]):>15}" for name, length in columns)
        print(f"{degradation:<14}{row}")
    print("pairs = pair landmarks at 13 speed candidates (the PostgreSQL design before the shards); classic = the "
          "same at one speed (audfprint's and Shazam's 2003 design); triplets = what the catalogue's shards serve")
    print(f"false positives: pairs {false_positives['pairs']}, triplets {false_positives['triplets']} of "
          f"{2 * len(strangers)} clips of songs not in the index; {per_query_ms:.0f} ms per query (extract + "
          "the three searches)")


def _search(index: fingerprint.LandmarkIndex | CatalogueIndex, query: fingerprint.Fingerprint) -> list:
    if isinstance(index, CatalogueIndex):
        return index.query(fingerprint.triplet_probes(query))
    return index.query(query)


def _degrade(clip: np.ndarray, how: str, rng: np.random.Generator) -> np.ndarray:
    from scipy.signal import resample_poly

    power = float(np.mean(clip ** 2))
    if how == "clean":
        return clip
    if how.startswith("noise"):
        snr_db = float(how.split()[1])
        return (clip + rng.normal(0, np.sqrt(power / 10 ** (snr_db / 10)), clip.shape)).astype(np.float32)
    if how == "mp3 64k":
        return _mp3_round_trip(clip, 64_000)
    factor = {"speed +3%": (100, 103), "speed -3%": (103, 100)}[how]
    return resample_poly(clip, *factor, axis=1).astype(np.float32)


def _mp3_round_trip(clip: np.ndarray, bitrate: int) -> np.ndarray:
    from audio.decode import AudioInfo, DecodedAudio

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "clip.mp3"
        encode_mp3(DecodedAudio(clip, RATE, AudioInfo("raw", "pcm", RATE, 2, None, None)), path, bitrate)
        return decode(path, max_duration_s=120, rate=RATE).samples  # LAME resamples 64k stereo to 22 kHz


def _share(hits: list[bool]) -> str:
    return f"{sum(hits)}/{len(hits)} ({100 * sum(hits) / len(hits):.0f}%)"


# --- 3. tempo and key -----------------------------------------------------------------------------

def tempo_and_key(tracks: int) -> None:
    """Two held-out sets: ``corpus(tracks)`` (seed 0) and a larger one (seed 100), never used for tuning."""
    for count, seed in ((tracks, 0), (3 * tracks, 100)):
        say(f"tempo and key over corpus({count}, seed={seed})")
        report = evaluate_tempo_key(corpus(count, seed=seed, seconds=30.0), RATE)
        print(f"\n== Tempo and key over {report['tracks']} rendered songs of 30 s, seed {seed} "
              "(reference: as rendered) ==")
        print(f"{'estimator':<12}{'tempo acc1':>12}{'tempo acc2':>12}{'key MIREX':>12}{'key exact':>12}{'s/track':>10}")
        for name in ("ours", "essentia"):
            if (scores := report.get(name)) is None:
                print(f"{name:<12}  (not installed: .venv/bin/pip install -e '.[bench]')")
                continue
            print(f"{name:<12}{scores['acc1']:>12.2f}{scores['acc2']:>12.2f}{scores['key_mirex']:>12.3f}"
                  f"{scores['key_correct']:>12.2f}{scores['seconds_per_track']:>10.2f}")
        if "essentia" in report:
            ours, theirs = report["ours"], report["essentia"]
            print(f"ours / Essentia: acc1 {ours['acc1'] / max(theirs['acc1'], 1e-9):.2f}x, "
                  f"key MIREX {ours['key_mirex'] / max(theirs['key_mirex'], 1e-9):.2f}x")


# --- 4. timbre: what the torchaudio features cost a job -------------------------------------------

#: Run in a fresh interpreter, as a new TranscodeJob actor process starts: cumulative wall and CPU seconds
#: and peak RSS after each step.
IMPORT_PROBE = """
import json, os, time
start = time.perf_counter()
def mark(marks, name):
    cpu = os.times()
    with open("/proc/self/statm") as statm:   # resident now (ru_maxrss would carry the parent's over exec)
        rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    marks.append([name, time.perf_counter() - start, cpu.user + cpu.system, rss])
marks = []
mark(marks, "interpreter")
import audio.pipeline, audio.jobs
mark(marks, "import audio.pipeline (the job's own)")
import torch
mark(marks, "import torch")
import torchaudio.functional
mark(marks, "import torchaudio.functional")
import numpy as np
from audio import timbre
signal = np.random.default_rng(0).normal(scale=0.1, size=30 * timbre.RATE).astype(np.float32)
timbre.compute(signal, threads=1)
mark(marks, "first timbre.compute (30 s)")
timbre.compute(signal, threads=1)
mark(marks, "second timbre.compute (30 s)")
print(json.dumps(marks))
"""


def timbre_cost(probes: int, lengths: tuple[float, ...]) -> None:
    say(f"timbre: the torch import in {probes} fresh processes")
    runs = []
    for _ in range(probes):
        out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parent.parent, env=os.environ | {"PYTHONPATH": "."})
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"\n== Timbre: a fresh process's imports and first calls, median of {probes} "
          "(each step's own seconds; RSS after it) ==")
    print(f"{'step':<40}{'wall s':>9}{'CPU s':>9}{'RSS MB':>9}")
    for i, (name, *_) in enumerate(runs[0]):
        own = [[row[i][k] - (row[i - 1][k] if i and k < 3 else 0) for k in (1, 2, 3)] for row in runs]
        wall, cpu, rss = (float(np.median([o[k] for o in own])) for k in range(3))
        print(f"{name:<40}{wall:>9.3f}{cpu:>9.3f}{rss:>9.0f}")

    print("\n== Timbre: per analysed track (CPU = process CPU seconds, all threads; best of 3) ==")
    print(f"{'song':>8}{'rest of analyse CPU':>21}{'timbre CPU, 1 thread':>22}{'wall':>8}"
          f"{'timbre CPU, 2 threads':>23}{'wall':>8}{'added':>8}")
    for seconds in lengths:
        samples = render(SongSpec(seed=77, bpm=118, tonic="A", mode="minor", seconds=seconds), RATE)
        info = AudioInfo(container="synthetic", codec="pcm", rate=RATE, channels=2, duration_s=seconds, bit_rate=None)
        audio = DecodedAudio(samples=samples, rate=RATE, info=info)
        whole = _best(lambda a=audio: analyse(a, timbre_features=True, torch_threads=1))
        mono = resample(audio.mono(), RATE, timbre.RATE).astype(np.float32)
        one = _best(lambda m=mono: timbre.compute(m, timbre.RATE, threads=1))
        two = _best(lambda m=mono: timbre.compute(m, timbre.RATE, threads=2))
        rest = whole[1] - one[1]
        print(f"{seconds:>7.0f}s{rest:>21.3f}{one[1]:>22.3f}{one[0]:>8.3f}{two[1]:>23.3f}{two[0]:>8.3f}"
              f"{one[1] / rest:>7.0%}")


#: One job's pipeline in a fresh interpreter (a TranscodeJob is one): wall and CPU seconds of ``process``.
JOB_PROBE = """
import inspect, json, os, sys, tempfile, time
from pathlib import Path
from audio.pipeline import process
from audio.synthetic import SongSpec, render, write_audio
seconds = float(sys.argv[1])
with tempfile.TemporaryDirectory() as scratch:
    song = render(SongSpec(seed=2026, bpm=124, tonic="F", mode="minor", seconds=seconds), 44100)
    source = write_audio(Path(scratch) / "song.flac", song, 44100)
    # with the timbre features where the tree has them (a base tree from before them has no such switch)
    on = {"timbre_features": True} if "timbre_features" in inspect.signature(process).parameters else {}
    wall, cpu = time.perf_counter(), os.times()
    process(source, Path(scratch) / "out", max_duration_s=seconds + 60, **on)
    end = os.times()
    print(json.dumps([time.perf_counter() - wall, end.user + end.system - cpu.user - cpu.system]))
"""


def jobs_before_after(base_tree: str, seconds: float = 30.0, runs: int = 3) -> None:
    """A whole job's pipeline in fresh processes, alternating between ``base_tree`` (another checkout, e.g.
    ``git archive b169dc1 | tar -x -C /tmp/base``) and this one: what the timbre features add per upload,
    torch's import included."""
    trees = {"base": Path(base_tree).resolve(), "this tree": Path(__file__).resolve().parent.parent}
    measured: dict[str, list[list[float]]] = {name: [] for name in trees}
    for _ in range(runs):
        for name, tree in trees.items():
            out = subprocess.run([sys.executable, "-c", JOB_PROBE, str(seconds)], capture_output=True, text=True,
                                 check=True, cwd=tree, env=os.environ | {"PYTHONPATH": str(tree)})
            measured[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"\n== One job's pipeline on a {seconds:.0f} s song in a fresh process, {runs} runs each, alternating ==")
    for name, rows in measured.items():
        walls, cpus = sorted(r[0] for r in rows), sorted(r[1] for r in rows)
        print(f"{name:<10} wall s {', '.join(f'{w:.2f}' for w in walls)}   CPU s {', '.join(f'{c:.2f}' for c in cpus)}")


def _best(work, repeat: int = 3) -> tuple[float, float]:
    """(wall, process CPU) seconds of the fastest of ``repeat`` runs of ``work``."""
    runs = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    return min(runs)


if __name__ == "__main__":
    main()
