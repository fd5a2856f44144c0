"""Host links without Ray: the challenge, calls and their replies, deliveries, and a broken link."""

from __future__ import annotations

import asyncio

import pytest

from actors.host_link import HostFailure, HostLink, LinkDown, LinkServer, link_key
from rooms.fanout import Outboxes
from verseflow.errors import NotFound

pytestmark = pytest.mark.timeout(30)


class Target:
    """Stands in for a host actor: the methods a gateway may call."""

    def __init__(self) -> None:
        self.outboxes = Outboxes(limit=1000, on_lost=lambda gateway: None)

    async def join(self, gateway: str, conn: str, room: str) -> str:
        self.outboxes.put(gateway, ("joined", conn, f"joined {room}", 1, room))
        return "ok"

    async def leave(self, gateway: str, conn: str, room: str) -> None:
        raise NotFound("no such room")

    async def chat(self, gateway: str, conn: str, room: str) -> None:
        raise RuntimeError("a bug in the host")

    async def stats(self) -> dict:  # a real method, but not one a link may call
        return {}


async def _serve(secret: str = "the secret") -> tuple[Target, LinkServer, tuple[str, int]]:
    target = Target()
    server = LinkServer(target, target.outboxes, link_key(secret))
    return target, server, await server.start("127.0.0.1")


def _link(address, secret: str, delivered: list, subscribed: list) -> HostLink:
    async def where() -> tuple[str, int]:
        return address

    return HostLink("test host", "gw-1", link_key(secret), where, delivered.extend, subscribed.append)


async def test_calls_answer_on_the_link_after_what_they_delivered():
    _, _, address = await _serve()
    delivered, subscribed = [], []
    link = _link(address, "the secret", delivered, subscribed)
    runner = asyncio.ensure_future(link.run())
    await asyncio.wait_for(link.up.wait(), 5)
    assert subscribed == [True]

    assert await link.call("join", ("gw-1", "c1", "r1")) == "ok"
    assert delivered == [("joined", "c1", "joined r1", 1, "r1")]  # delivered before the call returned
    with pytest.raises(NotFound):
        await link.call("leave", ("gw-1", "c1", "r1"))
    with pytest.raises(HostFailure, match="RuntimeError: a bug in the host"):
        await link.call("chat", ("gw-1", "c1", "r1"))
    with pytest.raises(HostFailure, match="cannot be called"):
        await link.call("stats", ())
    results = await asyncio.gather(*(link.call("join", ("gw-1", f"c{i}", "r")) for i in range(50)))
    assert results == ["ok"] * 50 and link.stats()["frames_out"] < link.stats()["calls"]
    runner.cancel()


async def test_a_gateway_without_the_key_is_refused_before_anything_is_read():
    target, _, address = await _serve()
    reader, writer = await asyncio.open_connection(*address)
    await reader.readexactly(16)  # the nonce
    name = b"gw-evil"
    writer.write(len(name).to_bytes(4, "big") + name + b"\0" * 32)  # a wrong proof
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, no subscription frame
    assert not target.outboxes.has("gw-evil")

    delivered, subscribed = [], []
    link = _link(address, "another secret", delivered, subscribed)
    runner = asyncio.ensure_future(link.run())
    await asyncio.sleep(0.3)
    assert not link.up.is_set() and subscribed == []
    with pytest.raises(LinkDown):
        link.call("join", ("gw-1", "c1", "r1"))
    runner.cancel()


async def test_a_broken_link_fails_waiting_calls_and_reconnects_with_a_resync():
    target, server, address = await _serve()
    delivered, subscribed = [], []
    link = _link(address, "the secret", delivered, subscribed)
    runner = asyncio.ensure_future(link.run())
    await asyncio.wait_for(link.up.wait(), 5)

    gate = asyncio.Event()

    async def slow_join(gateway: str, conn: str, room: str) -> str:
        await gate.wait()
        return "late"

    target.join = slow_join
    waiting = link.call("join", ("gw-1", "c1", "r1"))
    await asyncio.sleep(0.05)
    for _ in range(1001):  # the gateway's outbox overflows: the host cuts it
        target.outboxes.put("gw-1", ("room", "r1", "x", 0, None))
    with pytest.raises(LinkDown):
        await waiting
    await asyncio.wait_for(link.up.wait(), 5)  # reconnected...
    assert subscribed == [True, False]  # ...and told the gateway to resync
    gate.set()
    runner.cancel()
