"""Family plans end to end: the real ``stripe`` SDK against the local Stripe server, the app in process on
real PostgreSQL. An owner's family subscription gives its seats to the accounts that redeem the owner's
invitations; what they may stream follows the owner's plan at every grant."""

# ruff: noqa: F811 - the tests take the imported billing fixtures as arguments, which pytest matches by name
from __future__ import annotations

import asyncio
import uuid

from billing import subscriptions
from tests.test_billing import (  # noqa: F401 - the billing module's fixtures, reused as they are
    billing_app,
    billing_settings,
    http,
    listener,
    sdk,
    stripe_server,
)


async def _subscribe(http, user, plan: str) -> None:
    made = await http.post("/v1/billing/subscription", json={"plan": plan, "payment_method": "pm_card_visa"},
                           headers=user["headers"])
    assert made.status_code == 200, made.text


async def _invite(http, owner) -> str:
    made = await http.post("/v1/me/family/invites", headers=owner["headers"])
    assert made.status_code == 201, made.text
    return made.json()["code"]


async def _plan(pool, settings, user) -> str:
    return await subscriptions.plan_of(pool, settings, uuid.UUID(user["id"]))


async def test_an_invited_member_streams_under_the_owners_family_plan(http, pool, billing_settings):
    owner, member = await listener(http), await listener(http)
    await _subscribe(http, owner, "family")
    code = await _invite(http, owner)
    assert await _plan(pool, billing_settings, member) == "free"
    joined = await http.post("/v1/me/family/join", json={"code": code}, headers=member["headers"])
    assert joined.status_code == 200, joined.text
    view = joined.json()
    assert (view["role"], view["owner_id"], view["plan_active"]) == ("member", owner["id"], True)
    assert [m["user_id"] for m in view["members"]] == [member["id"]] and view["seats_used"] == 2
    assert await _plan(pool, billing_settings, member) == "family"
    assert (await http.get("/v1/me/family", headers=owner["headers"])).json()["role"] == "owner"
    again = await http.post("/v1/me/family/join", json={"code": code}, headers=(await listener(http))["headers"])
    assert again.status_code == 404  # single use

    # the owner drops to premium: the seat stays listed, but the member streams as free at once
    down = await http.patch("/v1/billing/subscription", json={"plan": "premium"}, headers=owner["headers"])
    assert down.status_code == 200, down.text
    assert await _plan(pool, billing_settings, member) == "free"
    assert await _plan(pool, billing_settings, owner) == "premium"
    seen = (await http.get("/v1/me/family", headers=member["headers"])).json()
    assert seen["plan_active"] is False and len(seen["members"]) == 1
    refused = await http.post("/v1/me/family/invites", headers=owner["headers"])
    assert refused.status_code == 409  # premium has no seats to give


async def test_seats_are_capped_even_when_the_last_is_claimed_concurrently(http, pool, billing_settings):
    owner = await listener(http)
    await _subscribe(http, owner, "family")
    seats = billing_settings.family_members_max
    for _ in range(seats - 2):  # every seat but one taken
        person = await listener(http)
        joined = await http.post("/v1/me/family/join", json={"code": await _invite(http, owner)},
                                 headers=person["headers"])
        assert joined.status_code == 200, joined.text
    codes = [await _invite(http, owner), await _invite(http, owner)]  # two invitations, one seat left
    rivals = [await listener(http), await listener(http)]
    answers = await asyncio.gather(*[http.post("/v1/me/family/join", json={"code": c}, headers=r["headers"])
                                     for c, r in zip(codes, rivals, strict=True)])
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    assert (await http.get("/v1/me/family", headers=owner["headers"])).json()["seats_used"] == seats
    full = await http.post("/v1/me/family/invites", headers=owner["headers"])
    assert full.status_code == 409 and "seats" in full.json()["detail"]


async def test_only_the_owner_removes_a_member_and_a_member_may_leave(http, pool, billing_settings):
    owner, member, stranger = await listener(http), await listener(http), await listener(http)
    await _subscribe(http, owner, "family")
    await _subscribe(http, stranger, "family")
    await http.post("/v1/me/family/join", json={"code": await _invite(http, owner)}, headers=member["headers"])
    not_theirs = await http.delete(f"/v1/me/family/members/{member['id']}", headers=stranger["headers"])
    assert not_theirs.status_code == 404  # another family's owner cannot touch this seat
    assert await _plan(pool, billing_settings, member) == "family"
    elsewhere = await http.post("/v1/me/family/join", json={"code": await _invite(http, stranger)},
                                headers=member["headers"])
    assert elsewhere.status_code == 409  # one family at a time
    removed = await http.delete(f"/v1/me/family/members/{member['id']}", headers=owner["headers"])
    assert removed.status_code == 204
    assert await _plan(pool, billing_settings, member) == "free"
    assert (await http.get("/v1/me/family", headers=member["headers"])).status_code == 404

    await http.post("/v1/me/family/join", json={"code": await _invite(http, owner)}, headers=member["headers"])
    assert (await http.delete("/v1/me/family/membership", headers=member["headers"])).status_code == 204
    assert (await http.delete("/v1/me/family/membership", headers=member["headers"])).status_code == 404
    changes = await pool.fetch("SELECT payload->>'change' AS change FROM outbox WHERE type = 'billing.family_changed'"
                               " AND aggregate_id = $1 ORDER BY seq", member["id"])
    assert [r["change"] for r in changes] == ["joined", "removed", "joined", "left"]


async def test_bad_invitations_are_refused_clearly(http):
    owner, other = await listener(http), await listener(http)
    assert (await http.post("/v1/me/family/invites", headers=owner["headers"])).status_code == 409  # no plan
    assert (await http.get("/v1/me/family", headers=owner["headers"])).status_code == 404
    await _subscribe(http, owner, "family")
    code = await _invite(http, owner)
    own = await http.post("/v1/me/family/join", json={"code": code}, headers=owner["headers"])
    assert own.status_code == 409
    malformed = await http.post("/v1/me/family/join", json={"code": "not a code!"}, headers=other["headers"])
    assert malformed.status_code == 422
    unknown = await http.post("/v1/me/family/join", json={"code": "a" * 32}, headers=other["headers"])
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("application/problem+json")
    assert (await http.post("/v1/me/family/join", json={"code": code.upper()},  # typed in capitals
                            headers=other["headers"])).status_code == 200


async def test_the_members_hear_when_the_owners_plan_changes(http, pool, billing_settings):
    from verseflow.events.outbox import Event

    owner, member = await listener(http), await listener(http)
    await _subscribe(http, owner, "family")
    await http.post("/v1/me/family/join", json={"code": await _invite(http, owner)}, headers=member["headers"])
    await http.patch("/v1/billing/subscription", json={"plan": "premium"}, headers=owner["headers"])
    row = await pool.fetchrow("SELECT * FROM outbox WHERE type = 'billing.subscription_changed' AND aggregate_id = $1"
                              " ORDER BY seq DESC LIMIT 1", owner["id"])
    told = []

    async def notify(user_id, event, data):  # the port actors.room_host.notify_user fills in the event worker
        told.append((str(user_id), event, data))

    handler = subscriptions.handlers(billing_settings, notify)["billing.subscription_changed"][0]
    async with pool.acquire() as conn:
        await handler(conn, Event(type=row["type"], payload=row["payload"], aggregate_id=row["aggregate_id"]))
    by_user = {user_id: data for user_id, _, data in told}
    assert by_user[owner["id"]]["plan"] == "premium"
    assert by_user[member["id"]]["plan"] == "free" and "aac256" not in by_user[member["id"]]["rungs"]
