"""Search by artist: tracks and albums are found by their artist's name and by mixes of artist and
title words ("beatles yesterday"), ranked title-and-artist first, typos forgiven in either, also one
in every word (corrected against the catalog's vocabulary); the artist's name follows renames, also
when a rename races an insert; the migration backfills rows that existed before it.

Every test makes up words of its own (``tests/test_search.py``'s ``word``), so the shared database
of the run holds nothing else that matches.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import asyncpg
import pytest

from catalog import search as catalog_search
from tests.test_search import add_to, find, typo, word
from verseflow import migrations

SEARCH_BY_ARTIST = 9  # verseflow/sql/0009_search_by_artist.sql


async def test_tracks_and_albums_are_found_by_their_artists_name(api, client):
    tag = word()
    band = await api.artist_with_track(title="Morning", name=f"The {tag} Collective")
    evening = await add_to(client, band, "/v1/tracks", "Evening")
    album = await add_to(client, band, "/v1/albums", "Daylight")

    tracks = await find(client, f"{tag} collective", type="track")
    assert {h["id"] for h in tracks} == {band["track_id"], evening}
    assert {(h["artist_id"], h["artist_name"]) for h in tracks} == {(band["artist_id"], f"The {tag} Collective")}
    assert [h["id"] for h in await find(client, tag, type="album")] == [album]
    assert [h["id"] for h in await find(client, tag[:5], type="track")]  # a prefix, while typing
    everything = await find(client, tag)
    assert everything[0] == {"type": "artist", "id": band["artist_id"], "name": f"The {tag} Collective",
                             "score": everything[0]["score"]}  # the band before its releases
    assert {h["id"] for h in everything[1:]} == {band["track_id"], evening, album}


async def test_artist_and_title_words_together_rank_first(api, client):
    band_word, song = word(), word()
    band = await api.artist_with_track(title=song.capitalize(), name=f"The {band_word}")
    help_ = await add_to(client, band, "/v1/tracks", "Help")  # theirs, but not this title
    album = await add_to(client, band, "/v1/albums", f"{song} and Today")
    cover_band = await api.artist_with_track(title=song.capitalize(), name=f"Cover {word()}")  # not theirs
    medley = await add_to(client, cover_band, "/v1/tracks", f"{band_word} {song} Medley")  # title only

    for q in (f"{band_word} {song}", f"{song} the {band_word}", f"{band_word.upper()}  {song}"):
        hits = await find(client, q)
        assert [h["id"] for h in hits[:3]] == [band["track_id"], album, medley], q
        # Below them, only trigram-fuzzy matches of "the <band>" may follow (pg_trgm's word similarity
        # of the query to "The <band>" is 0.58-0.61 for two random nine-letter words): the band, its
        # other track.
        assert {h["id"] for h in hits[3:]} <= {band["artist_id"], help_}, q
        assert hits[0]["title"] == song.capitalize() and hits[0]["artist_name"] == f"The {band_word}"
    ids = {h["id"] for h in await find(client, band_word, type="track", limit=100)}
    assert {band["track_id"], help_, medley} <= ids and cover_band["track_id"] not in ids


async def test_title_matches_rank_above_artist_matches(api, client):
    tag = word()
    by_title = (await api.artist_with_track(title=f"{tag} Song", name=f"Band {word()}"))["track_id"]
    by_artist = (await api.artist_with_track(title="Song", name=f"{tag} Band"))["track_id"]
    hits = await find(client, tag, type="track")
    assert [h["id"] for h in hits] == [by_title, by_artist]
    assert hits[0]["score"] > hits[1]["score"]


async def test_typos_are_forgiven_in_the_artists_name(api, client):
    band_word, song = word(), word()
    band = await api.artist_with_track(title=song, name=f"The {band_word}")
    other = await add_to(client, band, "/v1/tracks", "Something Else")

    assert [h["id"] for h in await find(client, f"{typo(band_word)} {song}", type="track")][0] == band["track_id"]
    assert [h["id"] for h in await find(client, f"{typo(band_word)} {typo(song)}", type="track")][0] \
        == band["track_id"]
    assert {h["id"] for h in await find(client, typo(band_word), type="track")} == {band["track_id"], other}


def two_typos(text: str) -> str:
    """``text`` with its last two letters changed: still trigram-similar to it as a word (0.4 for six
    letters), but a query of two such words is no longer word-similar to the whole row."""
    return text[:-2] + "".join("x" if letter != "x" else "y" for letter in text[-2:])


async def test_a_typo_in_every_word_is_corrected_word_by_word(api, client, pool):
    """As "beatls yesterdy" for Yesterday by the Beatles (whole-text word similarity 0.52, under the
    0.6 threshold): each word is corrected to the closest words of the catalog's vocabulary."""
    for _ in range(100):  # words whose row the whole-text path cannot find, so the vocabulary must
        band_word, song = word()[:6], word()[:8]
        q = f"{two_typos(band_word)} {two_typos(song)}"
        if not await pool.fetchval("SELECT $1 <% ($2 || ' The ' || $3)", q, song, band_word):
            break
    else:
        pytest.fail("no pair of words out of reach of the whole-text path")
    band = await api.artist_with_track(title=song.capitalize(), name=f"The {band_word.capitalize()}")
    other = await add_to(client, band, "/v1/tracks", "Other")

    hits = await find(client, q)
    assert hits[0]["id"] == band["track_id"] and hits[0]["artist_name"] == f"The {band_word.capitalize()}"
    assert (await find(client, f"{two_typos(band_word)} other", type="track"))[0]["id"] == other


async def test_renaming_an_artist_renames_its_releases_in_search(api, client):
    old, new = word(), word()
    band = await api.artist_with_track(title="Anthem", name=f"{old} Band")
    album = await add_to(client, band, "/v1/albums", "Hymns")
    renamed = await client.patch(f"/v1/artists/{band['artist_id']}", json={"name": f"{new} Band"},
                                 headers=band["owner"]["headers"])
    assert renamed.status_code == 200, renamed.text

    assert await find(client, old, type="track") == [] and await find(client, old, type="album") == []
    hits = await find(client, f"{new} anthem", type="track")
    assert [(h["id"], h["artist_name"]) for h in hits] == [(band["track_id"], f"{new} Band")]
    assert [h["id"] for h in await find(client, new, type="album")] == [album]
    assert [h["id"] for h in await find(client, f"{two_typos(new)} anthm", type="track")] == [band["track_id"]]


async def _rows_by(pool, artist_id: uuid.UUID) -> set[str]:
    return {r["search_artist"] for r in await pool.fetch(
        "SELECT search_artist FROM tracks WHERE artist_id = $1 UNION ALL "
        "SELECT search_artist FROM albums WHERE artist_id = $1", artist_id)}


async def _waiting_on_a_lock(pool, pid: int) -> bool:
    """Whether backend ``pid`` waits on a lock (bounded poll: 10 s)."""
    for _ in range(200):
        if await pool.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def _insert_track(conn: asyncpg.Connection, artist_id: uuid.UUID) -> None:
    await conn.execute("INSERT INTO tracks (id, artist_id, title) VALUES ($1, $2, 'Race')", uuid.uuid4(), artist_id)


@pytest.mark.parametrize("first", ["rename", "insert"])
async def test_a_rename_racing_an_insert_leaves_no_stale_name(api, pool, first):
    """Whichever of a rename and a track insert takes the artist's row first, the other waits for it
    and the new track ends up under the new name."""
    new = word()
    band = await api.artist_with_track(name=f"{word()} Band")
    artist_id = uuid.UUID(band["artist_id"])
    async with pool.acquire() as renamer, pool.acquire() as inserter:
        rename, insert = renamer.transaction(), inserter.transaction()
        await rename.start()
        await insert.start()
        try:
            if first == "rename":
                await renamer.execute("UPDATE artists SET name = $2 WHERE id = $1", artist_id, new)
                second = asyncio.create_task(_insert_track(inserter, artist_id))
                assert await _waiting_on_a_lock(pool, inserter.get_server_pid())
                await rename.commit()
                await second
                await insert.commit()
            else:
                await _insert_track(inserter, artist_id)
                second = asyncio.create_task(
                    renamer.execute("UPDATE artists SET name = $2 WHERE id = $1", artist_id, new))
                assert await _waiting_on_a_lock(pool, renamer.get_server_pid())
                await insert.commit()
                await second
                await rename.commit()
        except BaseException:
            for tx in (rename, insert):  # roll back what a failure left open (a finished one refuses)
                with contextlib.suppress(asyncpg.InterfaceError):
                    await tx.rollback()
            raise
    assert await _rows_by(pool, artist_id) == {new}


@pytest.fixture
async def scratch_db(settings):
    """An empty database of its own, for migrating from an older schema."""
    name = f"vf_search_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(settings.database_url)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        yield settings.database_url.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


async def test_the_migration_backfills_existing_releases(scratch_db):
    """Rows written under the schema before 0009 are found by their artist's name once it runs."""
    every = migrations.discover()
    conn = await asyncpg.connect(scratch_db)
    try:
        await migrations.migrate(conn, [m for m in every if m.version < SEARCH_BY_ARTIST])
        user, artist = uuid.uuid4(), uuid.uuid4()
        track, album = uuid.uuid4(), uuid.uuid4()
        await conn.execute("INSERT INTO users (id, email, password_hash, display_name, role) "
                           "VALUES ($1, 'old@example.com', 'x', 'Old', 'artist')", user)
        await conn.execute("INSERT INTO artists (id, owner_id, name) VALUES ($1, $2, 'The Oldtimers')", artist, user)
        await conn.execute("INSERT INTO albums (id, artist_id, title) VALUES ($1, $2, 'Vintage')", album, artist)
        await conn.execute("INSERT INTO tracks (id, artist_id, album_id, title) VALUES ($1, $2, $3, 'Gramophone')",
                           track, artist, album)
        await migrations.migrate(conn, every)
    finally:
        await conn.close()

    pool = await asyncpg.create_pool(scratch_db, min_size=1, max_size=2)
    try:
        page = await catalog_search.search(pool, "oldtimers gramophone")
        assert [(h["type"], h["id"], h["artist_name"]) for h in page.items] == [("track", track, "The Oldtimers")]
        page = await catalog_search.search(pool, "oldtimrs", types=frozenset({"album"}))  # a typo
        assert [h["id"] for h in page.items] == [album]
        assert {r["word"] for r in await pool.fetch("SELECT word FROM search_vocabulary")} \
            == {"oldtimers", "the", "vintage", "gramophone"}
    finally:
        await pool.close()

