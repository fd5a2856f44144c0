"""One transcoding attempt, start to finish: the saga the ``TranscodeJob`` actor runs.

Steps: count the attempt (give up after ``transcode_max_attempts``, marking the track failed) →
run the pipeline into a private staging folder, reporting progress → match the fingerprint against
the published catalogue → move the folder into the store under a fresh version prefix → publish in
one transaction. Whatever dies part-way leaves no published trace: a staging folder or an
unreferenced version prefix is all that remains, and the next attempt sweeps both away. If two runs
race (a job thought dead comes back), the publication's ``WHERE status = 'processing'`` lets exactly
one win and the other deletes its own version.

Rejections found only by the full decode (damage past the first seconds, a file longer than it
declared) fail the track with the reason the artist sees; they are not retried. ``Notify`` carries
progress to the uploader's WebSocket sessions; its failures never fail the job.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from audio import metrics, repository, service
from audio.decode import AudioRejected
from audio.delivery import MANIFEST_FILE
from audio.landmark_index import Catalogue
from audio.pipeline import process
from verseflow import logs
from verseflow.settings import Settings
from verseflow.storage import ObjectStore

Notify = Callable[[uuid.UUID, str, dict[str, Any]], Awaitable[object]]

log = logs.get_logger("audio.jobs")


async def run(pool: asyncpg.Pool, store: ObjectStore, settings: Settings, track_id: uuid.UUID,
              notify: Notify, catalogue: Catalogue) -> str:
    """Run one attempt; returns the job's outcome ("succeeded", "failed", "superseded" or "finished").

    ``catalogue`` is where the published landmarks are searched (the duplicate check) and added."""
    async with pool.acquire() as conn:
        start = await repository.begin_attempt(conn, track_id)
    if start is None:
        return "finished"  # published or failed already: a restart after success lands here
    uploader = start["uploaded_by"]
    if start["attempts"] > settings.transcode_max_attempts:
        await service.fail(pool, track_id, reason="job_failed",
                           detail=f"processing failed {settings.transcode_max_attempts} times")
        await _tell(notify, uploader, "track.failed", {"track_id": str(track_id), "reason": "job_failed"})
        return "failed"
    prefix = f"tracks/{track_id}"
    _sweep(store, track_id, prefix)
    version = f"v{start['attempts']}-{secrets.token_hex(4)}"
    staging = store.staging_dir() / f"{track_id}-{version}"
    reports = _Reports(lambda stage, fraction: _progress(pool, notify, uploader, track_id, stage, fraction))
    try:
        outputs = await asyncio.to_thread(process, store.local_path(start["source_key"]), staging,
                                          max_duration_s=settings.track_max_duration_s, progress=reports.put,
                                          timbre_features=settings.transcode_timbre,
                                          torch_threads=settings.transcode_torch_threads)
    except AudioRejected as exc:
        await reports.settle()
        shutil.rmtree(staging, ignore_errors=True)
        await service.fail(pool, track_id, reason=exc.reason, detail=exc.detail)
        await _tell(notify, uploader, "track.failed", {"track_id": str(track_id), "reason": exc.reason,
                                                        "detail": exc.detail})
        return "failed"
    except BaseException:
        reports.abandon()
        raise
    await reports.settle()  # every progress report goes out before "ready"
    (staging / MANIFEST_FILE).write_text(json.dumps(service.media_index(outputs).to_json()))
    matches = await service.find_matches(pool, catalogue, outputs.fingerprint, exclude=track_id,
                                         min_matches=settings.fingerprint_min_matches)
    store.put_dir(f"{prefix}/{version}", staging)
    if not await service.publish(pool, catalogue, track_id, media_prefix=f"{prefix}/{version}", outputs=outputs,
                                 matches=matches):
        store.delete_prefix(f"{prefix}/{version}")
        return "superseded"
    metrics.UPLOAD_TO_PLAYABLE.observe(max(0.0, time.time() - start["queued_at"].timestamp()))
    log.info("track published", extra={"track_id": str(track_id), "version": version, "timings": outputs.timings})
    await _tell(notify, uploader, "track.ready", {"track_id": str(track_id), "matches": len(matches)})
    return "succeeded"


async def _progress(pool: asyncpg.Pool, notify: Notify, uploader: uuid.UUID | None, track_id: uuid.UUID,
                    stage: str, fraction: float) -> None:
    await service.record_progress(pool, track_id, stage, fraction)
    await _tell(notify, uploader, "track.progress", {"track_id": str(track_id), "stage": stage,
                                                      "progress": round(fraction, 3)})


class _Reports:
    """Progress reports from the pipeline's threads, sent one at a time in the order they were made.

    Each report is a database write and then a notification: sent concurrently, a later one could
    overtake an earlier one and the uploader would watch progress go backwards. ``put`` only hands
    the report to the event loop, so the pipeline never waits on the network.
    """

    def __init__(self, send: Callable[[str, float], Awaitable[None]]) -> None:
        self._send = send
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[str, float] | None] = asyncio.Queue()
        self._sender = asyncio.create_task(self._drain())

    def put(self, stage: str, fraction: float) -> None:
        """Called from the pipeline's threads, in the order the progress was reached."""
        self._loop.call_soon_threadsafe(self._queue.put_nowait, (stage, fraction))

    async def settle(self) -> None:
        """Wait until every report made so far has been sent (or has failed: reports never fail a job)."""
        self._queue.put_nowait(None)
        await self._sender

    def abandon(self) -> None:
        """Stop sending: the attempt died, and the next one reports from the start."""
        self._sender.cancel()

    async def _drain(self) -> None:
        while (report := await self._queue.get()) is not None:
            try:
                await self._send(*report)
            except Exception:  # a report is best effort; the job's outcome does not depend on it
                log.warning("could not record the progress", exc_info=True)


async def _tell(notify: Notify, user_id: uuid.UUID | None, event: str, data: dict[str, Any]) -> None:
    if user_id is None:
        return
    try:
        await notify(user_id, event, data)
    except Exception:  # a user with no live session, or the realtime hosts restarting
        log.warning("could not notify the uploader", extra={"event": event})


def _sweep(store: ObjectStore, track_id: uuid.UUID, prefix: str) -> None:
    """Remove what earlier, interrupted attempts left: staging folders and unpublished versions.

    Only a track still processing gets here, so nothing under its prefix is published yet.
    """
    for leftover in store.staging_dir().glob(f"{track_id}-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for version in store.children(prefix):
        store.delete_prefix(f"{prefix}/{version}")
