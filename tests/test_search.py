"""Search contract: typo tolerance, ranking tiers, type filter, keyset pagination, private playlist
visibility, live rows, the feature flag, and 4xx problems for absurd input.

The database is shared by the whole run, so every test searches for a made-up word of its own.
"""

from __future__ import annotations

import random
import string
import uuid
from typing import get_args

import pytest

from catalog import search as catalog_search
from serve_deployments.routes.search import SearchType

PROBLEM = "application/problem+json"


def word() -> str:
    """A lowercase word no other test (or catalog row) contains; letters only, so it stays one token."""
    return "".join(random.choices(string.ascii_lowercase, k=9))


def typo(text: str) -> str:
    """``text`` with its last letter changed: trigram-similar, but neither equal nor a prefix."""
    return text[:-1] + ("x" if text[-1] != "x" else "y")


async def find(client, q: str, *, headers: dict | None = None, **params) -> list[dict]:
    response = await client.get("/v1/search", params={"q": q, **params}, headers=headers or {})
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def create(client, owner: dict, path: str, body: dict) -> str:
    response = await client.post(path, json=body, headers=owner["headers"])
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def add_to(client, band: dict, path: str, title: str) -> str:
    """A track or album titled ``title`` by the artist of ``band`` (from ``api.artist_with_track``)."""
    return await create(client, band["owner"], path, {"title": title, "artist_id": band["artist_id"]})


def assert_problem(response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["status"] == status


async def test_typo_finds_the_beatles(api, client):
    tag = word()
    band = await api.artist_with_track(title=f"Yesterday {tag}", name=f"The Beatles {tag}")
    hits = await find(client, f"beatls {tag}")
    assert hits[0] == {"type": "artist", "id": band["artist_id"], "name": f"The Beatles {tag}",
                       "score": hits[0]["score"]}
    assert [h["id"] for h in await find(client, f"The Beatles {tag}")][0] == band["artist_id"]


async def test_accents_do_not_hide_a_name(api, client):
    tag = word()
    singer = await api.artist_with_track(name=f"Beyoncé {tag}")
    assert singer["artist_id"] in [h["id"] for h in await find(client, f"beyonce {tag}", type="artist")]


async def test_exact_above_whole_word_above_prefix_above_fuzzy(api, client):
    tag = word()
    exact = await api.artist_with_track(name=tag)
    other = await api.artist_with_track(name=f"Someone {word()}")  # its releases match by title only
    whole_word = await add_to(client, other, "/v1/tracks", f"{tag} Forever")
    prefix = await add_to(client, other, "/v1/albums", f"{tag}ville")
    fuzzy = await create(client, exact["owner"], "/v1/playlists", {"name": typo(tag), "public": True})
    hits = await find(client, tag)
    # The artist's own track "Song" matches a whole word too, of its artist's name: below a title's.
    assert [h["id"] for h in hits] == [exact["artist_id"], whole_word, exact["track_id"], prefix, fuzzy]
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 5
    assert [h["type"] for h in hits] == ["artist", "track", "track", "album", "playlist"]
    assert hits[1]["title"] == f"{tag} Forever" and "name" not in hits[1]


async def test_prefix_matches_while_typing(api, client):
    tag = word()
    band = await api.artist_with_track(name=f"{tag} Orchestra")
    assert band["artist_id"] in [h["id"] for h in await find(client, f"{tag} orch")]


async def test_type_filter(api, client):
    tag = word()
    band = await api.artist_with_track(title=f"{tag} Song", name=f"{tag} Band")
    for kind, expected in (("track", band["track_id"]), ("artist", band["artist_id"])):
        hits = await find(client, tag, type=kind)
        assert [h["id"] for h in hits] == [expected] and hits[0]["type"] == kind
    assert await find(client, tag, type="playlist") == []


async def test_pagination_has_no_duplicates_and_no_gaps(api, client):
    tag = word()
    band = await api.artist_with_track(title=f"{tag} 0", name=f"{tag} Band")
    expected = {band["artist_id"], band["track_id"], await add_to(client, band, "/v1/albums", f"{tag} LP")}
    for i in range(1, 8):
        expected.add(await add_to(client, band, "/v1/tracks", f"{tag} {i}"))

    seen, cursor, pages = [], None, 0
    while True:
        params = {"q": tag, "limit": 3, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/search", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [h["id"] for h in body["items"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
        assert len(body["items"]) == 3
    assert len(seen) == len(set(seen)) == len(expected) and set(seen) == expected
    assert pages == 4
    whole = await find(client, tag, limit=100)
    assert [h["id"] for h in whole] == seen  # pages concatenate to the single-page order


async def test_cursor_only_continues_its_own_search(api, client):
    tag = word()
    band = await api.artist_with_track(title=f"{tag} Song", name=f"{tag} Band")
    first = (await client.get("/v1/search", params={"q": tag, "limit": 1})).json()
    assert first["next"] and first["items"][0]["id"] in {band["artist_id"], band["track_id"]}
    other = await client.get("/v1/search", params={"q": tag + " x", "cursor": first["next"]})
    assert_problem(other, 422)
    narrowed = await client.get("/v1/search", params={"q": tag, "type": "track", "cursor": first["next"]})
    assert_problem(narrowed, 422)


async def test_private_playlists_only_for_owner_and_collaborators(api, client):
    tag = word()
    owner, collaborator, stranger = await api.user(), await api.user(), await api.user()
    secret = await create(client, owner, "/v1/playlists", {"name": f"Secret {tag}", "public": False})
    shared = await create(client, owner, "/v1/playlists", {"name": f"Shared {tag}", "public": True})
    invite = f"/v1/playlists/{secret}/collaborators/{collaborator['id']}"
    assert (await client.put(invite, headers=owner["headers"])).status_code == 204

    async def visible(headers: dict | None) -> set[str]:
        return {h["id"] for h in await find(client, tag, type="playlist", headers=headers)}

    assert await visible(owner["headers"]) == {secret, shared}
    assert await visible(collaborator["headers"]) == {secret, shared}
    assert await visible(stranger["headers"]) == {shared}
    assert await visible(None) == {shared}
    assert secret not in {h["id"] for h in await find(client, f"secret {tag}")}


async def test_search_reads_live_rows(api, client):
    tag, renamed = word(), word()
    band = await api.artist_with_track(title=f"{tag} Demo")
    headers = band["owner"]["headers"]
    assert [h["id"] for h in await find(client, tag, type="track")] == [band["track_id"]]
    track = f"/v1/tracks/{band['track_id']}"
    assert (await client.patch(track, json={"title": f"{renamed} Final"}, headers=headers)).status_code == 200
    assert await find(client, tag, type="track") == []
    assert [h["title"] for h in await find(client, renamed, type="track")] == [f"{renamed} Final"]
    assert (await client.delete(track, headers=headers)).status_code == 204
    assert await find(client, renamed, type="track") == []


async def test_feature_flag_off_is_404(client, settings, monkeypatch):
    monkeypatch.setitem(settings.features, "search", False)
    assert_problem(await client.get("/v1/search", params={"q": "anything"}), 404)


@pytest.mark.parametrize("params", [
    {},
    {"q": ""},
    {"q": "   "},
    {"q": "!!! ???"},
    {"q": "x" * 10_000},
    {"q": "beatles", "type": "song"},
    {"q": "beatles", "type": ""},
    {"q": "beatles", "limit": 0},
    {"q": "beatles", "limit": 10**12},
    {"q": "beatles", "limit": "many"},
    {"q": "beatles", "cursor": "not-a-cursor"},
    {"q": "beatles", "cursor": "%%%%"},
    {"q": "beatles", "cursor": "W10"},  # base64 of "[]"
    {"q": "beatles", "cursor": "x" * 10_000},
    {"q": "beatles", "cursor": ""},
])
async def test_absurd_input_is_a_4xx_problem(client, params):
    response = await client.get("/v1/search", params=params)
    assert_problem(response, 422)


@pytest.mark.parametrize("q", [
    "\x00beatles", "a & b | !c", "'quoted' \"words\"", "héllo:* <-> (x)", "ß²³", "a", "o'brien", "AC/DC",
])
async def test_odd_but_valid_queries_never_fail(client, q):
    response = await client.get("/v1/search", params={"q": q})
    assert response.status_code in (200, 422), response.text
    assert response.status_code == 422 or isinstance(response.json()["items"], list)


def test_cursor_round_trips_the_exact_sort_key():
    after = catalog_search.After(score=2.123456789012345, type="track", id=uuid.uuid4())
    cursor = catalog_search.encode_cursor(after, "fp")
    assert catalog_search.decode_cursor(cursor, "fp") == after
    assert cursor.isascii() and "=" not in cursor


def test_route_types_match_the_searchable_tables():
    assert set(get_args(SearchType)) == catalog_search.TYPES
