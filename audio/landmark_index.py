"""The catalogue's landmark index in memory: compact sorted arrays, vectorised lookups and votes.

Why: identification and the upload-time duplicate check used to fetch every posting of every probe
hash from PostgreSQL and turn each row into Python objects; frequent hashes carry thousands of
postings, so each query cost grew with the catalogue. Here a partition of the catalogue lives in
three parallel numpy arrays sorted by hash (``uint32`` hash, ``int32`` track number, ``int32`` anchor
frame: 12 bytes a posting, no Python object per posting); a query is one ``np.searchsorted`` pair
over all its probe hashes, and the vote is :func:`audio.fingerprint.vote` over the collisions.

Updates. New tracks go to a small sorted *delta* level that is folded into the *main* level (one
linear ``np.insert``) once it holds an eighth of it, so adding a track never re-sorts the catalogue.
A removed track is a tombstone (its number marked dead, its postings skipped by queries) until dead
postings are a quarter of the index, when both levels are compacted. Re-adding a track replaces it.

Common hashes. A hash with more than ``max_postings`` postings in this index is skipped by queries:
it would cost the most to vote and tells the least (audfprint keeps at most 100 postings per hash).
Every instance applies the cap to its own postings, so a cluster of ``n`` shards gives each
``ceil(cap / n)`` (:func:`shard_cap`); 0 disables it.

Partitions. :func:`shard_of` spreads tracks over shards by a stable hash of the track id, so every
API replica and job computes the same owner, and a shard can load exactly its own tracks.

Plain Python and numpy: the Ray adapter is ``actors/fingerprint_shard.py``.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import numpy as np

from audio.fingerprint import (
    OFFSET_TOLERANCE,
    SPEEDS,
    TRIPLET_BACKGROUND_RANK,
    TRIPLET_BACKGROUND_RATIO,
    TRIPLET_MIN_MATCHES,
    TRIPLET_MIN_PURITY,
    TRIPLET_STRONG_MATCHES,
    Landmarks,
    Match,
    Probes,
    background_floor,
    candidates,
    ranges,
    significant,
    unique_counts,
    vote,
)

#: Fold the delta level into the main level once it holds this share of the main level's postings.
DELTA_SHARE = 8
#: ... but never while it is smaller than this (a small catalogue's delta stays cheap to re-sort).
DELTA_MIN = 1 << 20
#: Compact once dead postings (of removed tracks) are this share of all postings.
DEAD_SHARE = 4
#: Tracks whose collisions the full (track, speed, offset) vote examines: those with the largest
#: speed-blind piles. Past this many plausible tracks (repetitive material, very common hashes), the
#: rest are chance piles far below the true one's; it bounds the cost of such queries.
STAGE_TWO_TRACKS = 32


class _Level(NamedTuple):
    hashes: np.ndarray  # uint32, sorted
    tracks: np.ndarray  # int32 track numbers
    times: np.ndarray  # int32 anchor frames

    @staticmethod
    def empty() -> _Level:
        return _Level(np.zeros(0, np.uint32), np.zeros(0, np.int32), np.zeros(0, np.int32))

    @staticmethod
    def of(hashes: np.ndarray, tracks: np.ndarray, times: np.ndarray) -> _Level:
        order = np.argsort(hashes, kind="stable")
        return _Level(hashes[order], tracks[order], times[order])

    def merged(self, other: _Level) -> _Level:
        """Both levels' postings in hash order, by inserting ``other`` (the smaller) into ``self``."""
        if len(other.hashes) == 0:
            return self
        at = np.searchsorted(self.hashes, other.hashes, side="right")
        return _Level(*(np.insert(mine, at, theirs) for mine, theirs in zip(self, other, strict=True)))

    def kept(self, alive: np.ndarray) -> _Level:
        keep = alive[self.tracks]
        return _Level(*(column[keep] for column in self))

    @property
    def nbytes(self) -> int:
        return sum(column.nbytes for column in self)


class IndexStats(NamedTuple):
    tracks: int
    landmarks: int  # live postings
    nbytes: int  # the posting arrays, dead postings included


class CatalogueIndex:
    """Reference hashes of many tracks; queries return :class:`Match` es like ``LandmarkIndex.query``.

    Agnostic of the hash scheme: the catalogue stores triplets (``Fingerprint.triplets``), and the
    thresholds default to theirs; pair landmarks work the same with the pairs' thresholds."""

    def __init__(self, max_postings: int = 0, speeds: Sequence[float] = SPEEDS, *,
                 min_purity: float = TRIPLET_MIN_PURITY, strong_matches: int = TRIPLET_STRONG_MATCHES,
                 background_rank: int = TRIPLET_BACKGROUND_RANK,
                 background_ratio: float = TRIPLET_BACKGROUND_RATIO) -> None:
        self.max_postings = max_postings
        self.speeds = tuple(speeds)
        self.min_purity, self.strong_matches = min_purity, strong_matches
        self.background_rank, self.background_ratio = background_rank, background_ratio
        self._main = _Level.empty()
        self._delta = _Level.empty()
        self._ids: list[str] = []  # track number -> id
        self._numbers: dict[str, int] = {}  # id -> live track number
        self._alive = np.zeros(0, dtype=bool)
        self._sizes: list[int] = []  # postings per track number
        self._dead = 0

    def __contains__(self, track_id: object) -> bool:
        return str(track_id) in self._numbers

    def __len__(self) -> int:
        return len(self._numbers)

    @property
    def track_ids(self) -> list[str]:
        return list(self._numbers)

    def stats(self) -> IndexStats:
        total = len(self._main.hashes) + len(self._delta.hashes)
        return IndexStats(len(self._numbers), total - self._dead, self._main.nbytes + self._delta.nbytes)

    def add(self, track_id: str | uuid.UUID, hashes: np.ndarray, times: np.ndarray) -> None:
        """Index one track's landmarks (hashes and anchor frames), replacing any earlier copy."""
        self.add_many([(str(track_id), hashes, times)])

    def add_many(self, tracks: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> None:
        """Index several tracks with one sort: how a shard loads its partition at start."""
        latest = {str(track_id): (hashes, times) for track_id, hashes, times in tracks}  # the last copy wins
        if not latest:
            return
        for track_id in latest:
            self.remove(track_id)
        parts = []
        for track_id, (hashes, times) in latest.items():
            number = len(self._ids)
            self._ids.append(track_id)
            self._numbers[track_id] = number
            self._sizes.append(len(hashes))
            parts.append((np.asarray(hashes, np.uint32), np.full(len(hashes), number, np.int32),
                          np.rint(np.asarray(times)).astype(np.int32)))
        self._alive = np.concatenate([self._alive, np.ones(len(latest), dtype=bool)])
        added = _Level.of(*(np.concatenate([p[i] for p in parts]) for i in range(3)))
        if len(added.hashes) >= len(self._main.hashes):
            self._main = _Level.of(*(np.concatenate(c) for c in zip(self._main, self._delta, added, strict=True)))
            self._delta = _Level.empty()
            return
        self._delta = added.merged(self._delta) if len(added.hashes) >= len(self._delta.hashes) \
            else self._delta.merged(added)
        if len(self._delta.hashes) > max(DELTA_MIN, len(self._main.hashes) // DELTA_SHARE):
            self._main, self._delta = self._main.merged(self._delta), _Level.empty()

    def remove(self, track_id: str | uuid.UUID) -> bool:
        """Forget a track (deleted, or replaced); False if it was not indexed."""
        number = self._numbers.pop(str(track_id), None)
        if number is None:
            return False
        self._alive[number] = False
        self._dead += self._sizes[number]
        if self._dead * DEAD_SHARE > len(self._main.hashes) + len(self._delta.hashes):
            self._main, self._delta = self._main.kept(self._alive), self._delta.kept(self._alive)
            self._dead = 0
        return True

    def query(self, probes: Probes, *, exclude: str | uuid.UUID | None = None,
              min_matches: int = TRIPLET_MIN_MATCHES, max_results: int = 5) -> list[Match]:
        """The tracks this query's probes (``fingerprint.triplet_probes(clip)``) come from: the
        significant ones (:meth:`decide`) among :meth:`candidates`."""
        found = self.candidates(probes, exclude=exclude, min_matches=min_matches,
                                limit=max_results + self.background_rank)
        return self.decide(found, min_matches=min_matches, max_results=max_results)

    def decide(self, found: Sequence[Match], *, min_matches: int, max_results: int) -> list[Match]:
        """The significant matches among candidates (of this index, or merged over every shard's)."""
        return significant(found, min_matches=min_matches, max_results=max_results, min_purity=self.min_purity,
                           strong_matches=self.strong_matches, background_rank=self.background_rank,
                           background_ratio=self.background_ratio)

    def candidates(self, probes: Probes, *, exclude: str | uuid.UUID | None = None,
                   min_matches: int = TRIPLET_MIN_MATCHES, limit: int = 9) -> list[Match]:
        """The ``limit`` largest piles of this query, one per track, significant or not.

        Two stages, so that the cost follows the collisions of one speed, not of thirteen. A triplet
        hashes alike at neighbouring candidate speeds, so the probes are first reduced to distinct
        (hash, query frame) pairs and looked up once. Stage one counts, per track, those collisions in
        offset windows wide enough to hold a true pile at any candidate speed (the drift between
        speeds over the clip, plus the vote's tolerance); a track whose best window holds fewer than
        ``min_matches`` cannot score that much at any speed. Stage two votes per (track, speed,
        offset) (``fingerprint.vote``) over those windows' collisions, each expanded to the speeds its
        probe came from (purity still counts all of a track's collisions at that speed). The answer is
        the one-stage vote's: stage one only drops tracks that could not match (and, when more than
        ``STAGE_TWO_TRACKS`` could, all but the strongest of them). Piles are counted down to the
        background test's floor (``fingerprint.background_floor``), not ``min_matches``: the chance
        piles a match is compared with are that small. Significance is :meth:`decide`'s.
        """
        min_matches = background_floor(min_matches, self.background_ratio) if self.background_rank else min_matches
        if len(probes.hashes) == 0 or not self._numbers:
            return []
        speeds = np.asarray(self.speeds)
        frames = np.rint(probes.times / speeds[probes.speeds]).astype(np.int64)  # the clip's own frames
        distinct, of_probe = _distinct(np.asarray(probes.hashes, np.int64) << 32 | frames)
        hashes, distinct_frames = (distinct >> 32).astype(np.uint32), distinct & 0xFFFFFFFF
        asked, track_numbers, posting_times = self._collisions(hashes, exclude)
        if len(asked) == 0:
            return []
        drift = np.abs(speeds - 1).max() * float(distinct_frames.max()) * 2
        width = int(np.ceil(drift)) + 2 * OFFSET_TOLERANCE + 2
        near = _near_piles(track_numbers, posting_times - distinct_frames[asked], width=width,
                           min_matches=min_matches, keep_tracks=STAGE_TWO_TRACKS)
        is_candidate = np.zeros(int(track_numbers.max()) + 1, dtype=bool)
        is_candidate[track_numbers[near]] = True
        of_candidates = is_candidate[track_numbers]
        # Purity needs every collision of a (track, speed), the far ones too: count them per speed.
        probed_at = np.zeros((len(distinct), len(self.speeds)), dtype=bool)
        probed_at[of_probe, probes.speeds] = True
        tracks_kept, numbered = np.unique(track_numbers[of_candidates], return_inverse=True)
        totals = np.stack([np.bincount(numbered, weights=probed_at[asked[of_candidates], k], minlength=len(tracks_kept))
                           for k in range(len(self.speeds))], axis=1)
        asked, track_numbers, posting_times = asked[near], track_numbers[near], posting_times[near]
        order = np.argsort(of_probe, kind="stable")
        starts = np.searchsorted(of_probe[order], np.arange(len(distinct)))
        per_distinct = np.bincount(of_probe, minlength=len(distinct))
        rows = order[ranges(starts[asked], starts[asked] + per_distinct[asked])]
        votes = vote(probes.times[rows], probes.speeds[rows], np.repeat(track_numbers, per_distinct[asked]),
                     np.repeat(posting_times, per_distinct[asked]), min_collisions=min_matches)
        totals_of = totals[np.searchsorted(tracks_kept, votes.tracks), votes.speeds]
        votes = votes._replace(purities=votes.scores / np.maximum(totals_of, 1))
        return candidates(votes, self._ids, self.speeds, limit)

    def _collisions(self, hashes: np.ndarray, exclude: str | uuid.UUID | None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(index into ``hashes``, track number, stored frame) of every live posting of those hashes,
        hashes past the posting cap left out."""
        bounds = [(level, np.searchsorted(level.hashes, hashes, side="left"),
                   np.searchsorted(level.hashes, hashes, side="right")) for level in (self._main, self._delta)]
        found = sum(hi - lo for _, lo, hi in bounds)
        usable = found <= self.max_postings if self.max_postings else np.ones(len(hashes), dtype=bool)
        asked, tracks, times = [], [], []
        for level, lo, hi in bounds:
            lo, hi = lo[usable], hi[usable]
            rows = ranges(lo, hi)
            asked.append(np.repeat(np.nonzero(usable)[0], hi - lo))
            tracks.append(level.tracks[rows])
            times.append(level.times[rows])
        asked_rows, track_numbers, posting_times = (np.concatenate(c) for c in (asked, tracks, times))
        live = self._alive[track_numbers]
        excluded = self._numbers.get(str(exclude)) if exclude is not None else None
        if excluded is not None:
            live &= track_numbers != excluded
        return asked_rows[live], track_numbers[live], posting_times[live]


def _distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values, and for each input the index of its value among them."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]
    numbers = np.empty(len(values), dtype=np.int64)
    numbers[order] = np.cumsum(first) - 1
    return ordered[first], numbers


def _near_piles(tracks: np.ndarray, offsets: np.ndarray, *, width: int, min_matches: int,
                keep_tracks: int) -> np.ndarray:
    """Which collisions lie in a pair of adjacent offset bins of ``width`` frames that holds ``min_matches``
    collisions of their track (any interval of ``width`` frames lies in such a pair), for the
    ``keep_tracks`` tracks whose best pair holds the most."""
    bins = np.floor_divide(offsets, width).astype(np.int64)
    low = int(bins.min())
    span = int(bins.max()) - low + 2
    keys = tracks.astype(np.int64) * span + (bins - low)
    distinct, counts = unique_counts(keys)
    after = np.minimum(np.searchsorted(distinct, distinct + 1), len(distinct) - 1)
    windows = counts + np.where(distinct[after] == distinct + 1, counts[after], 0)
    full, full_windows = distinct[windows >= min_matches], windows[windows >= min_matches]
    if len(full) == 0:
        return np.zeros(len(keys), dtype=bool)
    owners = full // span
    best = np.zeros(int(owners.max()) + 1, dtype=np.int64)
    np.maximum.at(best, owners, full_windows)
    ranked = np.nonzero(best)[0]
    if len(ranked) > keep_tracks:
        ranked = ranked[np.argsort(-best[ranked], kind="stable")[:keep_tracks]]
        full = full[np.isin(owners, ranked)]
    hot = np.union1d(full, full + 1)
    at = np.minimum(np.searchsorted(hot, keys), len(hot) - 1)
    return hot[at] == keys


class Catalogue(Protocol):
    """Where the published catalogue's landmarks are searched: the ``FingerprintShard`` actors in
    production (``actors/fingerprint_shard.py``), a :class:`LocalCatalogue` in one process."""

    async def search(self, probes: Probes, *, exclude: str | None, min_matches: int,
                     max_results: int) -> list[Match]: ...

    async def add(self, track_id: str, landmarks: Landmarks) -> None: ...

    async def remove(self, track_id: str) -> None: ...


class LocalCatalogue:
    """A :class:`Catalogue` over one in-process :class:`CatalogueIndex` (tests, benchmarks, one-off tools)."""

    def __init__(self, index: CatalogueIndex | None = None) -> None:
        self.index = index if index is not None else CatalogueIndex()

    async def search(self, probes: Probes, *, exclude: str | None, min_matches: int,
                     max_results: int) -> list[Match]:
        return self.index.query(probes, exclude=exclude, min_matches=min_matches, max_results=max_results)

    async def add(self, track_id: str, landmarks: Landmarks) -> None:
        self.index.add(track_id, landmarks.hashes, landmarks.times)

    async def remove(self, track_id: str) -> None:
        self.index.remove(track_id)


def shard_of(track_id: str | uuid.UUID, shards: int) -> int:
    """The shard (0..shards-1) that holds a track: a stable hash of its id, the same in every process."""
    if shards < 1:
        raise ValueError("need at least one shard")
    digest = hashlib.blake2b(str(track_id).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def shard_cap(max_postings: int, shards: int) -> int:
    """Each of ``shards`` shards' share of a catalogue-wide per-hash posting cap (0: no cap)."""
    return math.ceil(max_postings / shards) if max_postings else 0


def merge(results: Sequence[list[Match]], *, min_matches: int = TRIPLET_MIN_MATCHES, max_results: int = 5,
          index: CatalogueIndex | None = None) -> list[Match]:
    """The matches over shards, from each shard's :meth:`CatalogueIndex.candidates`: a track lives in one
    shard, so its pile there is its pile, and the background (the k-th largest pile) is the whole
    catalogue's when every shard sends its k largest. Decided with ``index``'s thresholds (the defaults')."""
    decider = index if index is not None else CatalogueIndex()
    return decider.decide([m for found in results for m in found], min_matches=min_matches, max_results=max_results)
