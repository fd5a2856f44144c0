"""The OpenSubsonic API at /rest/ through the real app (PostgreSQL, Redis): envelope and formats, app
passwords and every auth mechanism, each error code, browsing the catalog, search3 paging."""

from __future__ import annotations

import uuid

import pytest

from tests.subsonic_support import NS, Subsonic, app_password, seed, subsonic_user, validate


async def test_envelope_in_both_formats_on_both_paths_by_get_and_form_post(api):
    _, sub = await subsonic_user(api)
    for view in (False, True):
        for post in (False, True):
            inner = await sub.json("ping", view=view, post=post)
            assert inner["status"] == "ok"
            root = await sub.xml("ping", view=view, post=post)
            assert root.get("type") == "verseflow"
    extensions = await sub.json("getOpenSubsonicExtensions", auth="none")
    names = {e["name"] for e in extensions["openSubsonicExtensions"]}
    assert {"formPost", "apiKeyAuthentication"} <= names
    root = await sub.xml("getOpenSubsonicExtensions", auth="none")
    assert {e.get("name") for e in root.iter(f"{NS}openSubsonicExtensions")} == names
    license_ = await sub.json("getLicense")
    assert license_["license"]["valid"] is True


async def test_cors_for_browser_clients(api):
    _, sub = await subsonic_user(api)
    response = await sub.raw("ping", f="json")
    assert response.headers["access-control-allow-origin"] == "*"
    preflight = await api.http.options("/rest/ping.view", headers={
        "Origin": "https://feishin.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]


async def test_app_passwords_are_shown_once_listed_and_revoked(api):
    user = await api.user()
    created = await app_password(api, user, "Symfonium")
    assert len(created["password"]) == 32
    listed = await api.http.get("/v1/me/app-passwords", headers=user["headers"])
    assert listed.status_code == 200
    assert [a["name"] for a in listed.json()] == ["Symfonium"]
    assert "password" not in listed.json()[0]
    sub = Subsonic(api.http, user["email"], created["password"])
    await sub.json("ping")
    other = await api.user()
    foreign = await api.http.delete(f"/v1/me/app-passwords/{created['id']}", headers=other["headers"])
    assert foreign.status_code == 404
    revoked = await api.http.delete(f"/v1/me/app-passwords/{created['id']}", headers=user["headers"])
    assert revoked.status_code == 204
    await sub.error("ping", 40)
    await sub.error("ping", 44, auth="apikey")
    unauthenticated = await api.http.post("/v1/me/app-passwords", json={"name": "x"})
    assert unauthenticated.status_code == 401
    bad = await api.http.post("/v1/me/app-passwords", json={"name": ""}, headers=user["headers"])
    assert bad.status_code == 422


async def test_app_passwords_are_stored_encrypted_never_in_clear(api, pool):
    user = await api.user()
    created = await app_password(api, user)
    row = await pool.fetchrow("SELECT ciphertext, lookup_hash FROM app_passwords WHERE id = $1",
                              uuid.UUID(created["id"]))
    assert created["password"].encode() not in bytes(row["ciphertext"])
    login_hash = await pool.fetchval("SELECT password_hash FROM users WHERE id = $1", uuid.UUID(user["id"]))
    assert login_hash.startswith("$argon2id$")


@pytest.mark.parametrize("auth", ["token", "plain", "enc", "apikey"])
async def test_every_auth_mechanism_signs_in(api, auth):
    user, sub = await subsonic_user(api)
    await sub.json("ping", auth=auth)
    me = await sub.json("getUser", auth=auth, username=user["email"])
    assert me["user"]["username"] == user["email"] and me["user"]["streamRole"] is True
    info = await sub.json("tokenInfo", auth=auth)
    assert info["tokenInfo"]["username"] == user["email"]


async def test_error_codes(api, settings, monkeypatch):
    user, sub = await subsonic_user(api)
    login_password = Subsonic(api.http, user["email"], user["password"])
    await login_password.error("ping", 40, auth="plain")  # the argon2 login password is never accepted here
    await login_password.error("ping", 40, auth="token")
    await Subsonic(api.http, "nobody@example.com", sub.password).error("ping", 40)
    await sub.error("ping", 10, auth="none")  # no credentials at all
    await sub.error("ping", 10, auth="none", p=sub.password)  # no u
    await sub.error("ping", 10, auth="none", u=sub.username, t="0" * 32)  # t without s
    await sub.error("getArtist", 10)  # the method's own parameter
    await sub.error("ping", 43, apiKey=sub.password)  # apiKey with u and t
    await sub.error("ping", 43, auth="plain", t="0" * 32, s="abcdef")  # p and t together
    await sub.error("ping", 44, auth="none", apiKey="not-a-key")
    other = await api.user()
    await sub.error("getUser", 50, username=other["email"])
    await sub.error("getArtist", 70, id=f"ar-{uuid.uuid4()}")
    await sub.error("getArtist", 70, id="garbage")
    await sub.error("getAlbum", 70, id=f"pl-{uuid.uuid4()}")
    await sub.error("noSuchMethod", 70)
    monkeypatch.setattr(settings, "subsonic_token_auth", False)
    await sub.error("ping", 41)
    await sub.json("ping", auth="apikey")
    monkeypatch.setattr(settings, "subsonic_password_auth", False)
    await sub.error("ping", 42, auth="plain")
    await sub.error("ping", 42, auth="enc")


async def test_failed_sign_ins_are_rate_limited_per_account(api, settings, monkeypatch):
    monkeypatch.setattr(settings, "login_attempts_per_account", 3)
    _, sub = await subsonic_user(api)
    await sub.json("ping")
    await sub.json("ping")  # successes do not count
    wrong = Subsonic(api.http, sub.username, "wrong-password")
    for _ in range(3):
        assert "wrong" in (await wrong.json("ping", ok=False))["error"]["message"]
    blocked = await sub.json("ping", ok=False)  # even the right password, until the window closes
    assert blocked["error"]["code"] == 40 and "too many" in blocked["error"]["message"]


async def test_jsonp(api):
    _, sub = await subsonic_user(api)
    response = await sub.raw("ping", f="jsonp", callback="cb")
    assert response.text.startswith("cb({") and response.text.endswith(");")


@pytest.fixture
async def library(api, pool) -> dict:
    owner = await api.user("artist")
    name = f"Zed {uuid.uuid4().hex[:6]}"
    made = await seed(pool, owner, name=name, albums={
        "First Album": [("Opening", "Jazz"), ("Second", "Jazz")],
        None: [("Lone Single", "Funk")],
    })
    hidden = await seed(pool, owner, name=f"Hidden {uuid.uuid4().hex[:6]}", albums={"Unreleased": [("Wip", None)]},
                        status="processing")
    return {"owner": owner, "name": name, **made, "hidden": hidden}


async def test_browse_from_artists_down_to_songs(api, library):
    _, sub = await subsonic_user(api)
    artists = await sub.json("getArtists")
    listed = {a["name"]: a for index in artists["artists"]["index"] for a in index["artist"]}
    assert library["name"] in listed
    assert not any(n.startswith("Hidden") and n == f"Hidden {library['hidden']['artist_id']}" for n in listed)
    assert f"ar-{library['hidden']['artist_id']}" not in {a["id"] for a in listed.values()}
    artist_id = listed[library["name"]]["id"]
    assert artist_id == f"ar-{library['artist_id']}"
    assert listed[library["name"]]["albumCount"] == 2

    artist = await sub.json("getArtist", id=artist_id)
    albums = {a["name"]: a for a in artist["artist"]["album"]}
    assert set(albums) == {"First Album", "Singles"}
    assert albums["Singles"]["id"] == f"as-{library['artist_id']}"
    album = await sub.json("getAlbum", id=albums["First Album"]["id"])
    assert [s["title"] for s in album["album"]["song"]] == ["Opening", "Second"]
    assert [s["track"] for s in album["album"]["song"]] == [1, 2]
    singles = await sub.json("getAlbum", id=albums["Singles"]["id"])
    assert [s["title"] for s in singles["album"]["song"]] == ["Lone Single"]
    song_id = album["album"]["song"][0]["id"]
    song = await sub.json("getSong", id=song_id)
    assert song["song"]["albumId"] == albums["First Album"]["id"] and song["song"]["artistId"] == artist_id
    assert song["song"]["duration"] == 61 and song["song"]["genre"] == "Jazz"
    # Ids are unique across types: getAlbum with a song id answers with the song's album.
    assert (await sub.json("getAlbum", id=song_id))["album"]["id"] == albums["First Album"]["id"]
    await sub.error("getSong", 70, id=albums["First Album"]["id"])
    hidden_track = next(iter(library["hidden"]["tracks"].values()))
    await sub.error("getSong", 70, id=f"tr-{hidden_track}")

    root = await sub.xml("getAlbum", id=albums["First Album"]["id"])
    xml_album = root.find(f"{NS}album")
    assert xml_album.get("name") == "First Album"
    assert [s.get("title") for s in xml_album.findall(f"{NS}song")] == ["Opening", "Second"]


async def test_music_directory_tree_and_indexes(api, library):
    _, sub = await subsonic_user(api)
    folders = await sub.json("getMusicFolders")
    folder = folders["musicFolders"]["musicFolder"][0]["id"]
    indexes = await sub.json("getIndexes", musicFolderId=folder)
    ids = {a["id"] for index in indexes["indexes"]["index"] for a in index["artist"]}
    artist_id = f"ar-{library['artist_id']}"
    assert artist_id in ids
    top = await sub.json("getMusicDirectory", id=artist_id)
    children = {c["title"]: c for c in top["directory"]["child"]}
    assert set(children) == {"First Album", "Singles"} and all(c["isDir"] for c in children.values())
    album = await sub.json("getMusicDirectory", id=children["First Album"]["id"])
    assert [c["title"] for c in album["directory"]["child"]] == ["Opening", "Second"]
    assert album["directory"]["parent"] == artist_id
    assert not any(c["isDir"] for c in album["directory"]["child"])
    root = await sub.xml("getMusicDirectory", id=children["Singles"]["id"])
    assert [c.get("title") for c in root.find(f"{NS}directory").findall(f"{NS}child")] == ["Lone Single"]


async def test_genres_lists_and_random(api, library):
    _, sub = await subsonic_user(api)
    genres = {g["value"]: g for g in (await sub.json("getGenres"))["genres"]["genre"]}
    assert genres["Jazz"]["songCount"] >= 2
    root = await sub.xml("getGenres")
    assert "Jazz" in {g.text for g in root.iter(f"{NS}genre")}
    by_genre = await sub.json("getSongsByGenre", genre="Funk", count=500)
    assert "Lone Single" in {s["title"] for s in by_genre["songsByGenre"]["song"]}
    for kind in ("random", "newest", "frequent", "recent", "starred", "alphabeticalByName",
                 "alphabeticalByArtist", "highest"):
        for method in ("getAlbumList", "getAlbumList2"):
            await sub.json(method, type=kind, size=5)
    newest = await sub.json("getAlbumList2", type="newest", size=500)
    assert f"al-{library['albums']['First Album']}" in {a["id"] for a in newest["albumList2"]["album"]}
    jazz = await sub.json("getAlbumList2", type="byGenre", genre="Jazz", size=500)
    assert f"al-{library['albums']['First Album']}" in {a["id"] for a in jazz["albumList2"]["album"]}
    await sub.json("getAlbumList2", type="byYear", fromYear=2030, toYear=1990)
    await sub.error("getAlbumList2", 10)
    await sub.error("getAlbumList2", 0, type="sideways")
    random = await sub.json("getRandomSongs", size=3)
    assert len(random["randomSongs"]["song"]) <= 3
    top = await sub.json("getTopSongs", artist=library["name"].upper(), count=2)
    assert len(top["topSongs"]["song"]) == 2 and {s["artist"] for s in top["topSongs"]["song"]} == {library["name"]}
    await sub.error("getTopSongs", 10)
    scan = await sub.json("getScanStatus")
    assert scan["scanStatus"]["scanning"] is False and scan["scanStatus"]["count"] >= 3


async def test_search3_with_a_query(api, library):
    _, sub = await subsonic_user(api)
    found = await sub.json("search3", query=library["name"])
    assert [a["name"] for a in found["searchResult3"]["artist"]] == [library["name"]]
    assert {s["title"] for s in found["searchResult3"]["song"]} == {"Opening", "Second", "Lone Single"}
    found = await sub.json("search3", query="lone sing", artistCount=0, albumCount=0)
    assert "Lone Single" in {s["title"] for s in found["searchResult3"]["song"]}
    assert "artist" not in found["searchResult3"]
    none = await sub.json("search3", query="100%_no_such_thing")
    assert none["searchResult3"].get("song", []) == []


async def test_search3_empty_query_pages_through_the_whole_library(api, pool):
    """Symfonium syncs this way: ``query=""``, 500 songs a page, until a short page."""
    owner = await api.user("artist")
    made = await seed(pool, owner, name=f"Bulk {uuid.uuid4().hex[:6]}",
                      albums={"Bulk": [(f"Bulk song {i:03d}", "Ambient") for i in range(520)]})
    _, sub = await subsonic_user(api)
    seen: list[str] = []
    offset = 0
    while True:
        page = await sub.json("search3", query='""', songCount=500, songOffset=offset, artistCount=0,
                              albumCount=0, check_schema=offset == 0)
        songs = page["searchResult3"].get("song", [])
        assert len(songs) <= 500
        seen += [s["id"] for s in songs]
        offset += len(songs)
        if len(songs) < 500:
            break
    assert len(seen) == len(set(seen))
    assert {f"tr-{t}" for t in made["tracks"].values()} <= set(seen)
    assert len(seen) == await pool.fetchval("SELECT count(*) FROM tracks WHERE status = 'ready'")
    assert offset > 500
    capped = await sub.json("search3", query="", songCount=100_000, artistCount=0, albumCount=0)
    assert len(capped["searchResult3"]["song"]) == 500


def test_schemas_are_loaded_from_the_vendored_openapi_document():
    validate("ping", {"subsonic-response": {"status": "ok", "version": "1.16.1", "type": "verseflow",
                                            "serverVersion": "0.1.0", "openSubsonic": True}})
    with pytest.raises(Exception):  # noqa: B017 - any validation error
        validate("getArtists", {"subsonic-response": {"status": "ok", "version": "1.16.1", "type": "x",
                                                      "serverVersion": "1", "openSubsonic": True,
                                                      "artists": {"index": [{"artist": []}]}}})
