"""Catalog contract: artists, albums, tracks, playlists, and authorization on every write."""

from __future__ import annotations

import uuid


async def test_listener_cannot_create_artist(api, client):
    listener = await api.user("listener")
    response = await client.post("/v1/artists", json={"name": "Nope"}, headers=listener["headers"])
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"


async def test_my_artists_lists_only_the_callers_own(api, client):
    mine = await api.artist_with_track()
    headers = mine["owner"]["headers"]
    second = await client.post("/v1/artists", json={"name": "Side project"}, headers=headers)
    other = await api.artist_with_track()
    listed = await client.get("/v1/me/artists", headers=headers)
    assert listed.status_code == 200
    assert [a["id"] for a in listed.json()] == [mine["artist_id"], second.json()["id"]]
    assert other["artist_id"] not in {a["id"] for a in listed.json()}
    listener = await api.user("listener")
    assert (await client.get("/v1/me/artists", headers=listener["headers"])).json() == []
    assert (await client.get("/v1/me/artists")).status_code == 401


async def test_only_the_owner_adds_tracks_and_albums(api, client):
    mine = await api.artist_with_track()
    other = await api.user("artist")
    track = await client.post("/v1/tracks", json={"title": "Stolen", "artist_id": mine["artist_id"]},
                              headers=other["headers"])
    assert track.status_code == 403
    album = await client.post("/v1/albums", json={"title": "Stolen", "artist_id": mine["artist_id"]},
                              headers=other["headers"])
    assert album.status_code == 403
    edit = await client.patch(f"/v1/tracks/{mine['track_id']}", json={"title": "x"}, headers=other["headers"])
    assert edit.status_code == 403
    ghost = await client.post("/v1/tracks", json={"title": "x", "artist_id": str(uuid.uuid4())},
                              headers=other["headers"])
    assert ghost.status_code == 404


async def test_album_with_tracks_and_cross_artist_album_rejected(api, client):
    mine = await api.artist_with_track()
    headers = mine["owner"]["headers"]
    album = await client.post("/v1/albums", json={"title": "LP", "artist_id": mine["artist_id"],
                                                  "release_date": "2024-05-01"}, headers=headers)
    assert album.status_code == 201
    track = await client.post("/v1/tracks", json={"title": "On LP", "artist_id": mine["artist_id"],
                                                  "album_id": album.json()["id"], "genre": "rock",
                                                  "duration_s": 201.5}, headers=headers)
    assert track.status_code == 201 and track.json()["album_title"] == "LP"
    read = await client.get(f"/v1/albums/{album.json()['id']}")
    assert [t["title"] for t in read.json()["tracks"]] == ["On LP"]
    other = await api.artist_with_track()
    cross = await client.post("/v1/tracks", json={"title": "x", "artist_id": other["artist_id"],
                                                  "album_id": album.json()["id"]}, headers=other["owner"]["headers"])
    assert cross.status_code == 422


async def _playlist(client, user, *, public=False, name="Mix"):
    response = await client.post("/v1/playlists", json={"name": name, "public": public}, headers=user["headers"])
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def test_playlist_order_add_move_remove(api, client):
    owner = await api.user()
    playlist = await _playlist(client, owner)
    tracks = [(await api.artist_with_track(title=f"T{i}"))["track_id"] for i in range(4)]
    for track in tracks[:3]:
        assert (await client.post(f"/v1/playlists/{playlist}/tracks", json={"track_id": track},
                                  headers=owner["headers"])).status_code == 201
    inserted = await client.post(f"/v1/playlists/{playlist}/tracks", json={"track_id": tracks[3], "position": 1},
                                 headers=owner["headers"])
    assert inserted.json()["position"] == 1

    async def titles():
        body = (await client.get(f"/v1/playlists/{playlist}", headers=owner["headers"])).json()
        assert [e["position"] for e in body["tracks"]] == list(range(len(body["tracks"])))
        return [e["title"] for e in body["tracks"]], [e["entry_id"] for e in body["tracks"]]

    names, entries = await titles()
    assert names == ["T0", "T3", "T1", "T2"]
    moved = await client.patch(f"/v1/playlists/{playlist}/tracks/{entries[0]}", json={"position": 99},
                               headers=owner["headers"])
    assert moved.status_code == 200 and moved.json()["position"] == 3
    assert (await titles())[0] == ["T3", "T1", "T2", "T0"]
    removed = await client.delete(f"/v1/playlists/{playlist}/tracks/{entries[2]}", headers=owner["headers"])
    assert removed.status_code == 204
    assert (await titles())[0] == ["T3", "T2", "T0"]


async def test_private_playlist_is_invisible_and_unwritable_to_others(api, client):
    owner, stranger = await api.user(), await api.user()
    playlist = await _playlist(client, owner)
    track = (await api.artist_with_track())["track_id"]
    assert (await client.get(f"/v1/playlists/{playlist}")).status_code == 404
    assert (await client.get(f"/v1/playlists/{playlist}", headers=stranger["headers"])).status_code == 404
    write = await client.post(f"/v1/playlists/{playlist}/tracks", json={"track_id": track},
                              headers=stranger["headers"])
    assert write.status_code in (403, 404)
    rename = await client.patch(f"/v1/playlists/{playlist}", json={"name": "mine now"}, headers=stranger["headers"])
    assert rename.status_code in (403, 404)
    delete = await client.delete(f"/v1/playlists/{playlist}", headers=stranger["headers"])
    assert delete.status_code in (403, 404)
    assert (await client.get(f"/v1/playlists/{playlist}", headers=owner["headers"])).json()["name"] == "Mix"


async def test_public_playlist_readable_but_not_writable(api, client):
    owner, stranger = await api.user(), await api.user()
    playlist = await _playlist(client, owner, public=True)
    track = (await api.artist_with_track())["track_id"]
    assert (await client.get(f"/v1/playlists/{playlist}")).status_code == 200
    write = await client.post(f"/v1/playlists/{playlist}/tracks", json={"track_id": track},
                              headers=stranger["headers"])
    assert write.status_code == 403
    follow = await client.put(f"/v1/playlists/{playlist}/follow", headers=stranger["headers"])
    assert follow.status_code == 204
    assert (await client.get(f"/v1/playlists/{playlist}")).json()["followers"] == 1
    mine = await client.get("/v1/me/playlists", headers=stranger["headers"])
    assert playlist in [p["id"] for p in mine.json()]


async def test_collaborator_edits_tracks_but_not_settings(api, client):
    owner, collaborator = await api.user(), await api.user()
    playlist = await _playlist(client, owner)
    track = (await api.artist_with_track())["track_id"]
    added = await client.put(f"/v1/playlists/{playlist}/collaborators/{collaborator['id']}",
                             headers=owner["headers"])
    assert added.status_code == 204
    write = await client.post(f"/v1/playlists/{playlist}/tracks", json={"track_id": track},
                              headers=collaborator["headers"])
    assert write.status_code == 201
    rename = await client.patch(f"/v1/playlists/{playlist}", json={"public": True}, headers=collaborator["headers"])
    assert rename.status_code == 403
    invite = await client.put(f"/v1/playlists/{playlist}/collaborators/{owner['id']}",
                              headers=collaborator["headers"])
    assert invite.status_code == 403


async def test_deleting_a_track_keeps_playlist_positions_dense(api, client):
    owner = await api.user()
    playlist = await _playlist(client, owner)
    doomed = await api.artist_with_track(title="Doomed")
    keep = [(await api.artist_with_track(title=f"K{i}"))["track_id"] for i in range(2)]
    for track in [keep[0], doomed["track_id"], keep[1]]:
        await client.post(f"/v1/playlists/{playlist}/tracks", json={"track_id": track}, headers=owner["headers"])
    gone = await client.delete(f"/v1/tracks/{doomed['track_id']}", headers=doomed["owner"]["headers"])
    assert gone.status_code == 204
    body = (await client.get(f"/v1/playlists/{playlist}", headers=owner["headers"])).json()
    assert [(e["title"], e["position"]) for e in body["tracks"]] == [("K0", 0), ("K1", 1)]
