"""Bad input never yields a 5xx: malformed JSON, wrong types, unknown fields, oversized bodies,
absurd query values, unknown routes. Every error is application/problem+json."""

from __future__ import annotations

import pytest

PROBLEM = "application/problem+json"


def assert_problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]


async def test_malformed_json_is_400(api, client):
    user = await api.user("artist")
    response = await client.post("/v1/artists", content=b'{"name": ', headers={
        **user["headers"], "content-type": "application/json"})
    assert_problem(response, 400)


@pytest.mark.parametrize("body", [
    {"name": 5}, {"name": ""}, {"name": "x" * 201}, {"name": "ok", "owner_id": "someone"}, [], "text",
])
async def test_wrong_types_and_unknown_fields_are_422(api, client, body):
    user = await api.user("artist")
    assert_problem(await client.post("/v1/artists", json=body, headers=user["headers"]), 422)


async def test_validation_problem_does_not_echo_passwords(client):
    response = await client.post("/v1/auth/register", json={
        "email": "not-an-email", "password": "hunter2-secret", "display_name": "x"})
    assert_problem(response, 422)
    assert "hunter2-secret" not in response.text


async def test_oversized_body_is_413(client, settings):
    big = b'{"name": "' + b"x" * (settings.max_body_bytes + 10) + b'"}'
    response = await client.post("/v1/playlists", content=big, headers={"content-type": "application/json"})
    assert_problem(response, 413)


async def test_oversized_body_without_content_length_is_413(api, client, settings):
    user = await api.user()

    async def chunks():
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b" " * 65536

    response = await client.post("/v1/playlists", content=chunks(),
                                 headers={**user["headers"], "content-type": "application/json"})
    assert_problem(response, 413)


@pytest.mark.parametrize("query", ["limit=0", "limit=1000000000000", "offset=-1", "limit=abc", "offset=99999999"])
async def test_absurd_paging_is_422(api, client, query):
    user = await api.user()
    assert_problem(await client.get(f"/v1/me/playlists?{query}", headers=user["headers"]), 422)


async def test_bad_ids_unknown_routes_and_methods(client):
    assert_problem(await client.get("/v1/tracks/not-a-uuid"), 422)
    assert_problem(await client.get("/v1/tracks/00000000-0000-0000-0000-000000000000"), 404)
    assert_problem(await client.get("/v1/nothing-here"), 404)
    assert_problem(await client.delete("/v1/auth/register"), 405)


async def test_request_id_is_echoed_or_generated(client):
    echoed = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    hostile = await client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert hostile.headers["x-request-id"] != "bad id\twith spaces" and len(hostile.headers["x-request-id"]) == 32


async def test_feature_flag_gates_registration(app, client, settings):
    ctx = app.state.ctx
    app.state.ctx = type(ctx)(pool=ctx.pool, redis=ctx.redis,
                              settings=settings.model_copy(update={"features": {"registration": False}}))
    try:
        response = await client.post("/v1/auth/register", json={
            "email": "flag@example.com", "password": "long enough", "display_name": "x"})
        assert_problem(response, 404)
    finally:
        app.state.ctx = ctx


async def test_null_for_a_not_null_column_is_422(api, client):
    """Found by schemathesis: PATCH bodies took ``null`` for NOT NULL columns, and PostgreSQL's
    constraint violation left as a 500. A field left out is still left unchanged."""
    made = await api.artist_with_track()
    headers = made["owner"]["headers"]
    playlist = await client.post("/v1/playlists", json={"name": "Mine"}, headers=headers)
    for path, body in [
        ("/v1/me", {"bio": None}),
        ("/v1/me", {"display_name": None}),
        (f"/v1/artists/{made['artist_id']}", {"name": None}),
        (f"/v1/tracks/{made['track_id']}", {"title": None}),
        (f"/v1/playlists/{playlist.json()['id']}", {"public": None}),
    ]:
        assert_problem(await client.patch(path, json=body, headers=headers), 422)
    renamed = await client.patch(f"/v1/artists/{made['artist_id']}", json={"name": "New"}, headers=headers)
    assert renamed.status_code == 200 and renamed.json()["bio"] == ""


async def test_nul_characters_never_reach_postgresql(api, client):
    """Found by schemathesis: PostgreSQL text cannot hold U+0000, and such input left as a 500."""
    user = await api.user()
    assert_problem(await client.post("/v1/playlists", json={"name": "a\x00b"}, headers=user["headers"]), 422)
    login = {"username": "a\x00@example.com", "password": "whatever"}
    assert_problem(await client.post("/v1/auth/token", data=login), 401)
