"""Starting an accepted upload's processing: what both upload routes do once the track exists."""

from __future__ import annotations

import asyncio
import uuid

from verseflow.settings import Settings


async def start_job(settings: Settings, track_id: uuid.UUID) -> None:
    """Launch (or find) the track's ``TranscodeJob`` actor, off the event loop (Ray's call blocks)."""
    await asyncio.to_thread(_launch, settings, track_id)


def _launch(settings: Settings, track_id: uuid.UUID) -> None:
    from actors.transcode import launch  # Ray only where a job is launched, not at import

    launch(settings, track_id)
