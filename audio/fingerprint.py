"""Landmark audio fingerprints, and the matching that finds a clip's track and offset, tolerant of ±3 % speed.

What: ``extract`` turns samples into a :class:`Fingerprint` (a constellation of spectral peaks);
``Fingerprint.landmarks`` pairs the peaks into 32-bit hashes, each with the anchor's time in analysis
frames; :class:`LandmarkIndex` stores reference hashes and answers queries with :class:`Match` es found
by agreement of time offsets, as in Wang's Shazam paper (2003) and Ellis's audfprint.

Analysis. Audio is mixed to mono and resampled to 8 kHz (``resample_poly``): identification needs the
0.15-3.8 kHz band, where melodies, voices and most harmonics live, and 8 kHz keeps the STFT cheap. The
STFT uses a 1024-sample Hann window (128 ms, 7.8 Hz bins: the partials of a 150 Hz note are resolved)
and a 256-sample hop (32 ms: offsets come out well inside ±0.1 s and peak times jitter by one frame at
most). Peaks are local maxima of the log-magnitude spectrogram over ±4 frames × ±6 bins that stand at
least ``MIN_PROMINENCE_DB`` above a smoothed local background (an adaptive threshold that follows loud
and quiet passages and flat noise floors); at most ``MAX_PEAKS_PER_FRAME`` per frame are kept (the most
prominent), which bounds the density to 125 peaks/s (music gives ~25/s) whatever the level and wherever a
clip starts. A 12 dB prominence keeps noise out: white noise makes local maxima ~7 dB above its mean. Each peak's
frequency is refined by parabolic interpolation to a fraction of a bin and kept as log2(Hz).

Speed. Playing a recording ``s`` times faster multiplies every frequency by ``s`` and divides every time
by ``s``: in log-frequency that is a *shift* by log2(s), and time is a *scaling*. A landmark hash is
(anchor log-frequency band, log-frequency difference anchor→target, time difference), quantized
coarsely (1/36 octave, 2 frames). The frequency difference is speed-invariant; the anchor band and the
time difference are not, so the query side undoes candidate speeds: for each factor in ``SPEEDS``
(0.97..1.03 in 0.5 % steps) the query's peaks are mapped back (log f − log2 s, t × s) before pairing and
hashing. The residual error after the nearest candidate is ≤ 0.25 % — far below a 1.9 % frequency step
or a 2-frame time step — so one candidate reproduces the reference's hashes. All candidates' hashes go to
the store in one lookup, and the offsets are voted per (track, speed). Pairing uses the same zone in the
corrected coordinates, so the chosen targets (the first ``FANOUT`` peaks ahead within ±1 octave) are the
same ones the reference chose. Quantized values near a step boundary are also hashed with the
neighbouring step on the query side (multi-probe), which recovers landmarks that peak jitter pushed
across a boundary; the reference side stores one hash per landmark.

Matching. A query landmark (h, t_q) under speed s meets each stored (h, track, t_db); the reference
time of the query's start is t_db − t_q·s. Per (track, speed), true matches pile up at one offset (±1
frame) while chance collisions scatter; the score is that pile's size. A match needs ``min_matches``
(40) landmarks in the pile, and either a pile holding at least ``MIN_PURITY`` (3 %) of all the
collisions with that track at that speed, or a pile of ``STRONG_MATCHES`` (120) or more. Size alone
does not separate: music repeats itself, so against a 30-track catalogue chance piles of 40-80 appear
for 10 s clips (drum hits and chord tones shared by songs at similar tempi), while a 5 s clip at 0 dB
SNR may score only 60. Chance piles are a sliver of their track's collisions (0.7-2 %); true piles are
6-20 %, except in tracks that loop the clipped passage (every repeat collides too: 1.5-3 %), whose
piles are then large (139 and up at 0 dB SNR). With both tests, none of 20 clips of recordings outside
the catalogue matched (``bench/audio_bench.py``). Chance piles grow with catalogue size, so a large
catalogue should recalibrate the thresholds (the bench measures them).

Triplets (the catalogue's hashes). A pair carries 21 bits, of which music uses about 17 (72,000
distinct hashes over 200 rendered songs): at 200 landmarks/s every hash has thousands of postings in a
large catalogue, and a query's cost grows with it. :meth:`Fingerprint.triplets` hashes an anchor with
two of its first ``TRIPLET_TARGETS`` targets (anchor band in 1/12 octave, both frequency differences
in 1/24 octave, both time differences in 3-frame steps: 28 bits, 290,000 distinct hashes over the
same songs, at most 54 postings each), 3 per anchor, ≈ 120 a second. Speed is undone on the query
side as for pairs, with the same multi-probe. A triplet needs three peaks to survive where a pair needs
two, so scores are lower: a match needs ``TRIPLET_MIN_MATCHES`` (16) agreeing triplets holding
``TRIPLET_MIN_PURITY`` (5 %) of that track's collisions, or ``TRIPLET_STRONG_MATCHES`` (20), and it must
stand ``TRIPLET_BACKGROUND_RATIO`` (1.6) times above the query's ``TRIPLET_BACKGROUND_RANK``-th (4th)
largest pile over the whole catalogue (:func:`significant`). Fixed size and purity tests alone do not
hold as the catalogue grows: with 400 rendered songs and 9,600 distractors (``bench/fingerprint.py``),
chance piles of clips of unindexed songs reached 19 (3 % purity) and 13-14 at 15-18 % purity, which
passed the earlier rule (13 at 15 %, or 20), while true piles of 5 s clips at 0 dB SNR were 16-19 at
12-25 % purity, which it missed. Chance piles come from every track and every candidate speed alike
(shared drum sounds at a similar tempo align on a beat grid), so the query's own 4th pile is their
level, wherever the catalogue's size and the probes put it; a true pile stands out of it. Measured on
those clips (360 of 30 songs, 80 of 20 unindexed ones): at 10,000 tracks true piles stood 1.78x or more
above that level, chance piles at most 1.44x; at 30 tracks 4.3x against none passing the size test.
The 4th pile rather than the 2nd, so that a song held in up to 3 copies still matches them all. With
the first 1,000 rendered songs indexed, clips of unindexed songs made piles of 13-15 standing 1.6-2.5x
above their level (one of 15 at 43 % purity: synthetic songs share drum kits, progressions and keys),
so the size floor went from 13 to 16: over the three measured catalogues (30, 1,000 rendered, 400
rendered + 9,600 distractors) that rule found 354 of 360 clips with no false positive of 80.
``audio/landmark_index.py`` holds them for the catalogue; ``bench/fingerprint.py``
measures accuracy and false positives as the catalogue grows.

Storage is injected for pairs: :class:`LandmarkIndex` needs only a :class:`LandmarkStore` — ``put`` a
track's (hash, time) pairs and ``lookup`` hashes → postings (hash, track, time). It is the reference
the catalogue's index is tested against (same votes, same answers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple, Protocol

import numpy as np
from scipy.ndimage import maximum_filter, uniform_filter
from scipy.signal import resample_poly

ANALYSIS_RATE = 8000
N_FFT = 1024
HOP = 256
FRAME_S = HOP / ANALYSIS_RATE
FMIN_HZ = 150.0
FMAX_HZ = 3800.0

PEAK_NEIGHBOURHOOD = (9, 13)  # frames × bins: ±4 frames (±128 ms), ±6 bins (±47 Hz)
BACKGROUND_SIZE = (15, 65)  # frames × bins of the smoothed background for the adaptive threshold
MIN_PROMINENCE_DB = 12.0
MAX_PEAKS_PER_FRAME = 4
FLOOR_DB = -80.0  # below the loudest bin: never a peak

FANOUT = 5
DT_MIN, DT_MAX = 2, 63  # frames between anchor and target (64 ms .. 2 s)
DF_MAX_OCT = 1.0  # target within ±1 octave of the anchor
STEPS_PER_OCTAVE = 36
DT_STEP = 2  # frames per time quantum
PROBE_MARGIN = 0.2  # fraction of a quantum near a boundary that also probes the neighbour

TRIPLET_TARGETS = 3  # an anchor's first targets that its triplets pair up (3: three triplets an anchor)
TRI_BAND_STEPS = 12  # anchor band: 1/12 octave
TRI_DF_STEPS = 24  # frequency differences: 1/24 octave
TRI_DT_STEP = 3  # frames per time quantum
TRI_PROBE_MARGIN = 0.15
_TRI_BITS = (6, 6, 6, 5, 5)  # anchor band | df to b | df to c | dt to b | dt to c
#: Triplet matching: a pile of 16 agreeing triplets holding 5 % of that track's collisions, or of 20, and
#: 1.6 times this query's 4th largest pile (its chance level: :func:`significant`); calibrated in the
#: module docstring.
TRIPLET_MIN_MATCHES = 16
TRIPLET_MIN_PURITY = 0.05
TRIPLET_STRONG_MATCHES = 20
TRIPLET_BACKGROUND_RANK = 4
TRIPLET_BACKGROUND_RATIO = 1.6

SPEEDS: tuple[float, ...] = tuple(round(0.97 + 0.005 * i, 3) for i in range(13))
DEFAULT_MIN_MATCHES = 40
MIN_PURITY = 0.03  # the pile over all collisions with that track at that speed
STRONG_MATCHES = 120  # a pile this large needs no purity test (chance piles stay under 80 here)
OFFSET_TOLERANCE = 1  # frames either side of the modal offset that count towards the score

# 32-bit hash layout: f1 band (8 bits) | frequency difference (7 bits) | time difference (6 bits).
_F1_BITS, _DF_BITS, _DT_BITS = 8, 7, 6
_DF_STEPS = int(DF_MAX_OCT * STEPS_PER_OCTAVE)
assert int((np.log2(FMAX_HZ / FMIN_HZ) + 0.1) * STEPS_PER_OCTAVE) < 1 << _F1_BITS
assert 2 * _DF_STEPS + 2 < 1 << _DF_BITS and DT_MAX // DT_STEP + 1 < 1 << _DT_BITS


class Landmarks(NamedTuple):
    """Aligned arrays: 32-bit hashes and their anchors' times in analysis frames (float for queries)."""

    hashes: np.ndarray
    times: np.ndarray


class Postings(NamedTuple):
    """What a store returns for looked-up hashes: aligned arrays of hash, track id and stored time."""

    hashes: np.ndarray
    tracks: np.ndarray
    times: np.ndarray


@dataclass(frozen=True)
class Match:
    track_id: str
    offset_s: float  # where the query starts in the reference track
    score: int  # landmarks agreeing on that offset
    speed: float = 1.0  # the query plays this many times faster than the reference
    purity: float = 1.0  # score over all the query's collisions with this track at this speed


@dataclass(frozen=True)
class Fingerprint:
    """The constellation: peak times (analysis frames), log2 frequencies (Hz) and the number of frames."""

    times: np.ndarray
    log_freqs: np.ndarray
    n_frames: int

    @property
    def duration_s(self) -> float:
        return self.n_frames * FRAME_S

    def landmarks(self, speed: float = 1.0, *, probe: bool = False) -> Landmarks:
        """Hashes of peak pairs after undoing ``speed``; ``probe`` adds neighbouring quanta (query side)."""
        times = self.times * speed
        log_freqs = self.log_freqs - np.log2(speed)
        anchors, targets = _pairs(times, log_freqs)
        f1 = (log_freqs[anchors] - np.log2(FMIN_HZ)) * STEPS_PER_OCTAVE
        df = (log_freqs[targets] - log_freqs[anchors]) * STEPS_PER_OCTAVE + _DF_STEPS + 0.5
        dt = (times[targets] - times[anchors]) / DT_STEP + 0.5
        t = times[anchors]
        if probe:
            f1, df, dt, t = _probe(f1, df, dt, t)
        hashes = _pack(np.floor(f1), np.floor(df), np.floor(dt))
        keep = hashes >= 0
        return Landmarks(hashes[keep].astype(np.uint32), t[keep])

    def triplets(self, speed: float = 1.0, *, probe: bool = False, targets: int = TRIPLET_TARGETS) -> Landmarks:
        """Hashes of peak triplets (an anchor and two of its first targets) after undoing ``speed``.

        Three peaks carry about 28 bits (anchor band, two frequency and two time differences) where a
        pair carries 21, of which music uses about 17: far fewer chance collisions per hash, which is
        what keeps a query's cost flat as the catalogue grows. ``probe`` adds neighbouring quanta.
        """
        times = self.times * speed
        log_freqs = self.log_freqs - np.log2(speed)
        a, b, c = _triplets(times, log_freqs, targets)
        f1 = (log_freqs[a] - np.log2(FMIN_HZ)) * TRI_BAND_STEPS
        df_b = (log_freqs[b] - log_freqs[a]) * TRI_DF_STEPS + TRI_DF_STEPS * DF_MAX_OCT + 0.5
        df_c = (log_freqs[c] - log_freqs[a]) * TRI_DF_STEPS + TRI_DF_STEPS * DF_MAX_OCT + 0.5
        dt_b = (times[b] - times[a]) / TRI_DT_STEP
        dt_c = (times[c] - times[a]) / TRI_DT_STEP
        t = times[a]
        if probe:
            f1, df_b, df_c, dt_b, dt_c, t = _probe(f1, df_b, df_c, dt_b, dt_c, t, margin=TRI_PROBE_MARGIN)
        hashes = pack_triplets([np.floor(v).astype(np.int64) for v in (f1, df_b, df_c, dt_b, dt_c)])
        valid = hashes >= 0
        return Landmarks(hashes[valid].astype(np.uint32), t[valid])


def extract(samples: np.ndarray, rate: int) -> Fingerprint:
    """The fingerprint of float samples, 1-D or (channels, samples), at ``rate`` Hz."""
    mono = _resample(_mono(samples), rate)
    spectrogram = _log_spectrogram(mono)
    return _constellation(spectrogram)


class LandmarkStore(Protocol):
    """Where reference landmarks live: in memory here, a PostgreSQL table in production."""

    def put(self, track_id: str, landmarks: Landmarks) -> None: ...

    def lookup(self, hashes: np.ndarray) -> Postings: ...


class MemoryLandmarkStore:
    """Postings in sorted numpy arrays; lookups are binary searches."""

    def __init__(self) -> None:
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._hashes = np.zeros(0, dtype=np.uint32)
        self._tracks = np.zeros(0, dtype=object)
        self._times = np.zeros(0, dtype=np.int32)

    def put(self, track_id: str, landmarks: Landmarks) -> None:
        n = len(landmarks.hashes)
        tracks = np.empty(n, dtype=object)
        tracks[:] = track_id
        self._pending.append((landmarks.hashes.astype(np.uint32), tracks, np.rint(landmarks.times).astype(np.int32)))

    def lookup(self, hashes: np.ndarray) -> Postings:
        self._merge()
        wanted = np.unique(hashes.astype(np.uint32))
        lo = np.searchsorted(self._hashes, wanted, side="left")
        hi = np.searchsorted(self._hashes, wanted, side="right")
        rows = ranges(lo, hi)
        return Postings(self._hashes[rows], self._tracks[rows], self._times[rows])

    def _merge(self) -> None:
        if not self._pending:
            return
        parts = [(self._hashes, self._tracks, self._times), *self._pending]
        hashes, tracks, times = (np.concatenate([p[i] for p in parts]) for i in range(3))
        order = np.argsort(hashes, kind="stable")
        self._hashes, self._tracks, self._times = hashes[order], tracks[order], times[order]
        self._pending = []


class LandmarkIndex:
    """Reference fingerprints in a :class:`LandmarkStore`; queries vote on (track, speed, offset)."""

    def __init__(self, store: LandmarkStore | None = None, speeds: Sequence[float] = SPEEDS) -> None:
        self.store: LandmarkStore = store if store is not None else MemoryLandmarkStore()
        self.speeds = tuple(speeds)

    def add(self, track_id: str, fingerprint: Fingerprint) -> None:
        self.store.put(track_id, fingerprint.landmarks())

    def query(self, fingerprint: Fingerprint, *, min_matches: int = DEFAULT_MIN_MATCHES,
              max_results: int = 5) -> list[Match]:
        """Best matches first; ``[]`` when no track has ``min_matches`` landmarks agreeing on an offset."""
        probes = self.probes(fingerprint)
        if not any(len(lm.hashes) for lm in probes):
            return []
        postings = self.store.lookup(np.concatenate([lm.hashes for lm in probes]))
        return rank(probes, postings, self.speeds, min_matches=min_matches, max_results=max_results)

    def probes(self, fingerprint: Fingerprint) -> list[Landmarks]:
        return probes(fingerprint, self.speeds)


def probes(fingerprint: Fingerprint, speeds: Sequence[float] = SPEEDS) -> list[Landmarks]:
    """A query's landmarks under every candidate speed (in ``speeds`` order), ready for a lookup."""
    return [fingerprint.landmarks(s, probe=True) for s in speeds]


def rank(probes: list[Landmarks], postings: Postings, speeds: Sequence[float] = SPEEDS, *,
         min_matches: int = DEFAULT_MIN_MATCHES, max_results: int = 5) -> list[Match]:
    """Vote the postings of a query's probes per (track, speed); best-supported tracks first.

    Split from :meth:`LandmarkIndex.query` so that a store with an asynchronous lookup can sit between
    :meth:`LandmarkIndex.probes` and this. The catalogue's own index (``audio/landmark_index.py``)
    gathers its postings itself and calls :func:`vote` and :func:`matches` directly.
    """
    if len(postings.hashes) == 0:
        return []
    ordered = _sorted(postings)
    ids, track_numbers = np.unique(ordered.tracks.astype(str), return_inverse=True)
    query = flatten(probes)
    lo = np.searchsorted(ordered.hashes, query.hashes, side="left")
    hi = np.searchsorted(ordered.hashes, query.hashes, side="right")
    rows = ranges(lo, hi)
    asked = np.repeat(np.arange(len(query.hashes)), hi - lo)
    votes = vote(query.times[asked], query.speeds[asked], track_numbers[rows], ordered.times[rows],
                 min_collisions=min_matches)
    return matches(votes, ids, speeds, min_matches=min_matches, max_results=max_results)


class Probes(NamedTuple):
    """A query's landmarks under every candidate speed, flattened: hash, time and index into the speeds."""

    hashes: np.ndarray
    times: np.ndarray
    speeds: np.ndarray


def pack_triplets(fields: Sequence[np.ndarray]) -> np.ndarray:
    """Quantized (anchor band, df to b, df to c, dt to b, dt to c) → 32-bit hashes as int64; -1 where out of range."""
    hashes = np.zeros(len(fields[0]), dtype=np.int64)
    valid = np.ones(len(fields[0]), dtype=bool)
    for value, bits in zip(fields, _TRI_BITS, strict=True):
        valid &= (value >= 0) & (value < 1 << bits)
        hashes = (hashes << bits) | np.clip(value, 0, (1 << bits) - 1)
    return np.where(valid, hashes, -1)


def unpack_triplets(hashes: np.ndarray) -> list[np.ndarray]:
    """The quantized fields of triplet hashes (the inverse of :func:`pack_triplets`)."""
    fields, rest = [], hashes.astype(np.int64)
    for bits in reversed(_TRI_BITS):
        fields.append(rest & ((1 << bits) - 1))
        rest = rest >> bits
    return fields[::-1]


def triplet_probes(fingerprint: Fingerprint, speeds: Sequence[float] = SPEEDS) -> Probes:
    """A query's triplet hashes under every candidate speed, flattened: what the catalogue's index searches."""
    return flatten([fingerprint.triplets(s, probe=True) for s in speeds])


def flatten(probes: list[Landmarks]) -> Probes:
    """One set of aligned arrays for all candidate speeds, so that one lookup and one vote serve them all."""
    if not probes:
        return Probes(np.zeros(0, np.uint32), np.zeros(0, np.float64), np.zeros(0, np.int16))
    return Probes(np.concatenate([p.hashes for p in probes]).astype(np.uint32),
                  np.concatenate([p.times for p in probes]).astype(np.float64),
                  np.concatenate([np.full(len(p.hashes), i, np.int16) for i, p in enumerate(probes)]))


class Votes(NamedTuple):
    """Per track: its best-supported speed (index) and offset (frames), the pile's size and its purity."""

    tracks: np.ndarray
    speeds: np.ndarray
    scores: np.ndarray
    offsets: np.ndarray
    purities: np.ndarray


def vote(query_times: np.ndarray, query_speeds: np.ndarray, tracks: np.ndarray, times: np.ndarray, *,
         min_collisions: int = 1) -> Votes:
    """The largest offset pile of every (track, speed), then each track's best speed; all vectorised.

    Inputs are aligned per collision (a query landmark meeting a stored posting of the same hash): the
    query landmark's time and speed index, the posting's track number and time. Per (track, speed) the
    score is the most collisions within ±``OFFSET_TOLERANCE`` frames of one offset (ties: the earliest
    offset), the offset is their mean, and the purity is the score over all that group's collisions.
    Groups with fewer than ``min_collisions`` collisions cannot score that much and are dropped first
    (one ``bincount``), so the sort over (group, offset bin) keys sees only the few groups that might
    match; no Python loop runs per track, so the cost grows with the collisions, not with the tracks.
    """
    empty = Votes(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    if len(tracks) == 0:
        return empty
    tracks = tracks.astype(np.int64)
    width = int(tracks.max()) + 1
    group_keys, groups, collisions, kept = _groups(query_speeds.astype(np.int64) * width + tracks, min_collisions)
    if len(group_keys) == 0:
        return empty
    offsets = times[kept].astype(np.float64) - query_times[kept]
    bins = np.rint(offsets).astype(np.int64)
    low = int(bins.min()) - 2
    span = int(bins.max()) - low + 3  # every bin ± 1 stays inside its group's span
    keys, counts = unique_counts(groups * span + (bins - low))
    centres = unique_counts(np.concatenate([keys - 1, keys, keys + 1]))[0]
    windows = sum(_count_at(keys, counts, centres + d) for d in range(-OFFSET_TOLERANCE, OFFSET_TOLERANCE + 1))
    centre_groups = centres // span
    order = np.lexsort((centres, -windows, centre_groups))
    first = order[np.r_[True, centre_groups[order][1:] != centre_groups[order][:-1]]]
    scores = windows[first]
    best_bins = centres[first] % span + low
    near = np.abs(offsets - best_bins[groups]) <= OFFSET_TOLERANCE + 0.5
    mean_offsets = (np.bincount(groups[near], weights=offsets[near], minlength=len(group_keys))
                    / np.maximum(np.bincount(groups[near], minlength=len(group_keys)), 1))
    group_tracks, group_speeds = group_keys % width, group_keys // width
    per_track = np.lexsort((group_speeds, -scores, group_tracks))
    best = per_track[np.r_[True, group_tracks[per_track][1:] != group_tracks[per_track][:-1]]]
    return Votes(group_tracks[best], group_speeds[best], scores[best], mean_offsets[best],
                 scores[best] / collisions[best])


#: Group keys below this are counted with one dense ``bincount`` (8 bytes a key), larger ones by sorting.
_DENSE_GROUPS = 1 << 22


def _groups(raw: np.ndarray, min_collisions: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(group keys with at least ``min_collisions`` collisions, each kept collision's group number,
    collisions per group, which collisions were kept)."""
    if int(raw.max()) < _DENSE_GROUPS:
        counts = np.bincount(raw)
        kept = counts[raw] >= min_collisions
        group_keys = np.nonzero(counts >= min_collisions)[0]
        return group_keys, np.searchsorted(group_keys, raw[kept]), counts[group_keys], kept
    keys, counts = unique_counts(raw)
    at = np.searchsorted(keys, raw)
    kept = counts[at] >= min_collisions
    numbered = np.cumsum(counts >= min_collisions) - 1
    return keys[counts >= min_collisions], numbered[at[kept]], counts[counts >= min_collisions], kept


def unique_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and their counts, by one sort (faster here than ``np.unique``'s hashing)."""
    ordered = np.sort(values)
    starts = np.nonzero(np.r_[True, ordered[1:] != ordered[:-1]])[0]
    return ordered[starts], np.diff(np.r_[starts, len(ordered)])


def matches(votes: Votes, ids: Sequence[str] | np.ndarray, speeds: Sequence[float] = SPEEDS, *,
            min_matches: int = DEFAULT_MIN_MATCHES, max_results: int = 5, min_purity: float = MIN_PURITY,
            strong_matches: int = STRONG_MATCHES, background_rank: int = 0,
            background_ratio: float = 1.0) -> list[Match]:
    """The significant votes as :class:`Match` es, best first; ``ids[n]`` names track number ``n``."""
    return significant(candidates(votes, ids, speeds), min_matches=min_matches, max_results=max_results,
                       min_purity=min_purity, strong_matches=strong_matches, background_rank=background_rank,
                       background_ratio=background_ratio)


def candidates(votes: Votes, ids: Sequence[str] | np.ndarray, speeds: Sequence[float] = SPEEDS,
               limit: int | None = None) -> list[Match]:
    """Every track's best vote as a :class:`Match`, significant or not, largest piles first (``limit`` of them)."""
    order = np.argsort(-votes.scores, kind="stable")[:limit]
    return [Match(str(ids[votes.tracks[i]]), round(float(votes.offsets[i]) * FRAME_S, 3), int(votes.scores[i]),
                  speeds[votes.speeds[i]], round(float(votes.purities[i]), 4)) for i in order]


def significant(found: Sequence[Match], *, min_matches: int, max_results: int = 5, min_purity: float = MIN_PURITY,
                strong_matches: int = STRONG_MATCHES, background_rank: int = 0,
                background_ratio: float = 1.0) -> list[Match]:
    """The matches among a query's candidates (every track's best pile, over the whole catalogue), best first.

    Besides the size and purity tests (:func:`_significant`), with ``background_rank`` k > 0 a match
    must be ``background_ratio`` times the k-th largest pile of this query: the query's own chance
    level. Chance piles grow with the catalogue (more tracks, hence more piles to pick the largest
    from) and with the probes (every candidate speed is another chance), and they grow alike for every
    track, so the k-th largest pile measures them where they are; a true pile stands far above it.
    Piles that agree on where the clip starts and how fast it plays are counted once (:func:`_background`):
    copies of one recording all align the clip there, chance piles fall anywhere, so a song uploaded
    k times or more still matches every copy instead of becoming its own background (which made a
    song unidentifiable, and its next re-upload unflagged, once the catalogue held k copies).
    Candidates below the background's own floor (``background_floor``) may be missing: they could
    not have blocked a match.
    """
    ranked = sorted(found, key=lambda m: -m.score)
    background = _background(ranked, background_rank)
    return [m for m in ranked if _significant(m, min_matches, min_purity, strong_matches)
            and m.score >= background_ratio * background][:max_results]


#: Two piles within this of each other's offset (and at the same speed) align the clip alike.
SAME_ALIGNMENT_S = 2 * FRAME_S


def _background(ranked: Sequence[Match], rank: int) -> int:
    """The ``rank``-th largest pile (0 when there are fewer, or ``rank`` is 0), counting piles that
    align the clip alike (same speed, offsets within :data:`SAME_ALIGNMENT_S`) as one."""
    if rank <= 0:
        return 0
    distinct: list[Match] = []
    for match in ranked:
        if any(match.speed == d.speed and abs(match.offset_s - d.offset_s) <= SAME_ALIGNMENT_S for d in distinct):
            continue
        distinct.append(match)
        if len(distinct) == rank:
            return match.score
    return 0


def background_floor(min_matches: int, background_ratio: float) -> int:
    """The smallest pile that matters to the background test: a smaller k-th pile, times the ratio, is
    under ``min_matches`` and blocks nothing, so votes may skip piles below this."""
    return max(1, min(min_matches, int(np.ceil(min_matches / background_ratio))))


def _count_at(keys: np.ndarray, counts: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """``counts`` of each ``wanted`` key in the sorted ``keys`` (0 where absent)."""
    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return np.where(keys[at] == wanted, counts[at], 0)


# --- analysis -------------------------------------------------------------------------------------


def _mono(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim == 1:
        return samples
    if samples.ndim != 2:
        raise ValueError("samples must be 1-D or (channels, samples)")
    channel_axis = 0 if samples.shape[0] <= samples.shape[1] else 1
    return samples.mean(axis=channel_axis)


def _resample(mono: np.ndarray, rate: int) -> np.ndarray:
    if rate == ANALYSIS_RATE:
        return mono
    ratio = Fraction(ANALYSIS_RATE, int(rate)).limit_denominator(1000)
    return resample_poly(mono, ratio.numerator, ratio.denominator)


def _log_spectrogram(mono: np.ndarray) -> np.ndarray:
    """(frames, bins) magnitude in dB, 0 dB at the loudest bin."""
    if len(mono) < N_FFT:
        mono = np.pad(mono, (0, N_FFT - len(mono)))
    frames = np.lib.stride_tricks.sliding_window_view(mono, N_FFT)[::HOP]
    magnitude = np.abs(np.fft.rfft(frames * np.hanning(N_FFT), axis=1))
    db = 20 * np.log10(magnitude + 1e-9)
    return db - db.max()


def _constellation(db: np.ndarray) -> Fingerprint:
    lo, hi = int(FMIN_HZ * N_FFT / ANALYSIS_RATE), int(FMAX_HZ * N_FFT / ANALYSIS_RATE) + 1
    prominence = db - uniform_filter(db, size=BACKGROUND_SIZE, mode="nearest")
    is_peak = (db == maximum_filter(db, size=PEAK_NEIGHBOURHOOD, mode="nearest"))
    is_peak &= (prominence >= MIN_PROMINENCE_DB) & (db > FLOOR_DB)
    is_peak[:, :lo] = is_peak[:, hi:] = False
    frames, bins = np.nonzero(is_peak)
    frames, bins = _strongest_per_frame(frames, bins, prominence[frames, bins])
    fine_bins = bins + _parabolic_offset(db, frames, bins)
    log_freqs = np.log2(fine_bins * ANALYSIS_RATE / N_FFT)
    return Fingerprint(frames.astype(np.float64), log_freqs, db.shape[0])


def _strongest_per_frame(frames: np.ndarray, bins: np.ndarray, strength: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((-strength, frames))
    frames, bins = frames[order], bins[order]
    starts = np.searchsorted(frames, frames, side="left")
    rank = np.arange(len(frames)) - starts
    keep = rank < MAX_PEAKS_PER_FRAME
    return frames[keep], bins[keep]


def _parabolic_offset(db: np.ndarray, frames: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Sub-bin position of each peak from the parabola through it and its two neighbours."""
    left, mid, right = db[frames, bins - 1], db[frames, bins], db[frames, bins + 1]
    denominator = left - 2 * mid + right
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(denominator < 0, 0.5 * (left - right) / denominator, 0.0)
    return np.clip(offset, -0.5, 0.5)


# --- landmarks ------------------------------------------------------------------------------------


def _pairs(times: np.ndarray, log_freqs: np.ndarray, fanout: int = FANOUT) -> tuple[np.ndarray, np.ndarray]:
    """(anchor, target) peak indices: the first ``fanout`` peaks in each anchor's target zone."""
    n = len(times)
    order = np.lexsort((log_freqs, times))
    ts, fs = times[order], log_freqs[order]
    anchors, targets, ks = [], [], []
    last = np.searchsorted(ts, ts + DT_MAX, side="right")
    max_k = int((last - np.arange(n)).max()) if n else 0
    for k in range(1, max_k):
        i = np.arange(n - k)
        j = i + k
        ok = (ts[j] - ts[i] >= DT_MIN) & (ts[j] - ts[i] <= DT_MAX) & (np.abs(fs[j] - fs[i]) <= DF_MAX_OCT)
        anchors.append(i[ok])
        targets.append(j[ok])
        ks.append(np.full(int(ok.sum()), k))
    if not anchors:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    a, t, k = np.concatenate(anchors), np.concatenate(targets), np.concatenate(ks)
    by_anchor = np.lexsort((k, a))
    a, t = a[by_anchor], t[by_anchor]
    rank = np.arange(len(a)) - np.searchsorted(a, a, side="left")
    keep = rank < fanout
    return order[a[keep]], order[t[keep]]


def _triplets(times: np.ndarray, log_freqs: np.ndarray, targets_per_anchor: int = TRIPLET_TARGETS
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(anchor, b, c) peak indices: every two of an anchor's first ``targets_per_anchor`` targets, b first."""
    anchors, targets = _pairs(times, log_freqs, fanout=max(FANOUT, targets_per_anchor))
    if len(anchors) == 0:
        none = np.zeros(0, dtype=np.intp)
        return none, none, none
    starts = np.r_[True, anchors[1:] != anchors[:-1]]
    rank = np.arange(len(anchors)) - np.maximum.accumulate(np.where(starts, np.arange(len(anchors)), 0))
    picked_a, picked_b, picked_c = [], [], []
    for first in range(targets_per_anchor):
        for second in range(first + 1, targets_per_anchor):
            i = np.nonzero(rank == first)[0]
            j = i + (second - first)
            ok = j < len(anchors)
            i, j = i[ok], j[ok]
            ok = anchors[j] == anchors[i]
            picked_a.append(anchors[i[ok]])
            picked_b.append(targets[i[ok]])
            picked_c.append(targets[j[ok]])
    return np.concatenate(picked_a), np.concatenate(picked_b), np.concatenate(picked_c)


def _probe(*columns: np.ndarray, margin: float = PROBE_MARGIN) -> tuple[np.ndarray, ...]:
    """Each value near a quantum boundary is also tried on the other side of it (query side only).

    Every column but the last (the anchor time, carried along) is a quantized field."""
    out = list(columns)
    for axis in range(len(out) - 1):
        values = out[axis]
        frac = values - np.floor(values)
        near_low, near_high = frac < margin, frac > 1 - margin
        moved = np.concatenate([values[near_low] - 1, values[near_high] + 1])
        rows = np.concatenate([np.nonzero(near_low)[0], np.nonzero(near_high)[0]])
        out = [np.concatenate([c, moved if i == axis else c[rows]]) for i, c in enumerate(out)]
    return tuple(out)


def _pack(f1: np.ndarray, df: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """32-bit hashes as int64; -1 where a field is out of range."""
    f1, df, dt = f1.astype(np.int64), df.astype(np.int64), dt.astype(np.int64)
    valid = (f1 >= 0) & (f1 < 1 << _F1_BITS) & (df >= 0) & (df < 1 << _DF_BITS) & (dt >= 0) & (dt < 1 << _DT_BITS)
    hashes = (f1 << (_DF_BITS + _DT_BITS)) | (df << _DT_BITS) | dt
    return np.where(valid, hashes, -1)


# --- matching -------------------------------------------------------------------------------------


def ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Concatenated aranges lo[i]..hi[i]."""
    lengths = hi - lo
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.intp)
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return starts + np.arange(total)


def _sorted(postings: Postings) -> Postings:
    hashes = np.asarray(postings.hashes, dtype=np.uint32)
    order = np.argsort(hashes, kind="stable")
    return Postings(hashes[order], np.asarray(postings.tracks, dtype=object)[order],
                    np.asarray(postings.times, dtype=np.float64)[order])


def _significant(match: Match, min_matches: int, min_purity: float = MIN_PURITY,
                 strong_matches: int = STRONG_MATCHES) -> bool:
    """Enough agreeing landmarks, and either a pure pile or one far above any chance pile."""
    strong = match.score >= max(strong_matches, min_matches)
    return match.score >= min_matches and (match.purity >= min_purity or strong)


def window(full: Fingerprint, start_s: float, length_s: float) -> Fingerprint:
    """The part of a fingerprint from ``start_s`` for ``length_s``, timed from its own start.

    Lets a whole track be matched by a few clips, at a fraction of the cost of all its landmarks.
    """
    first = int(start_s / FRAME_S)
    last = min(first + int(length_s / FRAME_S), full.n_frames)
    keep = (full.times >= first) & (full.times < last)
    return Fingerprint(full.times[keep] - first, full.log_freqs[keep], max(last - first, 0))
