"""Audio use cases over PostgreSQL and the object store: accept uploads, publish, identify, stream, plays.

Each function is one use case and takes what it needs (pool, store, settings, the caller); the HTTP
routes and the transcoding job actor are thin adapters onto them. Publication is one transaction:
the track turns ``ready`` together with its analysis, media location, landmarks, matches and the
``track.ready`` event, or nothing happens. Identification and the duplicate check search a
:class:`~audio.landmark_index.Catalogue` (the in-memory index on the ``FingerprintShard`` actors).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from accounts.model import Principal
from audio import decode, fingerprint, metrics, repository, timbre
from audio.decode import AudioInfo
from audio.delivery import MediaIndex
from audio.landmark_index import Catalogue
from audio.pipeline import Outputs, timbre_of
from billing.entitlements import FREE, media_entitlement
from billing.subscriptions import plan_of
from catalog.artists import require_artist_owner
from catalog.tracks import get_track, require_album_of
from verseflow.db import transaction
from verseflow.errors import InvalidInput, NotFound
from verseflow.events.outbox import emit
from verseflow.settings import Settings
from verseflow.signing import MediaGrant
from verseflow.storage import ObjectStore, StoredObject

#: Upload-time duplicate check: the track is matched by clips of this length at these positions.
MATCH_CLIP_S = 10.0
MATCH_POSITIONS = (0.2, 0.5, 0.8)
MAX_CANDIDATES = 5  # tracks a query returns, best first
HIDDEN_STATES = ("processing", "failed")  # only the owner (and admins) see such tracks


@dataclass(frozen=True)
class UploadFields:
    title: str
    artist_id: uuid.UUID
    album_id: uuid.UUID | None = None
    genre: str | None = None


async def authorize_upload(pool: asyncpg.Pool, who: Principal, artist_id: uuid.UUID) -> None:
    """Fail before the bytes arrive when the caller may not add tracks to this artist."""
    async with pool.acquire() as conn:
        await require_uploader(conn, who, artist_id)


async def require_uploader(conn: asyncpg.Connection, who: Principal, artist_id: uuid.UUID,
                           album_id: uuid.UUID | None = None) -> None:
    """The caller manages the artist, and the album (if any) is that artist's."""
    await require_artist_owner(conn, who, artist_id)
    if album_id is not None:
        await require_album_of(conn, album_id, artist_id)


async def accept_upload(pool: asyncpg.Pool, store: ObjectStore, settings: Settings, who: Principal,
                        track_id: uuid.UUID, fields: UploadFields, source: StoredObject, *,
                        within: Callable[[asyncpg.Connection], Awaitable[None]] | None = None) -> AudioInfo:
    """Judge the stored upload by decoding its start, then record a ``processing`` track, its job row
    and ``track.uploaded`` in one transaction; returns what the file declares.

    Both upload routes end here (multipart in one request, resumable when its last byte arrives);
    ``within`` runs first in the same transaction (the resumable upload marks itself complete there,
    so that a finished upload and its track exist together or not at all)."""
    info = await asyncio.to_thread(decode.check, store.local_path(source.key),
                                   max_duration_s=settings.track_max_duration_s)
    async with transaction(pool) as conn:
        if within is not None:
            await within(conn)
        await require_uploader(conn, who, fields.artist_id, fields.album_id)
        await conn.execute(
            """INSERT INTO tracks (id, artist_id, album_id, title, genre, status, uploaded_by,
                                   source_key, source_bytes, source_sha256)
               VALUES ($1, $2, $3, $4, $5, 'processing', $6, $7, $8, $9)""",
            track_id, fields.artist_id, fields.album_id, fields.title, fields.genre, who.user_id,
            source.key, source.size, source.sha256,
        )
        await conn.execute("INSERT INTO track_jobs (track_id) VALUES ($1)", track_id)
        await emit(conn, "track.uploaded", track_id, track_id=track_id, artist_id=fields.artist_id,
                   uploaded_by=who.user_id, bytes=source.size)
    return info


def source_key(track_id: uuid.UUID) -> str:
    return f"{source_prefix(track_id)}/source"


def source_prefix(track_id: uuid.UUID) -> str:
    """Where an upload's source lives until its job is done (removed as a whole when refused)."""
    return f"uploads/{track_id}"


async def find_matches(pool: asyncpg.Pool, catalogue: Catalogue, full: fingerprint.Fingerprint, *,
                       exclude: uuid.UUID | None, min_matches: int) -> list[dict[str, Any]]:
    """Published tracks this audio contains, by a few clips of it (searched at once); offsets are of its start."""
    starts = sorted({max(0.0, min(p * full.duration_s, full.duration_s - MATCH_CLIP_S)) for p in MATCH_POSITIONS})
    found = await asyncio.gather(*(_query(catalogue, fingerprint.window(full, start, MATCH_CLIP_S),
                                          exclude=exclude, min_matches=min_matches) for start in starts))
    published = await repository.published_among(pool, sorted({m.track_id for clip in found for m in clip}))
    best: dict[str, dict[str, Any]] = {}
    for start, clip_matches in zip(starts, found, strict=True):
        for match in clip_matches:
            offset = round(match.offset_s - start * match.speed, 3)
            if match.track_id in published and match.score > best.get(match.track_id, {}).get("score", -1):
                best[match.track_id] = {"track_id": match.track_id, "offset_s": offset,
                                        "score": float(match.score), "speed": match.speed}
    return sorted(best.values(), key=lambda m: -m["score"])


def clip_fingerprint(path: Path, *, min_s: float, max_s: float, tolerance_s: float) -> fingerprint.Fingerprint:
    """The fingerprint of an identification clip, which must last ``min_s`` to ``max_s`` seconds
    give or take ``tolerance_s``.

    A clip cut to exactly 5 s rarely decodes to exactly 5 s: apps round cuts to frames (4.99 s),
    and lossy codecs add and trim priming and padding (an MP3 may decode a few milliseconds short or
    long). The tolerance absorbs that at both ends, so the limits users read are the limits they meet.
    """
    clip = decode.decode(path, max_duration_s=max_s, slack_s=tolerance_s)
    shortest = min_s - tolerance_s
    if clip.duration_s < shortest - 1e-9:  # a float difference (0.3 - 0.1) must not refuse the threshold
        raise InvalidInput(f"the clip is {decode.seconds_text(clip.duration_s)} s long; identification needs at "
                           f"least {decode.seconds_text(min_s)} s ({decode.seconds_text(shortest)} s accepted)")
    return fingerprint.extract(clip.samples, clip.rate)


async def identify(pool: asyncpg.Pool, catalogue: Catalogue, clip: fingerprint.Fingerprint, *,
                   min_matches: int) -> list[dict[str, Any]]:
    """Published tracks a clip comes from, best first, with titles; ``[]`` is an explicit no-match."""
    started = time.perf_counter()
    matches = await _query(catalogue, clip, exclude=None, min_matches=min_matches)
    metrics.IDENTIFICATION.observe(time.perf_counter() - started, outcome="match" if matches else "no_match")
    if not matches:
        return []
    rows = await pool.fetch(
        """SELECT t.id, t.title, a.name AS artist_name FROM tracks t JOIN artists a ON a.id = t.artist_id
           WHERE t.id = ANY($1::uuid[]) AND t.status = 'ready'""",
        [uuid.UUID(m.track_id) for m in matches],
    )
    titles = {str(r["id"]): r for r in rows}
    return [{"track_id": m.track_id, "title": titles[m.track_id]["title"],
             "artist_name": titles[m.track_id]["artist_name"], "offset_s": m.offset_s, "score": m.score,
             "speed": m.speed} for m in matches if m.track_id in titles]


async def _query(catalogue: Catalogue, clip: fingerprint.Fingerprint, *, exclude: uuid.UUID | None,
                 min_matches: int) -> list[fingerprint.Match]:
    """The clip's probes (all candidate speeds, computed off the event loop) searched in the catalogue."""
    probes = await asyncio.to_thread(query_probes, clip)
    if len(probes.hashes) == 0:
        return []
    return await catalogue.search(probes, exclude=str(exclude) if exclude else None, min_matches=min_matches,
                                  max_results=MAX_CANDIDATES)


def query_probes(clip: fingerprint.Fingerprint) -> fingerprint.Probes:
    return fingerprint.triplet_probes(clip)


def catalogue_hashes(full: fingerprint.Fingerprint) -> fingerprint.Landmarks:
    """What a published track contributes to the catalogue's index: its triplet hashes."""
    return full.triplets()


async def publish(pool: asyncpg.Pool, catalogue: Catalogue, track_id: uuid.UUID, *, media_prefix: str,
                  outputs: Outputs, matches: list[dict[str, Any]]) -> bool:
    """Make the track ready with everything it has, in one transaction; False if already published.

    The landmarks enter the catalogue's index before the track turns ``ready`` (a client that sees
    ``ready`` can identify it at once) and again after the commit, which covers a shard that restarted
    in between and loaded its partition before this track was ready. Adding is idempotent.
    """
    landmarks = catalogue_hashes(outputs.fingerprint)
    await catalogue.add(str(track_id), landmarks)
    media = {"files": outputs.files, "index": media_index(outputs).to_json()}
    async with transaction(pool) as conn:
        published = await repository.mark_published(
            conn, track_id, media_prefix=media_prefix, analysis=outputs.analysis, media=media,
            genre=outputs.analysis["genre"]["label"] if outputs.analysis["genre"]["label"] != "unknown" else None,
            duration_s=outputs.analysis["duration_s"],
        )
        if not published:
            return False
        await repository.put_landmarks(conn, track_id, landmarks)
        await repository.replace_matches(conn, track_id, matches)
        await repository.finish_job(conn, track_id, "succeeded", outputs.timings)
        await emit(conn, "track.ready", track_id, track_id=track_id, duration_s=outputs.analysis["duration_s"],
                   matches=[m["track_id"] for m in matches])
    await catalogue.add(str(track_id), landmarks)
    return True


async def index_unfingerprinted(pool: asyncpg.Pool, store: ObjectStore, catalogue: Catalogue, *,
                                max_duration_s: float) -> int:
    """Fingerprint again the published tracks that have no catalogue hashes, from their stored source.

    Tracks published before migration 0012 had pair landmarks, which the triplet index cannot use
    (the migration dropped them); this rebuilds theirs. Returns how many tracks it indexed.
    """
    done = 0
    for track_id, key in await repository.unfingerprinted(pool):
        try:
            path = store.local_path(key)
        except NotFound:
            continue
        landmarks = catalogue_hashes(await asyncio.to_thread(_fingerprint_source, path, max_duration_s))
        async with pool.acquire() as conn:
            await repository.put_landmarks(conn, track_id, landmarks)
        await catalogue.add(str(track_id), landmarks)
        done += 1
    return done


async def add_missing_timbre(pool: asyncpg.Pool, store: ObjectStore, *, max_duration_s: float, torch_threads: int,
                             batch: int = 100, limit: int | None = None) -> tuple[int, int]:
    """Measure the timbre (``audio/timbre.py``) of published tracks analysed before it existed, from
    their stored sources, and add it to their analyses; returns (tracks measured, tracks skipped).

    Until then ``ml.content.timbre_block`` reads such a track as "not measured"; the next training of the
    recommendation model sees the new values. A track whose source is gone or no longer decodes is
    skipped (and stays "not measured"). Idempotent: a track that has the field is not selected again, so
    the command can be stopped and re-run, and ``limit`` spreads the work over several runs."""
    done, skipped = 0, []
    while limit is None or done + len(skipped) < limit:
        size = batch if limit is None else min(batch, limit - done - len(skipped))
        rows = await repository.without_timbre(pool, timbre.MODEL, size, exclude=skipped)
        if not rows:
            break
        for track_id, key in rows:
            try:
                measured = await asyncio.to_thread(_timbre_of_source, store.local_path(key), max_duration_s,
                                                   torch_threads)
            except (NotFound, decode.AudioRejected):
                skipped.append(track_id)
                continue
            async with pool.acquire() as conn:
                done += await repository.put_timbre(conn, track_id, measured)
    return done, len(skipped)


def _timbre_of_source(path: Path, max_duration_s: float, torch_threads: int) -> dict[str, Any]:
    return timbre_of(decode.decode(path, max_duration_s=max_duration_s), torch_threads=torch_threads)


def _fingerprint_source(path: Path, max_duration_s: float) -> fingerprint.Fingerprint:
    audio = decode.decode(path, max_duration_s=max_duration_s)
    return fingerprint.extract(audio.samples, audio.rate)


def media_index(outputs: Outputs) -> MediaIndex:
    """Which rung each file is: stored with the track and as ``media.json`` beside the files (the media
    deployment reads that, not the database)."""
    return MediaIndex(aac=tuple(r.rung.name for r in outputs.ladder.rungs),
                      mp3=tuple(k for k in outputs.files if k.startswith("mp3_")))


async def fail(pool: asyncpg.Pool, track_id: uuid.UUID, *, reason: str, detail: str) -> bool:
    """Mark a processing track failed (with the reason the artist sees) and its job finished."""
    async with transaction(pool) as conn:
        failed = await repository.mark_failed(conn, track_id, {"reason": reason, "detail": detail})
        if failed:
            await repository.finish_job(conn, track_id, "failed", {})
            await emit(conn, "track.failed", track_id, track_id=track_id, reason=reason)
    return failed


async def record_progress(pool: asyncpg.Pool, track_id: uuid.UUID, stage: str, progress: float) -> None:
    async with transaction(pool) as conn:
        await repository.record_progress(conn, track_id, stage, progress)
        await emit(conn, "track.progress", track_id, track_id=track_id, stage=stage, progress=round(progress, 3))


# --- reading ---------------------------------------------------------------------------------------


async def visible_track(pool: asyncpg.Pool, who: Principal | None, track_id: uuid.UUID) -> dict[str, Any]:
    """The track row, or NotFound when it does not exist or is unpublished work of someone else."""
    track = await get_track(pool, track_id)
    track["owned"] = who is not None and (who.is_admin or track["owner_id"] == who.user_id)
    if track["status"] in HIDDEN_STATES and not track["owned"]:
        raise NotFound("track not found")
    return track


async def track_view(pool: asyncpg.Pool, settings: Settings, who: Principal | None,
                     track_id: uuid.UUID) -> dict[str, Any]:
    """What ``GET /v1/tracks/{id}`` shows: status, analysis, matches, job progress and stream links."""
    track = await visible_track(pool, who, track_id)
    view = {k: track[k] for k in ("id", "title", "artist_id", "album_id", "genre", "duration_s", "status",
                                  "created_at", "artist_name", "album_title", "analysis", "error")}
    view["matches"] = await repository.matches_of(pool, track_id) if track["status"] == "ready" else []
    view["job"] = await repository.job_of(pool, track_id) if track["owned"] else None
    if track["status"] == "ready" and who:
        view["streams"] = stream_links(settings, who, track, plan=await plan_of(pool, settings, who.user_id))
    else:
        view["streams"] = None
    return view


def stream_links(settings: Settings, who: Principal, track: dict[str, Any], *, plan: str = FREE) -> dict[str, Any]:
    """Signed URLs for the rungs ``who`` may receive under ``plan`` (``billing/entitlements.py`` decides which)."""
    entitlement = media_entitlement(who, owns_track=track["owned"], plan=plan)
    available = set(track["media"]["index"]["aac"]) | set(track["media"]["index"]["mp3"])
    rungs = frozenset(entitlement.rungs & available)
    expires = int(time.time() + settings.media_url_ttl_s + (track["duration_s"] or 0))
    grant = MediaGrant(track["id"], track["media_prefix"].rsplit("/", 1)[1], rungs, expires)
    base = settings.media_base_url.rstrip("/") + grant.path(settings.secret())
    files = track["media"]["files"]
    return {
        "tier": entitlement.tier,
        "rungs": sorted(rungs),
        "expires_at": expires,
        "hls": base + files["hls"],
        "dash": base + files["dash"],
        "mp3": {name: base + files[name] for name in sorted(rungs) if name.startswith("mp3_")},
        "waveform": base + files["waveform-256"],
    }


async def waveform_key(pool: asyncpg.Pool, who: Principal | None, track_id: uuid.UUID, zoom: int) -> str:
    """The object key of a ready track's waveform at ``zoom`` samples per pixel."""
    track = await visible_track(pool, who, track_id)
    if track["status"] != "ready":
        raise NotFound("the waveform is not ready yet")
    name = track["media"]["files"].get(f"waveform-{zoom}")
    if name is None:
        zooms = sorted(int(k.split("-")[1]) for k in track["media"]["files"] if k.startswith("waveform-"))
        raise InvalidInput(f"zoom must be one of {zooms}")
    return f"{track['media_prefix']}/{name}"


async def record_play(pool: asyncpg.Pool, who: Principal, play: dict[str, Any]) -> bool:
    """Store one listening event (idempotent per play, event and position); the track must be playable.

    Every stored event is also a ``play.recorded`` event: the recommendation signals (``ml/interactions.py``)
    tell skips from listens by how far a play got, which the start and progress events say.
    """
    track = await visible_track(pool, who, play["track_id"])
    if track["status"] != "ready":
        raise InvalidInput("the track cannot be played yet")
    async with transaction(pool) as conn:
        recorded = await repository.insert_play(conn, who.user_id, play)
        if recorded:
            await emit(conn, "play.recorded", play["track_id"], play_id=play["play_id"], user_id=who.user_id,
                       track_id=play["track_id"], event=play["event"], position_ms=play["position_ms"])
        if recorded and play["event"] == "complete":
            await emit(conn, "track.played", play["track_id"], track_id=play["track_id"], user_id=who.user_id)
    return recorded

