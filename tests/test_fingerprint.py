"""Fingerprints identify clips of synthetic tracks: clean, under white noise, and played ±3 % fast or slow.

The tracks are generated here from seeds: a melody and a bass line of harmonic notes (random timbre,
envelopes and vibrato, a random tuning offset so nothing sits on the analysis grid) plus drums (noise
bursts and pitched kicks). Clips are cut at random sample offsets; a hit is the right track with the
offset within ±0.2 s. Every case runs twice: pair landmarks in the store-backed ``LandmarkIndex``,
and triplet hashes in the catalogue's compact in-memory index (``audio/landmark_index.py``), which is
what the shards serve.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import resample_poly

from audio.fingerprint import (
    DEFAULT_MIN_MATCHES,
    MIN_PURITY,
    STRONG_MATCHES,
    Fingerprint,
    LandmarkIndex,
    Landmarks,
    Match,
    Postings,
    extract,
    flatten,
    probes,
    triplet_probes,
)
from audio.landmark_index import CatalogueIndex

RATE = 22050
N_TRACKS = 10
QUERIES = 10
TOLERANCE_S = 0.2


def _note(rng: np.random.Generator, freq: float, duration: float, harmonics: np.ndarray) -> np.ndarray:
    n = int(duration * RATE)
    t = np.arange(n) / RATE
    vibrato = 1 + 0.004 * np.sin(2 * np.pi * rng.uniform(4, 6) * t) * rng.integers(0, 2)
    phase = 2 * np.pi * freq * np.cumsum(vibrato) / RATE
    tone = sum(a * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) for k, a in enumerate(harmonics, start=1)
               if k * freq < RATE / 2)
    attack = min(n, int(rng.uniform(0.005, 0.03) * RATE))
    envelope = np.exp(-t * rng.uniform(1.5, 6))
    envelope[:attack] *= np.linspace(0, 1, attack)
    return tone * envelope


def _voice(rng: np.random.Generator, total: int, low: int, high: int, beat: float) -> np.ndarray:
    out = np.zeros(total)
    harmonics = rng.uniform(0.1, 1, 8) / np.arange(1, 9) ** rng.uniform(0.5, 1.5)
    tuning = rng.uniform(-0.5, 0.5)  # semitones
    start = 0
    while start < total:
        duration = beat * rng.choice([0.5, 1, 1, 1.5, 2])
        midi = rng.integers(low, high) + tuning
        note = _note(rng, 440 * 2 ** ((midi - 69) / 12), duration * 1.3, harmonics) * rng.uniform(0.4, 1)
        end = min(total, start + len(note))
        out[start:end] += note[: end - start]
        start += int(duration * RATE)
    return out


def _drums(rng: np.random.Generator, total: int, beat: float) -> np.ndarray:
    out = np.zeros(total)
    hits = np.arange(0, total / RATE, beat / 2)
    for at in hits[rng.random(len(hits)) < 0.6]:
        n = int(rng.uniform(0.05, 0.2) * RATE)
        t = np.arange(n) / RATE
        if rng.random() < 0.5:  # snare / hat: a noise burst
            hit = rng.standard_normal(n) * np.exp(-t * rng.uniform(20, 60)) * 0.3
        else:  # kick: a falling sine
            hit = np.sin(2 * np.pi * np.cumsum(60 + 100 * np.exp(-t * 30)) / RATE) * np.exp(-t * 15)
        i = int(at * RATE)
        out[i: i + n] += hit[: total - i]
    return out


def synth_track(seed: int, seconds: float = 35.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    total = int(seconds * RATE)
    beat = 60 / rng.uniform(80, 150)
    mix = _voice(rng, total, 60, 84, beat / 2) + 0.7 * _voice(rng, total, 40, 60, beat) + _drums(rng, total, beat)
    return (0.5 * mix / np.abs(mix).max()).astype(np.float32)


def add_noise(clip: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(len(clip))
    noise *= np.sqrt(np.mean(clip**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return clip + noise


def change_speed(clip: np.ndarray, percent: int) -> np.ndarray:
    """Played ``percent`` % faster (negative: slower), pitch and all, like a turntable."""
    return resample_poly(clip, 100, 100 + percent)


@pytest.fixture(scope="module")
def tracks() -> dict[str, np.ndarray]:
    return {f"track-{seed:02d}": synth_track(seed) for seed in range(N_TRACKS)}


class CatalogueSearch:
    """The catalogue's in-memory index (``audio/landmark_index.py``) behind ``LandmarkIndex``'s interface:
    triplet hashes, as the shards hold them (or pairs with their thresholds, to compare the two indexes)."""

    def __init__(self, pairs: bool = False) -> None:
        self.pairs = pairs
        self.index = CatalogueIndex(min_purity=MIN_PURITY, strong_matches=STRONG_MATCHES) if pairs \
            else CatalogueIndex()

    def add(self, track_id: str, fingerprint: Fingerprint) -> None:
        landmarks = fingerprint.landmarks() if self.pairs else fingerprint.triplets()
        self.index.add(track_id, landmarks.hashes, landmarks.times)

    def query(self, fingerprint: Fingerprint) -> list[Match]:
        if self.pairs:
            return self.index.query(flatten(probes(fingerprint)), min_matches=DEFAULT_MIN_MATCHES)
        return self.index.query(triplet_probes(fingerprint))


Searchable = LandmarkIndex | CatalogueSearch


@pytest.fixture(scope="module", params=["pairs", "triplets"])
def index(request, tracks: dict[str, np.ndarray]) -> Searchable:
    """Every accuracy case runs on both: pair landmarks in the store-backed index, and triplet hashes in
    the catalogue's compact index (what the shards serve)."""
    index = LandmarkIndex() if request.param == "pairs" else CatalogueSearch()
    for track_id, samples in tracks.items():
        index.add(track_id, extract(samples, RATE))
    return index


def _hits(index: Searchable, tracks: dict[str, np.ndarray], seconds: float, seed: int, condition) -> int:
    rng = np.random.default_rng(seed)
    ids = sorted(tracks)
    hits = 0
    for _ in range(QUERIES):
        track_id = ids[rng.integers(len(ids))]
        samples = tracks[track_id]
        start = int(rng.integers(0, len(samples) - int(seconds * RATE)))
        clip = condition(samples[start: start + int(seconds * RATE)].astype(np.float64), rng)
        matches = index.query(extract(clip, RATE))
        hit = bool(matches) and matches[0].track_id == track_id
        hits += hit and abs(matches[0].offset_s - start / RATE) <= TOLERANCE_S
    return hits


CONDITIONS = {
    "clean": (lambda clip, rng: clip, 10),
    "snr10": (lambda clip, rng: add_noise(clip, 10, rng), 9),
    "snr0": (lambda clip, rng: add_noise(clip, 0, rng), 9),
    "speed+3": (lambda clip, rng: change_speed(clip, 3), 9),
    "speed-3": (lambda clip, rng: change_speed(clip, -3), 9),
}


@pytest.mark.parametrize("seconds", [5.0, 10.0])
@pytest.mark.parametrize("condition", sorted(CONDITIONS))
def test_clips_are_identified(index: Searchable, tracks: dict[str, np.ndarray], condition: str, seconds: float):
    transform, required = CONDITIONS[condition]
    seed = sorted(CONDITIONS).index(condition) * 100 + int(seconds)
    hits = _hits(index, tracks, seconds, seed=seed, condition=transform)
    print(f"{condition} {seconds:.0f}s: {hits}/{QUERIES}")
    assert hits >= required


def test_unindexed_tracks_return_no_match(index: Searchable):
    rng = np.random.default_rng(1234)
    for seed in range(100, 106):
        samples = synth_track(seed, seconds=12.0)
        seconds = 5 if seed % 2 else 10
        start = int(rng.integers(0, len(samples) - seconds * RATE))
        assert index.query(extract(samples[start: start + seconds * RATE], RATE)) == []


def test_speed_and_offset_are_reported(index: Searchable, tracks: dict[str, np.ndarray]):
    clip = change_speed(tracks["track-03"][10 * RATE: 20 * RATE].astype(np.float64), 3)
    best = index.query(extract(clip, RATE))[0]
    assert isinstance(best, Match) and best.track_id == "track-03"
    assert abs(best.offset_s - 10.0) <= TOLERANCE_S and abs(best.speed - 1.03) <= 0.006


def test_stereo_is_mixed_to_mono(tracks: dict[str, np.ndarray]):
    mono = tracks["track-01"][: 5 * RATE]
    stereo = extract(np.stack([mono, mono]), RATE)
    assert np.array_equal(stereo.times, extract(mono, RATE).times)
    assert np.array_equal(extract(np.stack([mono, mono], axis=1), RATE).times, stereo.times)  # (samples, channels)


class DictStore:
    """The whole storage contract, as a database-backed store would implement it: put, and lookup by hash."""

    def __init__(self) -> None:
        self.rows: dict[int, list[tuple[str, int]]] = {}

    def put(self, track_id: str, landmarks: Landmarks) -> None:
        for h, t in zip(landmarks.hashes.tolist(), landmarks.times.tolist(), strict=True):
            self.rows.setdefault(h, []).append((track_id, int(t)))

    def lookup(self, hashes: np.ndarray) -> Postings:
        found = [(h, track, t) for h in set(hashes.tolist()) for track, t in self.rows.get(h, [])]
        hashes_, tracks, times = zip(*found, strict=True) if found else ((), (), ())
        return Postings(np.array(hashes_, dtype=np.uint32), np.array(tracks, dtype=object), np.array(times))


def test_storage_is_injected(tracks: dict[str, np.ndarray], index: Searchable):
    store = DictStore()
    injected = LandmarkIndex(store)
    for track_id in ("track-02", "track-05"):
        fingerprint = extract(tracks[track_id], RATE)
        landmarks = fingerprint.landmarks()
        assert landmarks.hashes.dtype == np.uint32 and len(landmarks.hashes) == len(landmarks.times)
        injected.add(track_id, fingerprint)
    query = extract(tracks["track-05"][12 * RATE: 17 * RATE], RATE)
    [match] = injected.query(query)
    assert match.track_id == "track-05" and abs(match.offset_s - 12.0) <= TOLERANCE_S
    if isinstance(index, LandmarkIndex):
        assert match.score == index.query(query)[0].score


def test_the_catalogue_index_answers_as_the_store_backed_index(tracks: dict[str, np.ndarray]):
    """Same landmarks, same votes: the compact index finds the same tracks, scores, speeds and offsets."""
    reference, compact = LandmarkIndex(), CatalogueSearch(pairs=True)
    for track_id, samples in tracks.items():
        fingerprint = extract(samples, RATE)
        reference.add(track_id, fingerprint)
        compact.add(track_id, fingerprint)
    rng = np.random.default_rng(42)
    for track_id in sorted(tracks)[:5]:
        start = int(rng.integers(0, 20 * RATE))
        clip = add_noise(tracks[track_id][start: start + 8 * RATE].astype(np.float64), 10, rng)
        query = extract(change_speed(clip, int(rng.integers(-3, 4))), RATE)
        expected, found = reference.query(query), compact.query(query)
        assert [(m.track_id, m.score, m.speed) for m in found] == [(m.track_id, m.score, m.speed) for m in expected]
        assert all(abs(a.offset_s - b.offset_s) <= 0.05 for a, b in zip(found, expected, strict=True))


def test_a_song_held_in_many_copies_still_matches_every_copy(tracks: dict[str, np.ndarray]):
    """Copies align a clip alike, so they count once towards the query's chance level: with the song
    uploaded six times (more than the background rank), a clip still finds the copies, and a clip of a
    song the catalogue lacks still finds nothing."""
    index = CatalogueIndex()
    for track_id, samples in tracks.items():
        landmarks = extract(samples, RATE).triplets()
        index.add(track_id, landmarks.hashes, landmarks.times)
    copies = [f"copy-{n}" for n in range(6)]
    song = extract(tracks["track-04"], RATE).triplets()
    for copy in copies:
        index.add(copy, song.hashes, song.times)
    clip = tracks["track-04"][6 * RATE: 14 * RATE]
    found = index.query(triplet_probes(extract(clip, RATE)), max_results=10)
    best = [m for m in found if m.track_id in {"track-04", *copies}]
    assert {m.track_id for m in best} == {"track-04", *copies}
    assert found[:len(best)] == best  # the copies lead, each with the original's pile
    assert all(abs(m.offset_s - 6.0) <= TOLERANCE_S and m.score == best[0].score for m in best)
    stranger = synth_track(321, seconds=12.0)[2 * RATE: 10 * RATE]
    assert index.query(triplet_probes(extract(stranger, RATE)), max_results=10) == []
