"""The first administrator: ``verseflow admin`` run as a real subprocess against the test database and
Redis, then the user's admin powers checked through the API. (Against ``make up``'s embedded servers,
joined while the platform runs and started while it does not: ``test_embedded_stack.py``.)"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import pytest

from accounts import service as accounts
from accounts.model import Role
from verseflow.errors import Forbidden
from verseflow.settings import Settings

ROOT = Path(__file__).parents[1]


async def verseflow(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the installed ``verseflow`` command (the pyproject entry point); exit code, stdout, stderr."""
    script = Path(sys.executable).with_name("verseflow")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "verseflow.cli"]
    proc = await asyncio.create_subprocess_exec(*command, *args, cwd=ROOT, env=env or dict(os.environ),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode, out.decode(), err.decode()


async def login(client, user: dict) -> dict:
    response = await client.post("/v1/auth/token", data={"username": user["email"], "password": user["password"]})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_the_first_administrator_is_granted_from_the_shell(api, client, pool, services):
    user, other = await api.user(), await api.user()
    promote = f"/v1/users/{other['id']}/role"
    assert (await client.put(promote, json={"role": "artist"}, headers=user["headers"])).status_code == 403

    code, out, err = await verseflow("admin", "grant", user["email"].upper())  # e-mails match case-insensitively
    assert code == 0, err
    assert out.startswith(f"{user['email']} is now an administrator")
    # the same role change as PUT /v1/users/{id}/role: its event, and the old token is cut off
    events = await pool.fetch("SELECT payload FROM outbox WHERE type = 'user.role_changed' AND aggregate_id = $1",
                              user["id"])
    assert [e["payload"]["role"] for e in events] == ["admin"]
    assert (await client.get("/v1/me", headers=user["headers"])).status_code == 401

    await asyncio.sleep(1.05)  # tokens carry whole-second iat; a new one must be issued after the cut-off
    admin = await login(client, user)
    assert (await client.get("/v1/me", headers=admin)).json()["role"] == "admin"
    promoted = await client.put(promote, json={"role": "artist"}, headers=admin)
    assert promoted.status_code == 200 and promoted.json()["role"] == "artist"

    code, out, _ = await verseflow("admin", "grant", user["email"])
    assert code == 0 and out.strip() == f"{user['email']} is already an administrator"
    code, out, _ = await verseflow("admin", "list")
    assert code == 0 and f"{user['email']}\t{user['id']}\t" in out

    code, out, err = await verseflow("admin", "revoke", user["email"], "--role", "artist")
    assert code == 0, err
    assert out.startswith(f"{user['email']} is no longer an administrator (now artist)")
    assert (await client.get("/v1/me", headers=admin)).status_code == 401
    await asyncio.sleep(1.05)
    refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
    headers = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    assert (await client.get("/v1/me", headers=headers)).json()["role"] == "artist"
    assert (await client.put(promote, json={"role": "listener"}, headers=headers)).status_code == 403
    code, out, _ = await verseflow("admin", "revoke", other["email"])  # an artist, not an admin: left alone
    assert code == 0 and out.strip() == f"{other['email']} is not an administrator (artist); nothing changed"


async def test_an_unknown_email_fails_with_a_reason(services):
    email = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    for action in ("grant", "revoke"):
        code, out, err = await verseflow("admin", action, email)
        assert (code, out) == (1, "")
        assert err.strip() == f"verseflow admin {action}: no account has the e-mail {email}"


async def test_without_urls_and_without_an_embedded_database_it_says_what_to_do(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERSEFLOW_")}
    env["VERSEFLOW_VAR_DIR"] = str(tmp_path / "var")
    code, out, err = await verseflow("admin", "list", env=env)
    assert (code, out) == (1, "")
    assert "no embedded database" in err and "make up" in err
    assert not (tmp_path / "var" / "postgres").exists()  # nothing was created


def test_admin_emails_are_read_comma_separated(monkeypatch):
    monkeypatch.setenv("VERSEFLOW_ADMIN_EMAILS", " Ops@Example.com, second@example.com ,")
    assert Settings().admin_emails == {"ops@example.com", "second@example.com"}
    monkeypatch.delenv("VERSEFLOW_ADMIN_EMAILS")
    assert Settings().admin_emails == frozenset()


async def test_a_listed_email_registers_as_administrator(pool, settings):
    listed = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    configured = settings.model_copy(update={"admin_emails": frozenset({listed})})
    admin = await accounts.register(pool, configured, email=listed.upper(), password="a long password",
                                    display_name="Ops", role=Role.LISTENER)
    assert admin.role is Role.ADMIN
    plain = await accounts.register(pool, configured, email=f"x-{listed}", password="a long password",
                                    display_name="X", role=Role.ARTIST)
    assert plain.role is Role.ARTIST
    with pytest.raises(Forbidden):  # asking for admin is still refused
        await accounts.register(pool, configured, email=listed + ".org", password="a long password",
                                display_name="Y", role=Role.ADMIN)
