"""Live rooms over REST: create, read (with who is online), invite, kick; where to open sockets.

Online members come from the room's host actor, and role changes and kicks go to it once committed,
so they hold at once for members already in the room. When Ray is not running (the API served by
plain uvicorn) rooms still work as data, ``online`` is empty and a role counts from the next join.
"""

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from typing import Annotated

import ray
from fastapi import APIRouter, Query, Request, Response, status
from ray import ObjectRef
from ray.actor import ActorHandle

from actors.edge import edge_urls
from actors.room_host import room_host_for
from rooms import service
from rooms.model import RoomRole
from rooms.placement import host_index
from serve_deployments.deps import Ctx, CurrentUser
from serve_deployments.schemas import ChatPageOut, RealtimeOut, RoomIn, RoomMemberIn, RoomOut, RoomRoleOut
from verseflow import logs
from verseflow.settings import Settings

router = APIRouter(prefix="/v1", tags=["rooms"])
log = logs.get_logger("routes.rooms")


@router.post("/rooms", status_code=status.HTTP_201_CREATED, response_model=RoomOut)
async def create_room(body: RoomIn, ctx: Ctx, who: CurrentUser):
    """Create a room; the caller becomes its host. Join it over ``/v1/ws`` with ``{"type": "join"}``."""
    return await service.create_room(ctx.pool, who, name=body.name, visibility=body.visibility)


@router.get("/rooms/{room_id}", response_model=RoomOut)
async def read_room(room_id: uuid.UUID, ctx: Ctx, who: CurrentUser):
    """The room, its members with roles, and who is online now (users with their device count)."""
    room = await service.get_room(ctx.pool, who, room_id)
    room["online"] = []
    if ray.is_initialized():
        with contextlib.suppress(ray.exceptions.RayError):
            room["online"] = await room_host_for(ctx.settings, room_id).online.remote(room_id)
    return room


@router.get("/rooms/{room_id}/messages", response_model=ChatPageOut)
async def chat_history(
    room_id: uuid.UUID, ctx: Ctx, who: CurrentUser,
    before: Annotated[int | None, Query(ge=1, le=2**62, description="only messages with a lower seq")] = None,
    limit: Annotated[int, Query(ge=1, description="at most VERSEFLOW_ROOM_CHAT_PAGE_MAX")] = 50,
):
    """The room's chat, newest page first: the last ``limit`` messages (before ``before``), oldest first.

    Open a room on this page, then ask for ``before=older`` to read further back.
    """
    return await service.chat_history(ctx.pool, who, room_id, before=before,
                                      limit=min(limit, ctx.settings.room_chat_page_max))


@router.put("/rooms/{room_id}/members/{user_id}", response_model=RoomRoleOut)
async def invite(room_id: uuid.UUID, user_id: uuid.UUID, body: RoomMemberIn, ctx: Ctx, who: CurrentUser):
    """Invite a user (or change their role): host only. Private rooms admit only invited users.

    A member already in the room gets the new role at once (documented in docs/realtime.md: the room
    hears a ``role`` event, and their document socket gains or loses the right to edit)."""
    changed = await service.set_member_role(ctx.pool, who, room_id, user_id, RoomRole(body.role))
    await _tell_room_host(ctx.settings, room_id, "set_role", lambda host: host.set_role.remote(room_id, user_id))
    return changed


@router.delete("/rooms/{room_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT,
               response_class=Response)
async def kick(room_id: uuid.UUID, user_id: uuid.UUID, ctx: Ctx, who: CurrentUser) -> None:
    """Kick and ban a user: their sockets leave the room at once and they cannot rejoin."""
    await service.kick(ctx.pool, who, room_id, user_id)
    await _tell_room_host(ctx.settings, room_id, "kick", lambda host: host.kick.remote(room_id, user_id))


async def _tell_room_host(settings: Settings, room_id: uuid.UUID, what: str,
                          call: Callable[[ActorHandle], ObjectRef]) -> None:
    """Apply a committed membership change (``call`` on the room's host) to the room's live sockets.

    The database already holds the change, so a host that cannot be reached is not an error for
    the caller: a host restarted by Ray has forgotten its rooms, and its gateways' rejoins read
    every role afresh. The host's handle is looked up off the event loop (the first lookup in a
    process asks Ray's control store, a blocking call)."""
    if not ray.is_initialized():
        return
    try:
        host = await asyncio.to_thread(room_host_for, settings, room_id)
        await call(host)
    except ray.exceptions.RayError as exc:
        log.warning("room %s: host unreachable for %s (%s); members get it when they rejoin", room_id, what, exc)


@router.get("/realtime", response_model=RealtimeOut)
async def realtime(request: Request, ctx: Ctx, who: CurrentUser):
    """WebSocket endpoints for this client: an edge (spread by user) and Serve's own ``/v1/ws``."""
    scheme = "wss" if request.url.scheme == "https" else "ws"
    base = f"{scheme}://{request.headers.get('host', request.url.netloc)}"
    edges = await edge_urls() if ray.is_initialized() else []
    edge = edges[host_index(str(who.user_id), len(edges))] if edges else None
    return {"serve": f"{base}/v1/ws", "edge": edge, "edges": edges, "documents": f"{base}/v1/yjs"}
