"""The catalogue's compact index (audio/landmark_index.py): adds, replacements, removals, levels and the cap.

Landmarks are synthetic here (random hashes and times, and a query made of one track's landmarks
shifted by a known offset), so each case can say exactly what must be found; real audio is the
subject of test_fingerprint.py and of the shard tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from audio import landmark_index
from audio.fingerprint import FRAME_S, SPEEDS, Probes
from audio.landmark_index import CatalogueIndex, merge, shard_cap, shard_of

UNIT_SPEED = SPEEDS.index(1.0)


def track(seed: int, n: int = 2000, frames: int = 6000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 1 << 21, n).astype(np.uint32), np.sort(rng.integers(0, frames, n)).astype(np.int32)


def clip_of(hashes: np.ndarray, times: np.ndarray, start: int, length: int = 300) -> Probes:
    """The landmarks of frames start..start+length, timed from the clip's start, at speed 1."""
    keep = (times >= start) & (times < start + length)
    return Probes(hashes[keep], (times[keep] - start).astype(np.float64),
                  np.full(int(keep.sum()), UNIT_SPEED, np.int16))


@pytest.fixture
def catalogue() -> tuple[CatalogueIndex, dict[str, tuple[np.ndarray, np.ndarray]]]:
    index = CatalogueIndex()
    tracks = {f"t{seed}": track(seed) for seed in range(20)}
    index.add_many([(track_id, *landmarks) for track_id, landmarks in tracks.items()])
    return index, tracks


def test_a_clip_finds_its_track_and_offset(catalogue):
    index, tracks = catalogue
    [best, *_] = index.query(clip_of(*tracks["t7"], start=1200))
    assert best.track_id == "t7" and best.offset_s == pytest.approx(1200 * FRAME_S, abs=FRAME_S)
    assert best.score >= 90 and best.speed == 1.0
    assert len(index) == 20 and index.stats().landmarks == 20 * 2000


def test_tracks_added_one_by_one_are_found_across_levels(monkeypatch):
    monkeypatch.setattr(landmark_index, "DELTA_MIN", 5000)  # fold the delta level into the main one often
    index = CatalogueIndex()
    tracks = {f"t{seed}": track(seed) for seed in range(12)}
    for track_id, (hashes, times) in tracks.items():
        index.add(track_id, hashes, times)
        assert index.query(clip_of(hashes, times, start=3000))[0].track_id == track_id  # at once
    for track_id, landmarks in tracks.items():
        assert index.query(clip_of(*landmarks, start=600))[0].track_id == track_id


def test_removed_and_replaced_tracks(catalogue, monkeypatch):
    index, tracks = catalogue
    assert index.remove("t3") and not index.remove("t3") and "t3" not in index
    assert [m for m in index.query(clip_of(*tracks["t3"], start=900)) if m.track_id == "t3"] == []
    # Re-adding replaces: the old copy never votes again.
    new_hashes, new_times = track(99)
    index.add("t4", new_hashes, new_times)
    assert index.query(clip_of(*tracks["t4"], start=900)) == []
    assert index.query(clip_of(new_hashes, new_times, start=900))[0].track_id == "t4"
    # Enough removals compact the arrays; the rest is still found.
    before = index.stats().nbytes
    for seed in range(5, 15):
        index.remove(f"t{seed}")
    assert index.stats().nbytes < before and index.stats().landmarks == 9 * 2000
    assert index.query(clip_of(*tracks["t17"], start=100))[0].track_id == "t17"


def test_exclude_leaves_one_track_out(catalogue):
    index, tracks = catalogue
    clip = clip_of(*tracks["t2"], start=500)
    assert index.query(clip)[0].track_id == "t2"
    assert all(m.track_id != "t2" for m in index.query(clip, exclude="t2"))


def test_hashes_past_the_posting_cap_are_skipped():
    index = CatalogueIndex(max_postings=30)
    hashes, times = track(1)
    common = np.uint32(12345)
    index.add("target", np.concatenate([hashes, [common] * 50]), np.concatenate([times, np.arange(50) * 10]))
    for n in range(40):  # 40 other tracks share the one common hash: 90 postings in all
        index.add(f"other{n}", np.array([common], np.uint32), np.array([n], np.int32))
    probes = clip_of(hashes, times, start=1000)
    with_common = Probes(np.append(probes.hashes, common), np.append(probes.times, 0.0),
                         np.append(probes.speeds, UNIT_SPEED))
    capped = index.query(with_common, min_matches=5)
    index.max_postings = 0
    uncapped = index.query(with_common, min_matches=5)
    assert capped[0].track_id == uncapped[0].track_id == "target"
    assert capped[0].purity > uncapped[0].purity  # the common hash's 90 collisions were never voted


def test_partitions_are_stable_and_spread():
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(1000)]
    owners = [shard_of(i, 4) for i in ids]
    assert owners == [shard_of(i, 4) for i in ids]
    assert min(np.bincount(owners)) > 200
    assert shard_cap(100, 3) == 34 and shard_cap(0, 3) == 0


def test_merge_keeps_the_best_over_shards(catalogue):
    index, tracks = catalogue
    one = index.query(clip_of(*tracks["t1"], start=100))
    two = index.query(clip_of(*tracks["t9"], start=100, length=150))
    merged = merge([two, one], max_results=3)
    assert [m.score for m in merged] == sorted((m.score for m in one + two), reverse=True)[:3]


def test_a_pile_that_does_not_stand_out_of_the_querys_chance_piles_is_no_match():
    """A clip of a song outside the catalogue meets many tracks by chance; in a large catalogue some of
    those piles pass any fixed size and purity test. Here 12 distractor tracks each share 16 of the
    clip's hashes at one offset (a pile that alone would be a match: 16 agreeing, all of that track's
    collisions): none stands out of the others, so nothing is identified. The clip's own track, once
    indexed, stands far above them and is found."""
    rng = np.random.default_rng(7)
    hashes = rng.integers(0, 1 << 28, 300).astype(np.uint32)
    times = np.sort(rng.integers(0, 300, 300)).astype(np.int32)
    query = clip_of(hashes, times, start=0)
    index = CatalogueIndex()
    index.add_many([(f"other{seed}", *track(seed)) for seed in range(100, 150)])
    for number in range(12):
        shared = rng.choice(len(hashes), 16, replace=False)
        filler_hashes, filler_times = track(200 + number, n=500)
        index.add(f"chance{number}", np.concatenate([hashes[shared], filler_hashes]),
                  np.concatenate([times[shared] + 40 * number, filler_times]))
    assert index.query(query) == []
    index.add("song", hashes, times + 500)
    [best, *_] = index.query(query)
    assert best.track_id == "song" and best.offset_s == pytest.approx(500 * FRAME_S, abs=FRAME_S)
