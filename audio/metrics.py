"""The audio pipeline's metrics: stage durations and failures, jobs by outcome, upload to playable,
identification latency and the transcoding queue (sampled from ``track_jobs``)."""

from __future__ import annotations

import asyncpg

from audio import repository
from verseflow import metrics

STAGE_DURATION = metrics.histogram("verseflow_transcode_stage_duration_seconds",
                                   "Time one pipeline stage took (decode, ladder, analysis, fingerprint, ...).",
                                   ("stage",), buckets=metrics.SLOW_BUCKETS_S)
STAGE_FAILURES = metrics.counter("verseflow_transcode_stage_failures_total",
                                 "Pipeline stages that raised (a rejected file or a crash).", ("stage",))
JOBS = metrics.counter("verseflow_transcode_jobs_total",
                       "Transcoding attempts by outcome (succeeded, failed, superseded, finished, error).",
                       ("outcome",))
UPLOAD_TO_PLAYABLE = metrics.histogram("verseflow_upload_to_playable_seconds",
                                       "From an upload being accepted (its job queued) to its track being ready.",
                                       buckets=metrics.SLOW_BUCKETS_S)
QUEUE = metrics.gauge("verseflow_transcode_jobs", "Transcoding jobs open, by state (queued: waiting for a slot).",
                      ("state",))
IDENTIFICATION = metrics.histogram("verseflow_identification_duration_seconds",
                                   "Searching a clip's fingerprint in the catalogue, by outcome (match, no_match).",
                                   ("outcome",))


async def sample_queue(pool: asyncpg.Pool) -> dict[str, int]:
    """Set the queue gauge from ``track_jobs`` (run periodically by the event worker)."""
    counts = await repository.open_job_counts(pool)
    for state, n in counts.items():
        QUEUE.set(n, state=state)
    return counts
