"""The benchmark's catalog and its request mix.

The catalog is written through the domain services (``accounts``, ``catalog``), not raw SQL, so its
rows, generated search columns and outbox events are what the API itself would have written, and
the seed keeps working when the schema changes. Names are drawn from word lists the way real
catalogs repeat words ("Midnight Harbor", "Harbor Lights", "Late Night Jazz"), so that searches
match several rows, rank them, forgive typos and sometimes find nothing.

The request mix is drawn once from a seeded generator and replayed unchanged against every target.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import date
from urllib.parse import urlencode

import asyncpg

from accounts import service as accounts
from accounts.model import Principal, Role
from bench.loadgen import Call
from catalog import artists, playlists, tracks
from verseflow.settings import Settings

ADJECTIVES = (
    "Velvet", "Neon", "Midnight", "Golden", "Silver", "Electric", "Hollow", "Crimson", "Quiet", "Wild",
    "Paper", "Broken", "Northern", "Distant", "Lucky", "Cosmic", "Faded", "Restless", "Gentle", "Frozen",
    "Burning", "Secret", "Lonely", "Radiant", "Amber", "Scarlet", "Wandering", "Sleepy", "Stolen", "Bitter",
)
NOUNS = (
    "Harbor", "Foxes", "Echo", "Lantern", "River", "Garden", "Machine", "Orchard", "Satellite", "Rebels",
    "Horizon", "Thunder", "Mirrors", "Tigers", "Parade", "Comet", "Canyon", "Ghosts", "Wolves", "Avenue",
    "Signal", "Empire", "Meadow", "Ocean", "Static", "Pilots", "Sparrow", "Glacier", "Lights", "Circus",
)
VERBS = ("Dancing", "Running", "Falling", "Waiting", "Dreaming", "Driving", "Drifting", "Singing", "Walking")
CITIES = ("Lisbon", "Tokyo", "Berlin", "Memphis", "Havana", "Oslo", "Cairo", "Dublin", "Seoul", "Lagos")
GENRES = ("rock", "jazz", "hip hop", "electronic", "folk", "soul", "ambient", "pop", "metal", "blues")
MOODS = ("Late Night", "Sunday Morning", "Rainy Day", "Road Trip", "Workout", "Focus", "Summer", "Chill",
         "Deep", "Throwback")
NO_MATCH = ("xylophonic quasar", "zzzq", "qwertyuiop", "blorptastic")  # searches that should find nothing

SEED_CONCURRENCY = 8  # transactions in flight while seeding


@dataclass
class Catalog:
    """The ids the reads ask for and the names the searches are made of."""

    artists: list[uuid.UUID] = field(default_factory=list)
    albums: list[uuid.UUID] = field(default_factory=list)
    tracks: list[uuid.UUID] = field(default_factory=list)
    public_playlists: list[uuid.UUID] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"artists": len(self.artists), "albums": len(self.albums), "tracks": len(self.tracks),
                "public_playlists": len(self.public_playlists)}


async def seed(
    pool: asyncpg.Pool, settings: Settings, rng: random.Random, *, artist_count: int = 200,
    albums_per_artist: int = 2, tracks_per_artist: int = 10, playlist_count: int = 300,
    playlist_length: int = 20,
) -> Catalog:
    """Two accounts (an artist label owning every artist, a listener curating every playlist), then the
    artists with their albums and tracks, then the playlists (80 % public) with their entries."""
    label = await _account(pool, settings, "label", Role.ARTIST)
    curator = await _account(pool, settings, "curator", Role.LISTENER)
    catalog = Catalog()

    async def artist_with_releases(name: str) -> None:
        artist = await artists.create_artist(pool, label, name=name, bio=f"{name} play {rng.choice(GENRES)}.")
        catalog.artists.append(artist["id"])
        catalog.names.append(name)
        albums = []
        for _ in range(albums_per_artist):
            title = _album_title(rng)
            released = date(rng.randint(1970, 2025), rng.randint(1, 12), 1)
            album = await artists.create_album(pool, label, artist_id=artist["id"], title=title,
                                               release_date=released)
            albums.append(album["id"])
            catalog.names.append(title)
        catalog.albums.extend(albums)
        for _ in range(tracks_per_artist):
            title = _track_title(rng)
            track = await tracks.create_track(
                pool, label, title=title, artist_id=artist["id"], genre=rng.choice(GENRES),
                album_id=rng.choice(albums) if rng.random() < 0.8 else None, duration_s=rng.uniform(90, 420),
            )
            catalog.tracks.append(track["id"])
            catalog.names.append(title)

    async def playlist_with_entries(name: str, *, public: bool) -> None:
        playlist = await playlists.create_playlist(pool, curator, name=name, public=public)
        for track_id in rng.sample(catalog.tracks, playlist_length):
            await playlists.add_track(pool, curator, playlist["id"], track_id=track_id, position=None)
        if public:
            catalog.public_playlists.append(playlist["id"])
            catalog.names.append(name)

    artist_names = rng.sample([f"{a} {n}" for a in ADJECTIVES for n in NOUNS], artist_count)
    await _bounded(artist_with_releases(name) for name in artist_names)
    await _bounded(playlist_with_entries(_playlist_name(rng, i), public=rng.random() < 0.8)
                   for i in range(playlist_count))
    return catalog


def request_mix(catalog: Catalog, count: int, rng: random.Random, *, search_share: float = 0.3) -> list[Call]:
    """``count`` calls: catalog reads by id (tracks, artists, albums, public playlists) and searches."""
    reads = (("/v1/tracks/", catalog.tracks, 35), ("/v1/artists/", catalog.artists, 20),
             ("/v1/albums/", catalog.albums, 15), ("/v1/playlists/", catalog.public_playlists, 30))
    calls = []
    for _ in range(count):
        if rng.random() < search_share:
            params = {"q": search_query(catalog, rng)}
            if rng.random() < 0.25:
                params["type"] = rng.choice(("track", "artist", "album", "playlist"))
            calls.append(Call("search", "/v1/search?" + urlencode(params)))
        else:
            prefix, ids, _ = rng.choices(reads, weights=[w for *_, w in reads])[0]
            calls.append(Call("reads", f"{prefix}{rng.choice(ids)}"))
    return calls


def search_query(catalog: Catalog, rng: random.Random) -> str:
    """What people type: a whole name, a prefix, a name with one typo, a genre, or nonsense."""
    words = rng.choice(catalog.names).lower().split()
    kind = rng.random()
    if kind < 0.3:
        return " ".join(words)
    if kind < 0.5:
        return " ".join(words[:-1] + [words[-1][: rng.randint(2, max(2, len(words[-1]) - 1))]])
    if kind < 0.85:
        i = max(range(len(words)), key=lambda j: len(words[j]))
        return " ".join(words[:i] + [_typo(words[i], rng)] + words[i + 1:])
    if kind < 0.95:
        return rng.choice(GENRES + MOODS).lower()
    return rng.choice(NO_MATCH)


def _typo(word: str, rng: random.Random) -> str:
    """One slip of the finger: two letters swapped, one dropped or one doubled."""
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    slip = rng.choice(("swap", "drop", "double"))
    if slip == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if slip == "drop":
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]


def _album_title(rng: random.Random) -> str:
    return rng.choice((
        f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}", f"Songs from {rng.choice(CITIES)}",
        f"{rng.choice(NOUNS)} Sessions", f"Live in {rng.choice(CITIES)}",
    ))


def _track_title(rng: random.Random) -> str:
    return rng.choice((
        f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}", f"{rng.choice(VERBS)} in {rng.choice(CITIES)}",
        f"Letters to {rng.choice(CITIES)}", f"{rng.choice(NOUNS)} of the {rng.choice(NOUNS)}",
        f"{rng.choice(VERBS)} {rng.choice(ADJECTIVES).lower()}",
    ))


def _playlist_name(rng: random.Random, number: int) -> str:
    volume = f" Vol. {number % 7 + 1}" if number % 3 else ""
    return f"{rng.choice(MOODS)} {rng.choice(GENRES).title()}{volume}"


async def _account(pool: asyncpg.Pool, settings: Settings, name: str, role: Role) -> Principal:
    user = await accounts.register(pool, settings, email=f"{name}@bench.example", password="bench password",
                                   display_name=name.title(), role=role)
    return Principal(user.id, role)


async def _bounded(jobs, limit: int = SEED_CONCURRENCY) -> None:
    """Run the coroutines with at most ``limit`` in flight (the seeding pool's size)."""
    gate = asyncio.Semaphore(limit)

    async def gated(job: Awaitable[None]) -> None:
        async with gate:
            await job

    await asyncio.gather(*(gated(job) for job in jobs))
