"""A WebSocket client for the realtime protocol, shared by the tests that talk to /v1/ws."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed


class Client:
    """One socket; ``next(type)`` skips other message types (presence, pongs) unless asked for."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, url: str, token: str, **kwargs: Any) -> Client:
        client = cls(await websockets.connect(f"{url}?token={token}", **kwargs))
        ready = await client.next("ready")
        assert ready["session"]
        return client

    async def send(self, **message: Any) -> None:
        await self.ws.send(json.dumps(message, default=str))

    async def next(self, *types: str, timeout: float = 10) -> dict[str, Any]:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), deadline - time.monotonic()))
            self.seen.append(message)
            if not types or message["type"] in types:
                return message

    async def join(self, room: str, since: int | None = None) -> dict[str, Any]:
        await self.send(type="join", room=room, **({"since": since} if since is not None else {}))
        return await self.next("joined", "error")

    async def chats(self, count: int, timeout: float = 15) -> list[dict[str, Any]]:  # noqa: ASYNC109
        return [await self.next("chat", timeout=timeout) for _ in range(count)]

    async def close(self) -> None:
        await self.ws.close()


async def close_code(ws: websockets.ClientConnection, timeout: float = 10) -> tuple[int, str]:  # noqa: ASYNC109
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    return closed.value.rcvd.code, closed.value.rcvd.reason
