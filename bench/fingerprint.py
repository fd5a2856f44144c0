"""Identification at catalogue scale: latency, duplicate check, memory and accuracy as the catalogue grows.

Run: ``make bench-fingerprint`` (or ``.venv/bin/python -m bench.fingerprint [--sizes 30,100,1000,10000]
[--generated 1000] [--max-postings N] [--shards N]``); ``--smoke`` runs tiny sizes in about a minute.

One run builds one catalogue and grows it through every size, measuring at each:

- **identify through the platform**: ``POST /v1/fingerprint/identify`` on a local Ray + Serve
  (the API deployment as ``make up`` builds it, the ``FingerprintShard`` actors), WAV clips sent one
  after the other: p50/p99 of the whole request (upload, decode, extract, probes, scatter/gather);
- **identify in process**: ``CatalogueIndex.query`` alone on one index holding the whole catalogue
  (the code every shard runs), p50/p99, the clip's extraction excluded (reported once);
- **duplicate check**: ``audio.service.find_matches`` on a whole song's fingerprint against the shards,
  as a ``TranscodeJob`` runs it before publication;
- **shard load**: killed and recreated shards loading the catalogue from PostgreSQL;
- **memory**: bytes of posting arrays per million hashes (MB/M h; the shards' own figure);
- **accuracy**: right track and offset within 0.5 s, by clip length (5 s, 10 s) and degradation
  (those of ``bench/audio_bench.py``: clean, white noise 10 and 0 dB SNR, MP3 64 kbit/s, speed ±3 %),
  the same queries at every size; **false positives**: clips of songs not in the catalogue.

Catalogue: the first ``--generated`` tracks are rendered songs of 30 s (``audio/synthetic.py``),
fingerprinted like uploads. Past them, *distractor* tracks are landmark sets drawn from the rendered
tracks' pooled hashes (so the hash distribution, hence the posting-list lengths, follow the real
one), with a landmark count drawn from theirs and uniform anchor times: they cost what real tracks
cost to search and store, and collide by chance as real tracks do, without hours of rendering. The
report says how many of each. Tracks are written to PostgreSQL as publication writes them (one
``track_fingerprints`` row each) and the shards load them; the baseline is the smallest size,
measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import secrets
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import asyncpg
import httpx
import numpy as np

from audio import fingerprint, repository, service
from audio.landmark_index import CatalogueIndex, shard_cap
from audio.synthetic import corpus, render, write_audio
from bench.audio_bench import CLIP_LENGTHS, DEGRADATIONS, OFFSET_TOLERANCE_S, RATE, _degrade
from bench.harness import clean_up, create_database, free_port, say
from verseflow.settings import Settings

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
SONG_S = 30.0
TARGETS = {"identify_p50_ms": 200.0, "identify_p99_ms": 1000.0, "duplicate_check_s": 2.0}
#: Degradations of the clips sent through the platform (one of each length per queried song).
PLATFORM_CASES = (("speed +3%", 10.0), ("noise 10 dB", 5.0))  # a sped-up 5 s clip is under 5 s


@dataclass
class Query:
    track: int  # index in the generated songs; -1: a song not in the catalogue
    start_s: float
    length: float
    degradation: str
    probes: fingerprint.Probes


@dataclass
class Corpus:
    """What the catalogue is made of, and what is asked of it."""

    landmarks: list[fingerprint.Landmarks] = field(default_factory=list)  # generated tracks' catalogue hashes
    fingerprints: list[fingerprint.Fingerprint] = field(default_factory=list)
    queries: list[Query] = field(default_factory=list)
    strangers: list[Query] = field(default_factory=list)
    clips: list[tuple[int, float, bytes]] = field(default_factory=list)  # (track, start, WAV) for the platform
    extract_ms: list[float] = field(default_factory=list)


@dataclass
class Row:
    size: int
    generated: int
    landmarks: int = 0
    distinct: int = 0
    load_s: float = 0.0
    bytes_per_million: float = 0.0
    platform_ms: list[float] = field(default_factory=list)
    platform_hits: int = 0
    local_ms: list[float] = field(default_factory=list)
    duplicate_s: list[float] = field(default_factory=list)
    duplicate_hits: int = 0
    hits: dict[tuple[float, str], list[bool]] = field(default_factory=dict)
    false_positives: int = 0
    strangers: int = 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    admin_url = os.environ.get("VERSEFLOW_DATABASE_URL", DEFAULT_DATABASE_URL)
    database = f"vf_fpbench_{secrets.token_hex(4)}"
    scratch = Path(tempfile.mkdtemp(prefix="verseflow-fpbench-"))
    env = {
        "VERSEFLOW_DATABASE_URL": urlunparse(urlparse(admin_url)._replace(path="/" + database)),
        "VERSEFLOW_REDIS_URL": os.environ.get("VERSEFLOW_REDIS_URL", DEFAULT_REDIS_URL),
        "VERSEFLOW_REDIS_PREFIX": f"vffpbench{secrets.token_hex(4)}:",
        "VERSEFLOW_JWT_SECRET": secrets.token_urlsafe(32),
        "VERSEFLOW_VAR_DIR": str(scratch / "var"),
        "VERSEFLOW_IDENTIFY_PER_MINUTE": "1000000",
        "VERSEFLOW_FINGERPRINT_SHARDS": str(args.shards),
        "VERSEFLOW_FINGERPRINT_MAX_POSTINGS": str(args.max_postings),
    }
    os.environ.update(env)  # before Ray starts: Serve replicas and shards read their settings from it
    settings = Settings()
    try:
        asyncio.run(create_database(admin_url, database, settings))
        rows, extract_ms, growth = asyncio.run(_measure(args, settings, scratch))
    finally:
        _stop_platform()
        asyncio.run(clean_up(admin_url, settings, database))
        shutil.rmtree(scratch, ignore_errors=True)
    _report(rows, extract_ms, growth, args)
    found = sum(sum(hits) for hits in rows[0].hits.values())
    if not found:
        print(f"nothing was identified at {rows[0].size} tracks: the measurement is broken")
    return 0 if found else 1


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=lambda text: [int(s) for s in text.split(",")],
                        default=[30, 100, 1000, 10_000], help="catalogue sizes, ascending, comma-separated")
    parser.add_argument("--generated", type=int, default=1000, help="rendered songs (the rest are distractors)")
    parser.add_argument("--queried", type=int, default=30, help="rendered songs that clips are cut from")
    parser.add_argument("--strangers", type=int, default=20, help="songs not in the catalogue (false positives)")
    parser.add_argument("--duplicates", type=int, default=5, help="duplicate checks per size")
    parser.add_argument("--shards", type=int, default=2, help="FingerprintShard actors")
    parser.add_argument("--max-postings", type=int, default=Settings.model_fields["fingerprint_max_postings"].default,
                        help="per-hash posting cap over the catalogue (0: none)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (songs of 12 s) in about a minute")
    args = parser.parse_args(argv)
    args.seconds = SONG_S
    if args.smoke:
        args.sizes, args.generated, args.queried, args.strangers, args.duplicates = [4, 16], 6, 2, 2, 2
        args.seconds = 12.0
    if args.sizes != sorted(args.sizes) or args.queried > min(args.sizes) or args.generated < args.queried:
        parser.error("sizes must ascend, the smallest holding every queried song, and --generated >= --queried")
    return args


# --- the catalogue --------------------------------------------------------------------------------

def _build_corpus(args: argparse.Namespace, scratch: Path) -> Corpus:
    """Render and fingerprint the generated songs; cut and degrade the clips asked at every size."""
    rng = np.random.default_rng(1)
    found = Corpus()
    specs = corpus(args.generated, seed=11, seconds=args.seconds)
    started = time.perf_counter()
    for number, spec in enumerate(specs):
        samples = render(spec, RATE)
        full = fingerprint.extract(samples, RATE)
        found.fingerprints.append(full)
        found.landmarks.append(service.catalogue_hashes(full))
        if number < args.queried:
            found.queries += _clips(number, samples, rng, found, scratch)
        if number % 100 == 99:
            say(f"rendered and fingerprinted {number + 1} songs ({time.perf_counter() - started:.0f} s)")
    for number, spec in enumerate(corpus(args.strangers, seed=97, seconds=args.seconds)):
        samples = render(spec, RATE)
        for length in CLIP_LENGTHS:
            clip = samples[:, int(2 * RATE): int((2 + length) * RATE)]
            found.strangers.append(Query(-1, 2.0, length, "clean", _probes(clip, found)))
        if number == 0:
            path = write_audio(scratch / "stranger.wav", samples[:, 2 * RATE: 12 * RATE], RATE)
            found.clips.append((-1, 2.0, path.read_bytes()))
    return found


def _clips(number: int, samples: np.ndarray, rng: np.random.Generator, found: Corpus, scratch: Path) -> list[Query]:
    queries = []
    seconds = samples.shape[1] / RATE
    for length in CLIP_LENGTHS:
        start_s = float(rng.uniform(0.5, seconds - length - 1.0))
        clip = samples[:, int(start_s * RATE): int((start_s + length) * RATE)]
        for degradation in DEGRADATIONS:
            degraded = _degrade(clip, degradation, rng)
            queries.append(Query(number, start_s, length, degradation, _probes(degraded, found)))
            if (degradation, length) in PLATFORM_CASES:
                path = write_audio(scratch / f"clip-{number}-{length:.0f}.wav", degraded, RATE)
                found.clips.append((number, start_s, path.read_bytes()))
    return queries


def _probes(clip: np.ndarray, found: Corpus) -> fingerprint.Probes:
    started = time.perf_counter()
    probes = service.query_probes(fingerprint.extract(clip, RATE))
    found.extract_ms.append((time.perf_counter() - started) * 1000)
    return probes


class Distractors:
    """Other songs' hashes, made from the rendered ones: a rendered track's triplets moved to another key
    (the anchor band shifted by 2-6 semitones either way: intervals, hence the frequency differences, stay)
    and another tempo (times and time differences scaled by 0.75-0.9 or 1.1-1.25), as a catalogue holds
    the same musical material in many keys and tempi. One semitone or a few per cent of tempo would be
    within reach of the query's speed candidates and probes: a near-copy of the song, not another song.
    The within-track structure (repetition, density) is the rendered songs'; the spread of distinct
    hashes is reported beside the rendered songs' own growth."""

    def __init__(self, generated: list[fingerprint.Landmarks]) -> None:
        self._generated = generated
        self._rng = np.random.default_rng(2026)

    def make(self) -> fingerprint.Landmarks:
        source = self._generated[int(self._rng.integers(len(self._generated)))]
        band, df_b, df_c, dt_b, dt_c = fingerprint.unpack_triplets(source.hashes)
        shift = int(self._rng.choice([-6, -5, -4, -3, -2, 2, 3, 4, 5, 6]))
        tempo = float(self._rng.choice([-1, 1]) * self._rng.uniform(0.1, 0.25) + 1)
        hashes = fingerprint.pack_triplets([band + shift, df_b, df_c, np.floor((dt_b + 0.5) * tempo).astype(np.int64),
                                            np.floor((dt_c + 0.5) * tempo).astype(np.int64)])
        keep = hashes >= 0
        return fingerprint.Landmarks(hashes[keep].astype(np.uint32), source.times[keep] * tempo)


def distinct_growth(landmarks: list[fingerprint.Landmarks]) -> tuple[float, int]:
    """Heaps' law over the rendered tracks: the exponent of distinct hashes against tracks, and their count."""
    half = len(landmarks) // 2
    counts = [len(np.unique(np.concatenate([lm.hashes for lm in landmarks[:n]]))) for n in (half, len(landmarks))]
    return (float(np.log(counts[1] / counts[0]) / np.log(len(landmarks) / half)) if half else float("nan")), counts[1]


# --- measuring ------------------------------------------------------------------------------------

async def _measure(args: argparse.Namespace, settings: Settings,
                   scratch: Path) -> tuple[list[Row], list[float], tuple[float, int]]:
    say(f"rendering {args.generated} songs of {args.seconds:.0f} s and cutting the clips")
    found = _build_corpus(args, scratch)
    port = _start_platform()
    base_url = f"http://127.0.0.1:{port}"
    from actors.fingerprint_shard import catalogue, stop_shards
    from verseflow.db import create_pool

    pool = await create_pool(settings)
    rows = []
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:
            headers, artist_id = await _artist(http)
            local = CatalogueIndex(shard_cap(args.max_postings, 1))
            distractors = Distractors(found.landmarks)
            ids: list[str] = []
            distinct = np.zeros(0, np.uint32)
            for size in args.sizes:
                say(f"catalogue of {size} tracks: writing {size - len(ids)} more to PostgreSQL")
                added = []
                while len(ids) < size:
                    number = len(ids)
                    landmarks = found.landmarks[number] if number < args.generated else distractors.make()
                    ids.append(str(uuid.uuid4()))
                    added.append((ids[-1], landmarks))
                await _insert(pool, artist_id, added)
                local.add_many([(track_id, lm.hashes, lm.times) for track_id, lm in added])
                distinct = np.union1d(distinct, np.concatenate([lm.hashes for _, lm in added]))
                row = Row(size, min(size, args.generated), distinct=len(distinct))
                stop_shards(settings)  # recreated below: they load the whole catalogue, as after a restart
                started = time.perf_counter()
                stats = await catalogue(settings).ready()
                row.load_s = time.perf_counter() - started
                row.landmarks = sum(s["landmarks"] for s in stats)
                row.bytes_per_million = sum(s["nbytes"] for s in stats) / max(row.landmarks, 1) * 1e6
                say(f"{size} tracks: shards loaded {row.landmarks:,} hashes in {row.load_s:.1f} s")
                _in_process(local, found, ids, row)
                await _through_platform(http, headers, found, ids, row)
                await _duplicate_checks(pool, catalogue(settings), found, ids, args.duplicates, row, settings)
                rows.append(row)
                say(f"{size} tracks: identify p50 {_p(row.platform_ms, 50):.0f} ms through Serve, "
                    f"{_p(row.local_ms, 50):.1f} ms in process; duplicate check {_p(row.duplicate_s, 50):.2f} s")
    finally:
        await pool.close()
    return rows, found.extract_ms, distinct_growth(found.landmarks)


def _in_process(index: CatalogueIndex, found: Corpus, ids: list[str], row: Row) -> None:
    for query in found.queries:
        started = time.perf_counter()
        matches = index.query(query.probes)
        row.local_ms.append((time.perf_counter() - started) * 1000)
        hit = bool(matches) and matches[0].track_id == ids[query.track] and \
            abs(matches[0].offset_s - query.start_s) <= OFFSET_TOLERANCE_S
        row.hits.setdefault((query.length, query.degradation), []).append(hit)
    for query in found.strangers:
        row.false_positives += bool(index.query(query.probes))
        row.strangers += 1


async def _through_platform(http: httpx.AsyncClient, headers: dict[str, str], found: Corpus, ids: list[str],
                            row: Row) -> None:
    await _identify(http, headers, found.clips[0][2])  # the replica's first request pays its imports
    for track, start_s, wav in found.clips:
        started = time.perf_counter()
        match = await _identify(http, headers, wav)
        row.platform_ms.append((time.perf_counter() - started) * 1000)
        if track < 0:
            row.false_positives += match is not None
            row.strangers += 1
        else:
            row.platform_hits += match is not None and match["track_id"] == ids[track] and \
                abs(match["offset_s"] - start_s) <= OFFSET_TOLERANCE_S


async def _identify(http: httpx.AsyncClient, headers: dict[str, str], wav: bytes) -> dict | None:
    response = await http.post("/v1/fingerprint/identify", headers=headers,
                               files={"file": ("clip.wav", wav, "audio/wav")})
    response.raise_for_status()
    return response.json()["match"]


async def _duplicate_checks(pool: asyncpg.Pool, catalogue, found: Corpus, ids: list[str], count: int, row: Row,
                            settings: Settings) -> None:
    """A re-upload of an indexed song (its own fingerprint) must list that song first."""
    for number in range(count):
        started = time.perf_counter()
        matches = await service.find_matches(pool, catalogue, found.fingerprints[number], exclude=None,
                                             min_matches=settings.fingerprint_min_matches)
        row.duplicate_s.append(time.perf_counter() - started)
        row.duplicate_hits += bool(matches) and matches[0]["track_id"] == ids[number]


async def _artist(http: httpx.AsyncClient) -> tuple[dict[str, str], uuid.UUID]:
    email = f"fpbench-{uuid.uuid4().hex[:8]}@example.com"
    (await http.post("/v1/auth/register", json={"email": email, "password": "bench password 1",
                                                "display_name": "Bench", "role": "artist"})).raise_for_status()
    token = (await http.post("/v1/auth/token", data={"username": email, "password": "bench password 1"}))
    headers = {"Authorization": f"Bearer {token.raise_for_status().json()['access_token']}"}
    artist = (await http.post("/v1/artists", json={"name": "Bench Artist"}, headers=headers)).raise_for_status()
    return headers, uuid.UUID(artist.json()["id"])


async def _insert(pool: asyncpg.Pool, artist_id: uuid.UUID, tracks: list[tuple[str, fingerprint.Landmarks]]) -> None:
    """Published tracks as publication leaves them: a ready ``tracks`` row and a ``track_fingerprints`` row."""
    for start in range(0, len(tracks), 1000):
        batch = tracks[start:start + 1000]
        async with pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table(
                "tracks", columns=("id", "artist_id", "title", "status", "duration_s", "published_at"),
                records=[(uuid.UUID(t), artist_id, f"Bench {t[:8]}", "ready", SONG_S, _now()) for t, _ in batch])
            await conn.copy_records_to_table(
                "track_fingerprints", columns=("track_id", "landmarks", "hashes", "times"),
                records=[(uuid.UUID(t), len(lm.hashes), *repository.encode_landmarks(lm)) for t, lm in batch])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _start_platform() -> int:
    """A local Ray and the API application on Serve (as the tests' ``serve_url`` fixture builds it)."""
    import ray
    from ray import serve

    from serve_deployments.application import build

    port = free_port()
    ray.init(address="local", include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build(), name="verseflow", route_prefix="/")
    return port


def _stop_platform() -> None:
    import ray
    from ray import serve

    if ray.is_initialized():
        serve.shutdown()
        ray.shutdown()


# --- the report -----------------------------------------------------------------------------------

def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _share(hits: list[bool]) -> str:
    return f"{sum(hits)}/{len(hits)}"


def _report(rows: list[Row], extract_ms: list[float], growth: tuple[float, int], args: argparse.Namespace) -> None:
    base = rows[0]
    print(f"\n== Fingerprint catalogue: {args.shards} shards, per-hash posting cap "
          f"{args.max_postings or 'none'}; songs of {args.seconds:.0f} s ==")
    print(f"{'tracks':>8}{'rendered':>10}{'hashes':>13}{'distinct':>12}{'MB/M h':>9}{'load s':>8}"
          f"{'Serve p50':>11}{'p99 ms':>8}{'local p50':>11}{'p99 ms':>8}{'dup p50 s':>11}{'max s':>7}")
    for row in rows:
        print(f"{row.size:>8}{row.generated:>10}{row.landmarks:>13,}{row.distinct:>12,}"
              f"{row.bytes_per_million / 1e6:>9.1f}{row.load_s:>8.1f}"
              f"{_p(row.platform_ms, 50):>11.0f}{_p(row.platform_ms, 99):>8.0f}"
              f"{_p(row.local_ms, 50):>11.2f}{_p(row.local_ms, 99):>8.2f}{_p(row.duplicate_s, 50):>11.2f}"
              f"{max(row.duplicate_s, default=float('nan')):>7.2f}")
    exponent, rendered_distinct = growth
    print(f"past {args.generated} rendered songs, distractors: rendered songs' triplets in another key and tempo. "
          f"Distinct hashes of the rendered songs grow as tracks^{exponent:.2f} ({rendered_distinct:,} for "
          f"{args.generated}); at that rate {rows[-1].size} real tracks would hold "
          f"{rendered_distinct * (rows[-1].size / args.generated) ** exponent:,.0f}")
    print(f"clip extraction + probes (not in 'local'): p50 {_p(extract_ms, 50):.0f} ms")
    print("\n-- growth against the smallest size, same run --")
    for row in rows[1:]:
        print(f"{row.size:>8} tracks: Serve p50 x{_p(row.platform_ms, 50) / _p(base.platform_ms, 50):.2f}, "
              f"local p50 x{_p(row.local_ms, 50) / _p(base.local_ms, 50):.2f}, duplicate check "
              f"x{_p(row.duplicate_s, 50) / _p(base.duplicate_s, 50):.2f} for x{row.size / base.size:.0f} tracks")
    print("\n-- accuracy: right track and offset within "
          f"{OFFSET_TOLERANCE_S} s (in process, the same clips at every size) --")
    print(f"{'clip':<20}" + "".join(f"{row.size:>10}" for row in rows))
    for key in base.hits:
        print(f"{f'{key[0]:.0f} s {key[1]}':<20}" + "".join(f"{_share(row.hits[key]):>10}" for row in rows))
    print(f"{'through Serve':<20}" + "".join(
        f"{f'{row.platform_hits}/{len(row.platform_ms) - 1}':>10}" for row in rows))
    print(f"{'duplicate found':<20}" + "".join(f"{f'{row.duplicate_hits}/{len(row.duplicate_s)}':>10}" for row in rows))
    print(f"{'false positives':<20}" + "".join(f"{f'{row.false_positives}/{row.strangers}':>10}" for row in rows))
    last = rows[-1]
    worse = [key for key in base.hits if sum(last.hits[key]) < sum(base.hits[key])]
    checks = {
        f"identify p50 <= {TARGETS['identify_p50_ms']:.0f} ms": _p(last.platform_ms, 50) <= TARGETS["identify_p50_ms"],
        f"identify p99 <= {TARGETS['identify_p99_ms']:.0f} ms": _p(last.platform_ms, 99) <= TARGETS["identify_p99_ms"],
        f"duplicate check <= {TARGETS['duplicate_check_s']:.0f} s":
            max(last.duplicate_s) <= TARGETS["duplicate_check_s"],
        f"accuracy no worse than at {base.size} tracks": not worse,
        "no false positive": last.false_positives == 0,
    }
    print(f"\n-- targets at {last.size} tracks --")
    for name, met in checks.items():
        print(f"{'met' if met else 'MISSED':>7}  {name}")
    if args.smoke:
        print("smoke run: every size measured")


if __name__ == "__main__":
    raise SystemExit(main())
