"""Accounts and auth contract: register, login, refresh rotation and reuse, /me, logout, limits."""

from __future__ import annotations

import asyncio
import time
import uuid

import jwt


async def test_register_login_me(api, client):
    user = await api.user("listener")
    me = await client.get("/v1/me", headers=user["headers"])
    assert me.status_code == 200
    assert me.json()["id"] == user["id"] and me.json()["email"] == user["email"]
    assert user["token_type"] == "bearer" and user["expires_in"] > 0


async def test_duplicate_email_is_409_case_insensitively(api, client):
    user = await api.user()
    again = await client.post("/v1/auth/register", json={
        "email": user["email"].upper(), "password": "another password", "display_name": "x", "role": "listener"})
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["status"] == 409


async def test_admin_role_cannot_be_chosen(client):
    response = await client.post("/v1/auth/register", json={
        "email": f"{uuid.uuid4().hex}@example.com", "password": "long enough pw", "display_name": "x",
        "role": "admin"})
    assert response.status_code == 422


async def test_wrong_password_is_401(api, client):
    user = await api.user()
    response = await client.post("/v1/auth/token", data={"username": user["email"], "password": "nope-nope"})
    assert response.status_code == 401
    unknown = await client.post("/v1/auth/token", data={"username": "ghost@example.com", "password": "nope-nope"})
    assert unknown.status_code == 401
    assert unknown.json()["detail"] == response.json()["detail"]  # no account enumeration


async def test_refresh_rotates_and_reuse_revokes_family(api, client):
    user = await api.user()
    first = await client.post("/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert first.status_code == 200
    new_pair = first.json()
    assert new_pair["refresh_token"] != user["refresh_token"]
    old_again = await client.post("/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert old_again.status_code == 401
    # Reuse of the rotated token revoked the whole family, the newest token included.
    newest = await client.post("/v1/auth/refresh", json={"refresh_token": new_pair["refresh_token"]})
    assert newest.status_code == 401


async def test_missing_forged_and_expired_tokens_are_401(api, client, settings):
    user = await api.user()
    assert (await client.get("/v1/me")).status_code == 401
    now = int(time.time())
    forged = jwt.encode({"sub": user["id"], "role": "admin", "jti": "x", "iat": now, "exp": now + 60,
                         "iss": settings.jwt_issuer}, "not-the-secret", algorithm="HS256")
    assert (await client.get("/v1/me", headers={"Authorization": f"Bearer {forged}"})).status_code == 401
    expired = jwt.encode({"sub": user["id"], "role": "listener", "jti": "y", "iat": now - 100, "exp": now - 5,
                          "iss": settings.jwt_issuer}, settings.secret(), algorithm="HS256")
    response = await client.get("/v1/me", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401 and "expired" in response.json()["detail"]
    garbage = await client.get("/v1/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert garbage.status_code == 401


async def test_logout_revokes_access_and_refresh(api, client):
    user = await api.user()
    out = await client.post("/v1/auth/logout", json={"refresh_token": user["refresh_token"]},
                            headers=user["headers"])
    assert out.status_code == 204
    assert (await client.get("/v1/me", headers=user["headers"])).status_code == 401
    assert (await client.post("/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})).status_code == 401


async def test_login_is_rate_limited_per_account(api, client, settings):
    user = await api.user()
    statuses = [
        (await client.post("/v1/auth/token", data={"username": user["email"], "password": "wrong"})).status_code
        for _ in range(settings.login_attempts_per_account + 1)
    ]
    assert statuses[:-1] == [401] * settings.login_attempts_per_account
    assert statuses[-1] == 429
    limited = await client.post("/v1/auth/token", data={"username": user["email"], "password": user["password"]})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


async def test_profile_update_and_public_view(api, client):
    user = await api.user()
    patched = await client.patch("/v1/me", json={"display_name": "New Name", "bio": "hi",
                                                 "website": "https://example.com/me"}, headers=user["headers"])
    assert patched.status_code == 200, patched.text
    assert patched.json()["display_name"] == "New Name" and patched.json()["profile"]["bio"] == "hi"
    public = await client.get(f"/v1/users/{user['id']}")
    assert public.status_code == 200 and "email" not in public.json()
    bad = await client.patch("/v1/me", json={"website": "not a url"}, headers=user["headers"])
    assert bad.status_code == 422


async def test_login_is_rate_limited_per_ip(app, api, settings):
    import httpx

    user = await api.user()
    limited_settings = settings.model_copy(update={"login_attempts_per_ip": 3})
    ctx = app.state.ctx
    app.state.ctx = type(ctx)(pool=ctx.pool, redis=ctx.redis, settings=limited_settings)
    transport = httpx.ASGITransport(app=app, client=(f"10.9.{uuid.uuid4().int % 250}.7", 4000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://verseflow.test") as other_ip:
            statuses = [(await other_ip.post("/v1/auth/token", data={
                "username": f"{uuid.uuid4().hex}@example.com", "password": "whatever"})).status_code
                for _ in range(4)]
            blocked = await other_ip.post("/v1/auth/token", data={"username": user["email"],
                                                                  "password": user["password"]})
    finally:
        app.state.ctx = ctx
    assert statuses == [401, 401, 401, 429]
    assert blocked.status_code == 429


async def _make_admin(pool, user):
    await pool.execute("UPDATE users SET role = 'admin' WHERE id = $1", uuid.UUID(user["id"]))
    return user


async def test_role_change_by_admin_revokes_old_tokens(api, client, pool):
    admin_login = await api.user()
    await _make_admin(pool, admin_login)
    relog = await client.post("/v1/auth/token", data={"username": admin_login["email"],
                                                      "password": admin_login["password"]})
    admin = {"Authorization": f"Bearer {relog.json()['access_token']}"}
    target = await api.user("listener")
    assert (await client.put(f"/v1/users/{target['id']}/role", json={"role": "artist"},
                             headers=target["headers"])).status_code == 403
    await asyncio.sleep(1.05)  # tokens carry whole-second iat; the cut-off must fall after the admin's login
    changed = await client.put(f"/v1/users/{target['id']}/role", json={"role": "artist"}, headers=admin)
    assert changed.status_code == 200 and changed.json()["role"] == "artist"
    assert (await client.get("/v1/me", headers=target["headers"])).status_code == 401
    await asyncio.sleep(1.05)
    fresh = await client.post("/v1/auth/refresh", json={"refresh_token": target["refresh_token"]})
    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {fresh.json()['access_token']}"})
    assert me.status_code == 200 and me.json()["role"] == "artist"


async def test_disabled_registration_revokes_access_tokens(api, client, redis, settings):
    from accounts import sessions
    from verseflow.events.outbox import Event

    user = await api.user()
    assert (await client.get("/v1/me", headers=user["headers"])).status_code == 200
    await asyncio.sleep(1.05)
    (handler,) = sessions.handlers(redis, settings)["user.registration_failed"]
    await handler(None, Event(type="user.registration_failed", payload={"user_id": user["id"]}))
    assert (await client.get("/v1/me", headers=user["headers"])).status_code == 401
