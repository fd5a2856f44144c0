"""The ceiling of ``bench/realtime.py``: the simplest fast WebSocket broadcast server, one process.

    VERSEFLOW_JWT_SECRET=... python -m bench.ceiling_server PORT

The platform's room protocol, nothing more: ``?token=<JWT>`` checked at the handshake's end (a bad one
closes with 4401, as the platform does), ``join`` answered by ``joined`` (``members`` left empty),
``chat`` numbered per room and pushed with one ``websockets.broadcast`` call to the room's set of
connections, ``ping`` answered by ``pong``. No storage, no presence, no rate limit, no idle timeout
beyond websockets' own keepalive: what the platform's realtime edge would cost if it did nothing but
fan out, so that ``realtime.py`` can report the edge as a fraction of it. websockets.asyncio on the
default asyncio loop and the standard library's json, as the obvious implementation would be.

Runs until SIGINT or SIGTERM; prints ``listening on PORT`` once it accepts connections.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections import defaultdict
from urllib.parse import parse_qs, urlsplit

import jwt
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

SECRET = os.environ.get("VERSEFLOW_JWT_SECRET", "")
ISSUER = os.environ.get("VERSEFLOW_JWT_ISSUER", "verseflow")
PATH = "/v1/ws"

rooms: dict[str, set[ServerConnection]] = defaultdict(set)
sequences: dict[str, int] = defaultdict(int)
dumps = json.JSONEncoder(separators=(",", ":")).encode


def _user(connection: ServerConnection) -> str | None:
    """The token's subject, or None when it is missing, forged, expired or from another issuer."""
    url = urlsplit(connection.request.path)
    token = parse_qs(url.query).get("token", [""])[0]
    if url.path != PATH or not token:
        return None
    try:
        return str(jwt.decode(token, SECRET, algorithms=["HS256"], issuer=ISSUER)["sub"])
    except (jwt.InvalidTokenError, KeyError):
        return None


async def handler(connection: ServerConnection) -> None:
    user = _user(connection)
    if user is None:
        await connection.close(4401, "unauthorized")
        return
    joined: set[str] = set()
    try:
        async for raw in connection:
            try:
                message = json.loads(raw)
                kind = message["type"]
            except (ValueError, TypeError, KeyError):
                await connection.send('{"type":"error","code":"bad_message"}')
                continue
            if kind == "chat":
                room = message.get("room")
                if room not in joined:
                    await connection.send(dumps({"type": "error", "code": "not_joined", "room": room}))
                    continue
                sequences[room] += 1
                broadcast(rooms[room], dumps({
                    "type": "chat", "room": room, "seq": sequences[room], "from": user,
                    "text": str(message.get("text", "")), "ts": int(time.time() * 1000),
                }))
            elif kind == "join":
                room = str(message.get("room"))
                rooms[room].add(connection)
                joined.add(room)
                await connection.send(dumps({"type": "joined", "room": room, "seq": sequences[room], "members": []}))
            elif kind == "leave":
                room = str(message.get("room"))
                rooms[room].discard(connection)
                joined.discard(room)
            elif kind == "ping":
                await connection.send('{"type":"pong"}')
    except ConnectionClosed:
        pass
    finally:
        for room in joined:
            members = rooms[room]
            members.discard(connection)
            if not members:
                del rooms[room]


async def main(port: int) -> None:
    if not SECRET:
        raise SystemExit("VERSEFLOW_JWT_SECRET is not set")
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
    async with serve(handler, "127.0.0.1", port, compression=None):
        print(f"listening on {port}", flush=True)
        try:
            await stop
        except asyncio.CancelledError:
            pass


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
