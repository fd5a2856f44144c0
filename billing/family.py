"""Family plans: the owner of a ``family`` subscription shares it with up to five other accounts.

Seats are given by invitation, never by naming an account: the owner creates a single-use code (shown
once, stored as its SHA-256, valid ``family_invite_ttl_s``) and passes it on; the person who redeems
it joins. Nobody can be added to a family without acting themselves, and an e-mail address never
reveals whether it has an account.

What a member may stream is not stored here: ``subscriptions.plan_of`` reads the membership and the
owner's own subscription at each stream grant, so a lapsed, downgraded or cancelled family plan takes
every member back to ``free`` at once, and a renewed one gives them their seats back. Joins, leaves
and removals are outbox events (``billing.family_changed``); their consumer tells the member's open
sessions which rungs they may now use.

Rules, checked under a per-family advisory lock so concurrent joins cannot overfill it:
- only an owner whose own subscription grants ``family`` invites, and a code is redeemable only while
  it still does;
- the owner counts as one of ``family_members_max`` seats;
- an account belongs to at most one family, and the owner of a family with members joins no other.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from accounts.model import Principal
from billing import entitlements, subscriptions
from billing.entitlements import FAMILY
from verseflow import logs
from verseflow.db import transaction
from verseflow.errors import Conflict, NotFound
from verseflow.events.outbox import Event, emit
from verseflow.settings import Settings

log = logs.get_logger(__name__)

Notify = Callable[[uuid.UUID, str, dict[str, Any]], Awaitable[object]]


@dataclass(frozen=True)
class Invite:
    code: str  # shown once, never stored in clear
    expires_at: datetime


@dataclass(frozen=True)
class Member:
    user_id: uuid.UUID
    display_name: str
    joined_at: datetime


@dataclass(frozen=True)
class Family:
    """A family as one of its people sees it (``role``: ``owner`` or ``member``)."""

    role: str
    owner_id: uuid.UUID
    owner_name: str
    plan_active: bool  # the owner's own subscription grants ``family`` now
    members: list[Member]
    seats_max: int

    @property
    def seats_used(self) -> int:
        return 1 + len(self.members)


def _hash(code: str) -> bytes:
    return hashlib.sha256(code.strip().lower().encode()).digest()


def _new_code() -> str:
    """160 random bits as 32 lower-case base32 characters: easy to read out or paste."""
    return base64.b32encode(secrets.token_bytes(20)).decode().lower()


async def _lock(conn: asyncpg.Connection, owner_id: uuid.UUID) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('family:' || $1::uuid::text))", owner_id)


async def _has_family_plan(conn: asyncpg.Connection, settings: Settings, user_id: uuid.UUID) -> bool:
    return await subscriptions.own_plan(conn, settings, user_id) == FAMILY


async def invite(pool: asyncpg.Pool, settings: Settings, who: Principal) -> Invite:
    """A single-use code for one more seat in the caller's family (409 without a family plan or seats)."""
    async with transaction(pool) as conn:
        await _lock(conn, who.user_id)
        if not await _has_family_plan(conn, settings, who.user_id):
            raise Conflict("inviting needs an active family plan: subscribe to it or change to it first")
        members = await conn.fetchval("SELECT count(*) FROM family_members WHERE owner_id = $1", who.user_id)
        if 1 + members >= settings.family_members_max:
            raise Conflict(f"the family has its {settings.family_members_max} seats taken; remove a member first")
        await conn.execute("DELETE FROM family_invites WHERE owner_id = $1 AND expires_at <= now()", who.user_id)
        pending = await conn.fetchval("SELECT count(*) FROM family_invites WHERE owner_id = $1", who.user_id)
        if pending >= settings.family_members_max:
            raise Conflict("too many invitations are waiting; let some be redeemed or expire first")
        code = _new_code()
        expires_at = datetime.now(UTC) + timedelta(seconds=settings.family_invite_ttl_s)
        await conn.execute("INSERT INTO family_invites (code_hash, owner_id, expires_at) VALUES ($1, $2, $3)",
                           _hash(code), who.user_id, expires_at)
    return Invite(code=code, expires_at=expires_at)


async def join(pool: asyncpg.Pool, settings: Settings, who: Principal, *, code: str) -> Family:
    """Redeem an invitation: the caller takes a seat in its owner's family and streams under it."""
    async with transaction(pool) as conn:
        owner_id = await conn.fetchval(
            "SELECT owner_id FROM family_invites WHERE code_hash = $1 AND expires_at > now()", _hash(code))
        if owner_id is None:
            raise NotFound("no such invitation, or it has expired or been used")
        if owner_id == who.user_id:
            raise Conflict("this is your own family's invitation: give it to the person you invite")
        await _lock(conn, owner_id)
        if await conn.fetchval("SELECT owner_id FROM family_members WHERE member_id = $1", who.user_id):
            raise Conflict("you are already in a family; leave it before joining another")
        if await conn.fetchval("SELECT 1 FROM family_members WHERE owner_id = $1 LIMIT 1", who.user_id):
            raise Conflict("you own a family with members; remove them before joining another")
        if not await _has_family_plan(conn, settings, owner_id):
            raise Conflict("the family plan of this invitation is not active")
        members = await conn.fetchval("SELECT count(*) FROM family_members WHERE owner_id = $1", owner_id)
        if 1 + members >= settings.family_members_max:
            raise Conflict(f"the family has its {settings.family_members_max} seats taken")
        used = await conn.execute("DELETE FROM family_invites WHERE code_hash = $1 AND owner_id = $2",
                                  _hash(code), owner_id)
        if used != "DELETE 1":  # redeemed by someone else while we waited for the lock
            raise NotFound("no such invitation, or it has expired or been used")
        await conn.execute("INSERT INTO family_members (member_id, owner_id) VALUES ($1, $2)", who.user_id, owner_id)
        await emit(conn, "billing.family_changed", who.user_id, user_id=who.user_id, owner_id=owner_id,
                   change="joined")
        return await _view(conn, settings, owner_id, role="member")


async def remove(pool: asyncpg.Pool, who: Principal, member_id: uuid.UUID) -> None:
    """The owner takes a member's seat back (404 for anyone not in the caller's family)."""
    async with transaction(pool) as conn:
        gone = await conn.execute("DELETE FROM family_members WHERE owner_id = $1 AND member_id = $2",
                                  who.user_id, member_id)
        if gone != "DELETE 1":
            raise NotFound("no such member in your family")
        await emit(conn, "billing.family_changed", member_id, user_id=member_id, owner_id=who.user_id,
                   change="removed")


async def leave(pool: asyncpg.Pool, who: Principal) -> None:
    """A member gives up their seat."""
    async with transaction(pool) as conn:
        owner_id = await conn.fetchval("DELETE FROM family_members WHERE member_id = $1 RETURNING owner_id",
                                       who.user_id)
        if owner_id is None:
            raise NotFound("you are not a member of a family")
        await emit(conn, "billing.family_changed", who.user_id, user_id=who.user_id, owner_id=owner_id,
                   change="left")


async def family_of(pool: asyncpg.Pool, settings: Settings, who: Principal) -> Family:
    """The caller's family, as its owner (a family plan or members) or as a member; 404 otherwise."""
    async with pool.acquire() as conn:
        owner_id = await conn.fetchval("SELECT owner_id FROM family_members WHERE member_id = $1", who.user_id)
        if owner_id is not None:
            return await _view(conn, settings, owner_id, role="member")
        owns = await conn.fetchval("SELECT 1 FROM family_members WHERE owner_id = $1 LIMIT 1", who.user_id)
        if owns or await _has_family_plan(conn, settings, who.user_id):
            return await _view(conn, settings, who.user_id, role="owner")
    raise NotFound("you are in no family: subscribe to the family plan, or redeem an invitation")


async def member_ids(conn: asyncpg.Connection | asyncpg.Pool, owner_id: uuid.UUID) -> list[uuid.UUID]:
    return [r["member_id"] for r in await conn.fetch("SELECT member_id FROM family_members WHERE owner_id = $1",
                                                       owner_id)]


async def _view(conn: asyncpg.Connection, settings: Settings, owner_id: uuid.UUID, *, role: str) -> Family:
    owner_name = await conn.fetchval("SELECT display_name FROM users WHERE id = $1", owner_id)
    rows = await conn.fetch(
        """SELECT m.member_id, u.display_name, m.joined_at FROM family_members m JOIN users u ON u.id = m.member_id
           WHERE m.owner_id = $1 ORDER BY m.joined_at, m.member_id""", owner_id)
    return Family(role=role, owner_id=owner_id, owner_name=owner_name or "",
                  plan_active=await _has_family_plan(conn, settings, owner_id),
                  members=[Member(r["member_id"], r["display_name"], r["joined_at"]) for r in rows],
                  seats_max=settings.family_members_max)


def plan_notice(plan: str, **extra: Any) -> dict[str, Any]:
    """The ``subscription.changed`` notify's data: the plan now granted and the rungs it opens."""
    rungs = entitlements.PLAN_RUNGS.get(plan, entitlements.STANDARD_RUNGS)
    return {"plan": plan, "rungs": sorted(rungs), **extra}


def handlers(settings: Settings, notify: Notify) -> dict[str, list[Callable[[asyncpg.Connection, Event],
                                                                             Awaitable[None]]]]:
    """Event consumer: a member who joined, left or was removed hears their new plan at once."""

    async def on_family_changed(conn: asyncpg.Connection, event: Event) -> None:
        user_id = uuid.UUID(event.payload["user_id"])
        plan = await subscriptions.plan_of(conn, settings, user_id)
        try:
            await notify(user_id, "subscription.changed", plan_notice(plan, family=event.payload["change"]))
        except Exception:  # noqa: BLE001 - best effort: a user with no session, or hosts restarting
            log.warning("could not notify a family change", extra={"user_id": str(user_id)})

    return {"billing.family_changed": [on_family_changed]}
