"""GET /v1/users?q=: people by the start of their name, for the collaborator picker (PostgreSQL, Redis, real)."""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager

import pytest


@pytest.fixture
def tag() -> str:
    """A word no other test's users have, so lookups here see only this test's people."""
    return "Zq" + uuid.uuid4().hex[:8]


async def named(api, client, display_name: str) -> dict:
    user = await api.user()
    renamed = await client.patch("/v1/me", json={"display_name": display_name}, headers=user["headers"])
    assert renamed.status_code == 200, renamed.text
    return user


async def lookup(client, me: dict, q: str, **params):
    return await client.get("/v1/users", params={"q": q, **params}, headers=me["headers"])


@asynccontextmanager
async def settings_changed(app, **changes):
    """The running app with some settings changed for the duration (as the login rate-limit test does)."""
    ctx = app.state.ctx
    app.state.ctx = type(ctx)(pool=ctx.pool, redis=ctx.redis, settings=ctx.settings.model_copy(update=changes))
    try:
        yield
    finally:
        app.state.ctx = ctx


async def test_names_are_found_by_their_start_or_a_word_start_without_private_fields(api, client, pool, tag):
    me = await api.user()
    carla = await named(api, client, f"{tag}carla Bley")
    collab = await named(api, client, f"Collab {tag}CARLA")
    await named(api, client, f"Someone {tag}x")  # another word of the tag: not a match for "...carl"
    inner = await named(api, client, f"Mid{tag}carla")  # the text inside a word, not at its start

    found = await lookup(client, me, f"{tag}CARL")
    assert found.status_code == 200, found.text
    # The whole-name match first, then the word match; nothing but the id and the display name.
    assert [u["id"] for u in found.json()] == [carla["id"], collab["id"]]
    assert all(set(u) == {"id", "display_name"} for u in found.json())
    assert inner["id"] not in [u["id"] for u in found.json()]
    assert carla["email"] not in found.text

    # Spaces are folded, and a disabled account is never found.
    assert [u["display_name"] for u in (await lookup(client, me, f"  {tag}carla   bl ")).json()] == [f"{tag}carla Bley"]
    await pool.execute("UPDATE users SET status = 'disabled' WHERE id = $1", uuid.UUID(carla["id"]))
    assert [u["id"] for u in (await lookup(client, me, f"{tag}carl")).json()] == [collab["id"]]


async def test_like_wildcards_in_the_text_are_taken_literally(api, client, tag):
    me = await api.user()
    percent = await named(api, client, f"{tag} 50% off")
    await named(api, client, f"{tag} 50 and more")
    assert [u["id"] for u in (await lookup(client, me, "50%")).json() if tag in u["display_name"]] == [percent["id"]]
    assert [u for u in (await lookup(client, me, f"{tag[:3]}_")).json()] == []


async def test_a_lookup_needs_a_signed_in_caller_and_a_few_letters(api, client, settings, tag):
    me = await api.user()
    anonymous = await client.get("/v1/users", params={"q": tag})
    assert anonymous.status_code == 401
    short = await lookup(client, me, "a" * (settings.user_lookup_min_chars - 1) or "  ")
    assert short.status_code == 422 and short.headers["content-type"] == "application/problem+json"
    assert (await lookup(client, me, "x" * 101)).status_code == 422
    assert (await lookup(client, me, tag, limit=0)).status_code == 422


async def test_results_are_capped_by_the_setting_and_lookups_are_rate_limited(app, api, client, tag):
    me = await api.user()
    people = [await named(api, client, f"{tag} {n}") for n in range(3)]
    async with settings_changed(app, user_lookup_limit=2, user_lookup_per_minute=4):
        capped = await lookup(client, me, tag, limit=50)
        assert [u["id"] for u in capped.json()] == [p["id"] for p in people[:2]]
        assert len((await lookup(client, me, tag, limit=1)).json()) == 1
        statuses = [(await lookup(client, me, tag)).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        limited = await lookup(client, me, tag)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        # Another caller has a window of their own.
        assert (await lookup(client, await api.user(), tag)).status_code == 200
