"""Serving a published track's files: which rung each file belongs to, and manifests cut to a grant.

A published version folder holds the CMAF segments shared by HLS and DASH, the playlists, the MPD,
the MP3s, the waveform levels and ``media.json`` (written at publication), which says which AAC
rung each DASH representation index is. A grant (``verseflow/signing.py``) lists the rungs a
listener may receive; this module answers, for a requested file, which rung it belongs to (so the
media deployment can refuse the others) and rewrites the master playlist and the MPD so that a
player never even sees a rung it may not fetch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MANIFEST_FILE = "media.json"

CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
    ".m4s": "audio/mp4",
    ".mp4": "audio/mp4",
    ".mp3": "audio/mpeg",
    ".json": "application/json",
}

_FILE = re.compile(r"^[A-Za-z0-9_-]+(?:-[0-9]+)*\.(m3u8|mpd|m4s|mp4|mp3|json)$")
_SEGMENT = re.compile(r"^(?:init-(\d+)\.mp4|seg-(\d+)-\d+\.m4s)$")
_REPRESENTATION = re.compile(r"[ \t]*<Representation id=\"(\d+)\".*?</Representation>\n?", re.DOTALL)


@dataclass(frozen=True)
class MediaIndex:
    """``media.json``: the AAC rung of each representation index, and the MP3 files."""

    aac: tuple[str, ...]  # rung names by representation index
    mp3: tuple[str, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MediaIndex:
        return cls(aac=tuple(data["aac"]), mp3=tuple(data["mp3"]))

    def to_json(self) -> dict[str, Any]:
        return {"aac": list(self.aac), "mp3": list(self.mp3)}


def valid_file_name(name: str) -> bool:
    """Only names the pipeline writes: no paths, no hidden files, no other extensions."""
    return name != MANIFEST_FILE and bool(_FILE.match(name))


def content_type(name: str) -> str:
    return CONTENT_TYPES[name[name.rindex("."):]]


def rung_of(name: str, index: MediaIndex) -> str | None:
    """The rung a file belongs to, or None for files every grant may read (manifests, waveforms)."""
    if (segment := _SEGMENT.match(name)) is not None:
        position = int(segment.group(1) or segment.group(2))
        return index.aac[position] if position < len(index.aac) else "unknown"
    stem = name.rsplit(".", 1)[0]
    if stem in index.aac or stem in index.mp3:
        return stem
    return None


def filter_master(text: str, allowed: frozenset[str]) -> str:
    """The master playlist without the variants of rungs outside ``allowed``."""
    out: list[str] = []
    pending: str | None = None  # an EXT-X-STREAM-INF line waiting for its URI
    for line in text.splitlines():
        if line.startswith("#EXT-X-STREAM-INF:"):
            pending = line
        elif pending is not None and line and not line.startswith("#"):
            if line.rsplit(".", 1)[0] in allowed:
                out += [pending, line]
            pending = None
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def filter_mpd(text: str, allowed: frozenset[str], index: MediaIndex) -> str:
    """The MPD without the Representations of rungs outside ``allowed``."""

    def keep(match: re.Match[str]) -> str:
        position = int(match.group(1))
        name = index.aac[position] if position < len(index.aac) else None
        return match.group(0) if name in allowed else ""

    return _REPRESENTATION.sub(keep, text)
