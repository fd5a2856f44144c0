"""Room documents: the y-websocket protocol in rooms.yjs, their log in PostgreSQL, and stock clients.

The pure tests use pycrdt documents as clients exchanging real protocol frames with the server
object; the interop test runs the npm yjs + y-websocket clients browsers use against a small
websockets server wired exactly the way the room gateway is (greeting, receive, reply/broadcast,
disconnect).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from urllib.parse import parse_qs, urlsplit

import pytest
import websockets
from pycrdt import (
    Doc,
    create_awareness_message,
    create_sync_message,
    create_update_message,
    read_message,
    write_message,
    write_var_uint,
)
from websockets.asyncio.server import ServerConnection, serve

from rooms import yjs_store
from rooms.yjs import READ_ONLY_REASON, InvalidFrame, Reaction, SharedDocument
from tests.yjs_support import FakeClient, run_peers

# --------------------------------------------------------------------------- pure: fake clients


class Room:
    """The server object and its clients, with the gateway's delivery rules and a persisted log."""

    def __init__(self, server: SharedDocument | None = None) -> None:
        self.server = server or SharedDocument()
        self.clients: dict[str, FakeClient] = {}
        self.persisted: list[bytes] = []
        self.queue: deque[tuple[bool, str, bytes]] = deque()  # (to the server?, conn, frame)

    def join(self, conn_id: str, **kwargs) -> FakeClient:
        client = FakeClient(conn_id, **kwargs)
        self.clients[conn_id] = client
        self.queue.extend((False, conn_id, frame) for frame in self.server.greeting())
        self.send(conn_id, create_sync_message(client.doc))  # what y-websocket sends on open
        return client

    def send(self, conn_id: str, frame: bytes) -> None:
        self.queue.append((True, conn_id, frame))

    def leave(self, conn_id: str) -> None:
        del self.clients[conn_id]
        self._broadcast(conn_id, self.server.disconnect(conn_id))

    def _broadcast(self, sender: str, frames: list[bytes]) -> None:
        self.queue.extend((False, other, f) for other in self.clients if other != sender for f in frames)

    def run(self) -> None:
        while self.queue:
            to_server, conn_id, frame = self.queue.popleft()
            if conn_id not in self.clients:
                continue
            if to_server:
                reaction = self.server.receive(conn_id, frame, can_write=self.clients[conn_id].can_write)
                if reaction.update is not None:
                    self.persisted.append(reaction.update)
                self.queue.extend((False, conn_id, f) for f in reaction.reply)
                self._broadcast(conn_id, reaction.broadcast)
            else:
                self.queue.extend((True, conn_id, f) for f in self.clients[conn_id].handle(frame))


def test_two_clients_converge_through_the_server():
    room = Room()
    alice, bob = room.join("a"), room.join("b")
    room.run()
    assert room.persisted == []  # fresh clients' step 2 answers carry nothing
    room.send("a", alice.edit("alice"))
    room.send("b", bob.edit("bob"))  # concurrent: neither has seen the other's edit
    room.run()
    state = room.server.to_json()
    assert sorted(t["track"] for t in state["playlist"]) == ["alice", "bob"]
    assert sorted(state["notes"].split(";")) == ["", "alice", "bob"]
    assert alice.to_json() == bob.to_json() == state
    assert len(room.persisted) == 2


def _room_with_alice() -> tuple[Room, FakeClient]:
    """A room whose document alice has edited and where she has announced herself."""
    room = Room()
    alice = room.join("a")
    room.run()
    room.send("a", alice.edit("alice"))
    room.send("a", alice.announce({"user": "alice"}))
    room.run()
    return room, alice


def test_a_late_client_gets_everything_and_hands_over_its_offline_edits():
    room, alice = _room_with_alice()

    greeting = room.server.greeting()
    assert len(greeting) == 2 and greeting[0][:2] == b"\x00\x00" and greeting[1][0] == 1  # step 1, who is here

    offline = Doc()  # edited before connecting, e.g. a browser coming back online
    offline_client = FakeClient("tmp", doc=offline)
    offline_client.edit("carol")
    carol = room.join("c", doc=offline)
    room.run()
    assert carol.to_json() == alice.to_json() == room.server.to_json()
    assert sorted(t["track"] for t in room.server.to_json()["playlist"]) == ["alice", "carol"]
    assert carol.awareness.states[alice.doc.client_id] == {"user": "alice"}
    assert len(room.persisted) == 2  # carol's step 2, answering the greeting, was persisted


def _room_where_a_reader_edited(name: str) -> tuple[Room, FakeClient, FakeClient]:
    """A writer and a read-only client, connected; the reader has sent an edit adding ``name``."""
    room = Room()
    alice, reader = room.join("a"), room.join("r", can_write=False)
    room.run()
    room.send("r", reader.edit(name))
    room.run()
    return room, alice, reader


def test_a_read_only_client_edits_nothing_but_hears_everything():
    room, alice, reader = _room_where_a_reader_edited("intruder")
    assert room.server.to_json() == {"playlist": [], "notes": ""}
    assert alice.to_json() == {"playlist": [], "notes": ""}
    assert room.persisted == []
    assert reader.denied == [READ_ONLY_REASON]

    room.send("a", alice.edit("alice"))
    room.run()
    assert {"track": "alice"} in reader.to_json()["playlist"]


def _delete_first_note_char(client: FakeClient) -> bytes:
    before = client.doc.get_state()
    del client.notes[0:1]
    return create_update_message(client.doc.get_update(before))


def test_a_read_only_edit_is_refused_aloud_once_per_connection():
    room, alice = _room_with_alice()
    room.send("a", _delete_first_note_char(alice))  # the document now has a delete set
    room.run()
    shared, persisted = room.server.to_json(), len(room.persisted)
    first = room.join("r", can_write=False)
    room.run()
    # Reconnecting with the same Y.Doc (as y-websocket does), its step 2 repeats the deletion it was
    # sent: that changes nothing, so it is not an edit.
    room.leave("r")
    reader = room.join("r", can_write=False, doc=first.doc)
    room.run()
    everything = bytes([0, 1]) + write_message(reader.doc.get_update())
    assert room.server.receive("r", everything, can_write=False) == Reaction()
    assert reader.denied == [] and len(room.persisted) == persisted

    refusal = room.server.receive("r", reader.edit("intruder"), can_write=False, read_only_reason="lecture seule ✋")
    reason = "lecture seule ✋".encode()
    assert refusal == Reaction(reply=[bytes([2, 0, len(reason)]) + reason])  # varString counts UTF-8 bytes
    assert room.server.to_json() == shared and len(room.persisted) == persisted
    assert room.server.receive("r", reader.edit("again"), can_write=False) == Reaction()  # once per connection
    assert room.server.receive("r", _delete_first_note_char(reader), can_write=False) == Reaction()
    assert room.server.to_json() == shared

    # A new connection is told again, and an edit that only deletes is an edit too.
    room.leave("r")
    second = room.join("r2", can_write=False)
    room.run()
    room.send("r2", _delete_first_note_char(second))
    room.send("r2", _delete_first_note_char(second))
    room.run()
    assert second.denied == [READ_ONLY_REASON]
    assert room.server.to_json() == shared == alice.to_json() and len(room.persisted) == persisted
    # A writer's delete-only update is applied, never refused.
    assert room.server.receive("a", _delete_first_note_char(alice), can_write=True).reply == []
    assert room.server.to_json() == alice.to_json() != shared


def test_a_connection_whose_permission_changes_while_open_converges_and_is_refused_aloud_again():
    room, alice, reader = _room_where_a_reader_edited("while read-only")
    assert reader.denied == [READ_ONLY_REASON] and room.persisted == []

    # Promoted: our step 1 again, answered with what we lack (the refused edit), then its own edits
    # apply instead of waiting for predecessors that were dropped.
    reader.can_write = True
    (step1,) = room.server.permission_changed("r", True)
    assert step1[:2] == b"\x00\x00"
    room.queue.append((False, "r", step1))
    room.run()
    room.send("r", reader.edit("as editor"))
    room.run()
    assert [t["track"] for t in room.server.to_json()["playlist"]] == ["while read-only", "as editor"]
    assert alice.to_json() == reader.to_json() == room.server.to_json()

    # Demoted: nothing to send, and the next refused edit is explained again.
    reader.can_write = False
    assert room.server.permission_changed("r", False) == []
    shared = room.server.to_json()
    room.send("r", reader.edit("demoted"))
    room.run()
    assert reader.denied == [READ_ONLY_REASON, READ_ONLY_REASON]
    assert room.server.to_json() == shared == alice.to_json()


def test_awareness_announce_query_and_disconnect():
    room = Room()
    alice, bob = room.join("a"), room.join("b")
    room.run()
    room.send("a", alice.announce({"user": "alice"}))
    room.run()
    assert bob.awareness.states[alice.doc.client_id] == {"user": "alice"}

    # a late client learns who is here from the greeting, and again when it asks
    carol = room.join("c")
    room.run()
    assert carol.awareness.states[alice.doc.client_id] == {"user": "alice"}
    reply = room.server.receive("c", b"\x03", can_write=True).reply
    assert len(reply) == 1
    carol.handle(reply[0])

    # a stale announcement (lower clock) does not overwrite the newer state
    room.send("a", alice.announce({"user": "alice", "cursor": 3}))
    room.run()
    stale = _awareness_frame(alice.doc.client_id, 0, '{"user":"old"}')
    room.server.receive("a", stale, can_write=True)
    assert _states(room.server) == {alice.doc.client_id: {"user": "alice", "cursor": 3}}

    room.leave("a")
    room.run()
    assert alice.doc.client_id not in bob.awareness.states
    assert alice.doc.client_id not in carol.awareness.states
    assert room.server.disconnect("a") == []


def test_awareness_follows_a_client_that_reconnects_before_its_old_socket_closes():
    doc = SharedDocument()
    announce = _awareness_frame(42, 3, '{"user":"zoë"}')  # non-ASCII: the length counts UTF-8 bytes
    doc.receive("old", announce, can_write=True)
    doc.receive("new", announce, can_write=True)  # same clock, over the new connection
    assert doc.disconnect("old") == []
    assert _states(doc) == {42: {"user": "zoë"}}
    (removed,) = doc.disconnect("new")
    assert removed == _awareness_frame(42, 3, "null")
    assert len(doc.greeting()) == 1  # just step 1: nobody is here


def test_an_explicit_awareness_removal_is_forwarded_and_forgotten():
    doc = SharedDocument()
    doc.receive("a", _awareness_frame(7, 1, '{"user":"a"}'), can_write=True)
    gone = _awareness_frame(7, 1, "null")
    assert doc.receive("a", gone, can_write=True) == Reaction(broadcast=[gone])
    assert _states(doc) == {}
    assert doc.disconnect("a") == []


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"", "truncated message type"),
        (b"\xff" * 11, "message type is not a valid varuint"),
        (b"\x00", "truncated sync message type"),
        (b"\x00\x02", "truncated length of sync payload"),
        (b"\x00\x02\x05ab", "declares 5 bytes, only 2 left"),
        (b"\x00\x02\x02\x00\x00!", "1 trailing bytes after sync message"),
        (b"\x00\x02\x03abc", "not a Yjs update"),
        (b"\x00\x00\x02\xff\xff", "not a Yjs state vector"),
        (b"\x00\x07\x00", "unknown sync message type 7"),
        (b"\x02\x00\x00", "unsupported message type 2"),
        (b"\x01\x04\x01\x07\x01", "declares 4 bytes, only 3 left"),
        (b"\x01\x06\x01\x07\x01\x02{x", "awareness state of client 7 is not JSON"),
        (b"\x01\x06\x01\x07\x01\x02\xc3(", "awareness state of client 7 is not JSON"),
        (b"\x01\x07\x01\x07\x01\x02{}!", "trailing bytes after awareness update"),
        (b"\x01\x07\x01\x07\x01\x03NaN", "awareness state of client 7 is not JSON: NaN"),
        (b"\x03\x00", "trailing bytes after query-awareness"),
        ("\x00\x00\x01\x00", "text frame"),
    ],
)
def test_malformed_frames_raise_and_change_nothing(frame, message):
    room, alice = _room_with_alice()
    before = (room.server.snapshot(), room.server.greeting())
    with pytest.raises(InvalidFrame, match=message):
        room.server.receive("a", frame, can_write=True)
    assert (room.server.snapshot(), room.server.greeting()) == before


def test_frames_may_arrive_as_any_bytes_like_object():
    doc = SharedDocument()
    frame = FakeClient("w").edit("x")
    assert doc.receive("w", bytearray(frame), can_write=True).update == read_message(frame[2:])
    assert doc.receive("w", memoryview(b"\x03"), can_write=True).reply


def test_snapshot_and_log_replay_to_the_same_document():
    room = Room()
    alice, bob = room.join("a"), room.join("b")
    room.run()
    for i in range(3):
        room.send("a", alice.edit(f"a{i}"))
        room.send("b", bob.edit(f"b{i}"))
    room.run()
    with alice.doc.transaction():  # deletions travel as delete sets
        del alice.playlist[0]
        del alice.notes[0:3]
    room.send("a", create_update_message(alice.doc.get_update(room.server._doc.get_state())))
    room.run()
    expected = room.server.to_json()
    assert len(expected["playlist"]) == 5
    assert SharedDocument(room.persisted).to_json() == expected
    assert SharedDocument([room.server.snapshot()]).to_json() == expected
    with pytest.raises(InvalidFrame, match="persisted update #1"):
        SharedDocument([room.persisted[0], b"junk"])


def test_redundant_updates_are_neither_persisted_nor_broadcast():
    doc = SharedDocument()
    writer = FakeClient("w")
    frame = writer.edit("x")
    first = doc.receive("w", frame, can_write=True)
    assert first.update is not None and first.broadcast == [frame]
    assert doc.receive("w", frame, can_write=True) == Reaction()
    del writer.playlist[0]
    deletion = create_update_message(writer.doc.get_update())  # everything, including the delete set
    assert doc.receive("w", deletion, can_write=True).update is not None
    # a reconnecting client's step 2 repeats known deletions: nothing new
    step2 = b"\x00\x01" + write_message(writer.doc.get_update(doc._doc.get_state()))
    assert doc.receive("w", step2, can_write=True) == Reaction()


def test_an_update_waiting_for_its_predecessor_is_kept_until_it_arrives():
    writer = FakeClient("w")
    first, second = writer.edit("one"), writer.edit("two")
    doc = SharedDocument()
    early = doc.receive("w", second, can_write=True)  # arrives before the update it builds on
    assert early.update == read_message(second[2:])  # persisted and relayed, though not visible yet
    assert doc.to_json() == {"playlist": [], "notes": ""}
    compacted = SharedDocument([doc.snapshot(), read_message(first[2:])])  # compaction kept it
    assert compacted.to_json() == writer.to_json()
    doc.receive("w", first, can_write=True)
    assert doc.to_json() == writer.to_json()
    assert doc._pending == []
    assert SharedDocument([doc.snapshot()]).to_json() == writer.to_json()
    assert SharedDocument([read_message(second[2:]), read_message(first[2:])]).to_json() == writer.to_json()


def _awareness_frame(client_id: int, clock: int, state: str) -> bytes:
    body = write_var_uint(1) + write_var_uint(client_id) + write_var_uint(clock) + write_message(state.encode())
    return create_awareness_message(body)


def _states(doc: SharedDocument) -> dict[int, dict]:
    reader = FakeClient("probe")
    reader.handle(doc.receive("probe", b"\x03", can_write=False).reply[0])
    return {cid: s for cid, s in reader.awareness.states.items() if cid != reader.doc.client_id}


# --------------------------------------------------------------------------- store: PostgreSQL


@pytest.fixture
async def room_id(pool, api) -> uuid.UUID:
    owner = await api.user("artist")
    rid = uuid.uuid4()
    await pool.execute(
        "INSERT INTO rooms (id, owner_id, name, visibility) VALUES ($1, $2, 'Yjs room', 'public')", rid, owner["id"]
    )
    return rid


async def test_store_appends_loads_and_compacts_while_an_append_races(pool, room_id):
    writer = FakeClient("w")
    updates = [read_message(writer.edit(f"t{i}")[2:]) for i in range(4)]
    counts = [await yjs_store.append_update(pool, room_id, u) for u in updates]
    assert counts == [1, 2, 3, 4]
    assert await yjs_store.load_updates(pool, room_id) == updates

    log = await yjs_store.load_log(pool, room_id)  # e.g. a room host starting up
    snapshot = SharedDocument(u for _, u in log).snapshot()
    racing = read_message(writer.edit("late")[2:])  # appended after the snapshot was taken
    assert await yjs_store.append_update(pool, room_id, racing) == 5
    assert await yjs_store.compact(pool, room_id, snapshot, through_id=log[-1][0]) == 4

    after = await yjs_store.load_log(pool, room_id)
    assert [update for _, update in after] == [snapshot, racing]
    assert after[0][0] == log[-1][0]  # the snapshot took the id of the last row it replaced
    assert SharedDocument(await yjs_store.load_updates(pool, room_id)).to_json() == writer.to_json()
    assert await yjs_store.append_update(pool, room_id, read_message(writer.edit("after")[2:])) == 3

    # without through_id: everything committed so far, by a host that snapshots between frames
    whole = SharedDocument(await yjs_store.load_updates(pool, room_id)).snapshot()
    assert await yjs_store.compact(pool, room_id, whole) == 3
    assert await yjs_store.load_updates(pool, room_id) == [whole]
    assert SharedDocument([whole]).to_json() == writer.to_json()


async def test_store_compactions_of_one_room_take_turns(pool, room_id):
    writer = FakeClient("w")
    for i in range(3):
        await yjs_store.append_update(pool, room_id, read_message(writer.edit(f"t{i}")[2:]))
    snapshot = SharedDocument(await yjs_store.load_updates(pool, room_id)).snapshot()
    removed = await asyncio.gather(*(yjs_store.compact(pool, room_id, snapshot) for _ in range(3)))
    assert sorted(removed) == [1, 1, 3]  # the later ones replace the first one's snapshot row
    assert await yjs_store.load_updates(pool, room_id) == [snapshot]
    assert await yjs_store.compact(pool, uuid.uuid4(), snapshot) == 0  # no such room: nothing to do


# --------------------------------------------------------------------------- interop: stock clients


class YjsTestServer:
    """The room gateway's wiring in miniature: one SharedDocument per room, one frame at a time."""

    def __init__(self) -> None:
        self.docs: dict[str, SharedDocument] = {}
        self.conns: dict[str, dict[str, ServerConnection]] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.received: list[list[bytes]] = []  # the frames of each connection, in order

    async def handler(self, ws: ServerConnection) -> None:
        url = urlsplit(ws.request.path)
        room = url.path.removeprefix("/v1/yjs/")
        if not url.path.startswith("/v1/yjs/") or "/" in room:
            await ws.close(4404, "no such path")
            return
        can_write = not parse_qs(url.query)["token"][0].startswith("reader")
        doc = self.docs.setdefault(room, SharedDocument())
        peers = self.conns.setdefault(room, {})
        lock = self.locks.setdefault(room, asyncio.Lock())
        conn_id, seen = uuid.uuid4().hex, []
        self.received.append(seen)
        async with lock:
            peers[conn_id] = ws
            for frame in doc.greeting():
                await ws.send(frame)
        try:
            async for frame in ws:
                seen.append(frame)
                async with lock:
                    reaction = doc.receive(conn_id, frame, can_write=can_write)
                    # a real gateway persists reaction.update here, before broadcasting it
                    for out in reaction.reply:
                        await ws.send(out)
                    await self._broadcast(peers, conn_id, reaction.broadcast)
        finally:
            async with lock:
                del peers[conn_id]
                await self._broadcast(peers, conn_id, doc.disconnect(conn_id))

    @staticmethod
    async def _broadcast(peers: dict[str, ServerConnection], sender: str, frames: list[bytes]) -> None:
        for other, conn in list(peers.items()):
            if other != sender:
                for frame in frames:
                    try:
                        await conn.send(frame)
                    except websockets.ConnectionClosed:
                        pass  # its own handler cleans up


async def test_stock_yjs_clients_converge_through_shared_document():
    server = YjsTestServer()
    async with serve(server.handler, "127.0.0.1", 0) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        room = str(uuid.uuid4())
        results = await run_peers(
            f"ws://127.0.0.1:{port}/v1/yjs", room, ["alice-token", "bob-token", "reader-token", "reader-2-token"],
            names=["alice", "bob", "carol", "dave"], readonly=[2], denied=[3],
        )
    first, second, carol, dave = results
    assert sorted(t["track"] for t in first["playlist"]) == ["alice", "bob"]
    assert sorted(first["notes"].split(";")) == ["", "alice", "bob"]
    assert all(r["playlist"] == first["playlist"] and r["notes"] == first["notes"] for r in (second, carol))
    assert [r["awareness_peers"] for r in results] == [3, 3, 3, 3]
    assert server.docs[room].to_json() == {"playlist": first["playlist"], "notes": first["notes"]}
    # dave edited read-only: the stock provider reported the refusal (once), and only his copy has his edit
    assert [r["permission_denied"] for r in results] == [[], [], [], [READ_ONLY_REASON]]
    assert sorted(t["track"] for t in dave["playlist"]) == ["alice", "bob", "dave"]
    # what a stock client sends as soon as the socket opens: sync step 1, then its awareness state
    for frames in server.received:
        assert frames[0][:2] == b"\x00\x00" and frames[1][:1] == b"\x01"
