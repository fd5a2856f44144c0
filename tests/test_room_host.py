"""The room log's group commit (rooms.log_writer) on a real PostgreSQL, without Ray.

A room host core is driven directly: members join through a subscribed gateway stream, chats are
submitted concurrently, and the stream and the table are read back.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from accounts.model import Principal, Role
from rooms import repository
from rooms.host import RoomHostCore
from rooms.model import Endpoint

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def setup(api, pool, settings):
    host = await api.user("artist")
    members = [await api.user() for _ in range(3)]
    response = await api.http.post("/v1/rooms", json={"name": "Group commit", "visibility": "public"},
                                   headers=host["headers"])
    assert response.status_code == 201, response.text
    room_id = uuid.UUID(response.json()["id"])
    core = RoomHostCore(pool, settings)
    stream = core.subscribe("gw")
    assert await anext(stream) == []
    endpoints = []
    for i, member in enumerate(members):
        endpoint = Endpoint("gw", f"c{i}")
        await core.join(endpoint, Principal(user_id=uuid.UUID(member["id"]), role=Role.LISTENER), room_id, None)
        endpoints.append(endpoint)
    yield core, stream, room_id, endpoints
    await stream.aclose()


async def _drain(stream, count: int) -> list[tuple]:
    """The next ``count`` room deliveries (chats), in stream order."""
    seen: list[tuple] = []
    while len([d for d in seen if d[0] in ("room", "conn") and '"chat"' in d[2]]) < count:
        seen += await asyncio.wait_for(anext(stream), 10)
    return [d for d in seen if d[0] in ("room", "conn") and '"chat"' in d[2]]


async def _stored(pool, room_id: uuid.UUID) -> list[tuple[int, str | None]]:
    rows = await pool.fetch("SELECT seq, client_ref FROM room_messages WHERE room_id = $1 ORDER BY seq", room_id)
    return [(r["seq"], r["client_ref"]) for r in rows]


async def test_messages_arriving_during_a_write_go_into_the_next_one(setup, pool, monkeypatch):
    core, stream, room_id, endpoints = setup
    batches: list[int] = []
    real_append = repository.append_batch

    async def counted(pool_, room, messages):
        batches.append(len(messages))
        await asyncio.sleep(0.05)  # a slow commit: everything sent meanwhile waits for the next write
        await real_append(pool_, room, messages)

    monkeypatch.setattr(repository, "append_batch", counted)
    await asyncio.gather(*(core.chat(endpoints[i % 3], room_id, f"m{i}", f"r{i}") for i in range(60)))

    assert sum(batches) == 60 and len(batches) < 10, batches  # grouped, not one write each
    assert [seq for seq, _ in await _stored(pool, room_id)] == list(range(1, 61))  # no gap, no duplicate
    delivered = await _drain(stream, 60)
    seqs = [d[3] for d in delivered]
    assert seqs == list(range(1, 61))  # fanned out in seq order
    texts = [json.loads(d[2])["text"] for d in delivered]
    assert sorted(texts, key=lambda t: int(t[1:])) == [f"m{i}" for i in range(60)]


async def test_a_retried_ref_gets_the_original_and_the_rest_of_its_batch_no_gap(setup, pool, monkeypatch):
    core, stream, room_id, endpoints = setup
    await core.chat(endpoints[0], room_id, "first try", "dup-1")
    (first,) = await _drain(stream, 1)

    real_append = repository.append_batch
    gate = asyncio.Event()

    async def held(pool_, room, messages):
        await gate.wait()
        await real_append(pool_, room, messages)

    monkeypatch.setattr(repository, "append_batch", held)
    calls = [asyncio.ensure_future(core.chat(endpoints[1], room_id, "before", "b-1"))]
    await asyncio.sleep(0.01)  # the writer holds "before"; what follows forms one batch
    calls += [asyncio.ensure_future(core.chat(endpoints[0], room_id, "retry", "dup-1")),
              asyncio.ensure_future(core.chat(endpoints[2], room_id, "new", "n-1")),
              asyncio.ensure_future(core.chat(endpoints[2], room_id, "new again", "n-1"))]
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(*calls)

    assert await _stored(pool, room_id) == [(1, "dup-1"), (2, "b-1"), (3, "n-1")]
    delivered = await _drain(stream, 4)
    replies = {(d[1], json.loads(d[2])["seq"]) for d in delivered if d[0] == "conn"}
    assert replies == {("c0", 1), ("c2", 3)}  # each repeat answered with its original, to its sender only
    assert [d[3] for d in delivered if d[0] == "room"] == [2, 3]
    assert json.loads(first[2])["text"] == "first try"


async def test_a_failed_write_fails_every_waiting_sender_with_a_retryable_error(setup, pool, monkeypatch):
    core, stream, room_id, endpoints = setup

    async def broken(pool_, room, messages):
        raise ConnectionResetError("database went away")

    monkeypatch.setattr(repository, "append_batch", broken)
    results = await asyncio.gather(*(core.chat(endpoints[0], room_id, f"m{i}", f"r{i}") for i in range(3)),
                                   return_exceptions=True)
    assert all(getattr(r, "status", None) == 503 for r in results), results
    monkeypatch.undo()
    await core.chat(endpoints[0], room_id, "m0", "r0")  # the retry with the same ref goes through
    assert await _stored(pool, room_id) == [(1, "r0")]


async def test_a_large_room_batches_presence_for_longer(api, pool, settings):
    """A presence event goes to every member: a join storm in a big room sends few, larger ones."""
    host = await api.user("artist")
    response = await api.http.post("/v1/rooms", json={"name": "Big room", "visibility": "public"},
                                   headers=host["headers"])
    room_id = uuid.UUID(response.json()["id"])
    core = RoomHostCore(pool, settings.model_copy(update={"presence_flush_s": 0.01, "presence_fanout_per_s": 1000}))
    deliveries: list[tuple] = []
    stream = core.subscribe("gw")
    assert await anext(stream) == []
    collector = asyncio.ensure_future(_collect(stream, deliveries))

    async def presence_events() -> list[dict]:
        await asyncio.sleep(0.02)  # the stream hands over what the host put
        events = [json.loads(d[2]) for d in deliveries if d[0] == "room" and '"presence"' in d[2]]
        deliveries.clear()
        return events

    users = [uuid.uuid4() for _ in range(300)]
    for i, user in enumerate(users[:200]):
        await core.join(Endpoint("gw", f"c{i}"), Principal(user_id=user, role=Role.LISTENER), room_id, None)
    core._flush_presence(now=1000.0)
    first = await presence_events()
    assert len(first) == 1 and len(first[0]["joins"]) == 200 and first[0]["online"] == 200
    for i, user in enumerate(users[200:], start=200):  # 200+ members online: one event per 0.2 s or more
        await core.join(Endpoint("gw", f"c{i}"), Principal(user_id=user, role=Role.LISTENER), room_id, None)
        core._flush_presence(now=1000.0 + 0.001 * (i - 199))
    assert await presence_events() == []  # within 0.2 s of the last one: still batching
    core._flush_presence(now=1000.5)  # 300 members: an event at most every 0.3 s
    (second,) = await presence_events()
    assert len(second["joins"]) == 100 and second["online"] == 300  # nothing lost, all in one event

    await core.join(Endpoint("gw", "owner"), Principal(user_id=uuid.UUID(host["id"]), role=Role.ARTIST), room_id, None)
    await asyncio.sleep(0.02)
    (joined,) = [json.loads(d[2]) for d in deliveries if d[0] == "joined" and d[1] == "owner"]
    assert joined["online"] == 301 and len(joined["members"]) == settings.room_members_in_joined
    assert joined["members"][0] == {"user": host["id"], "role": "host", "devices": 1}  # the host first
    collector.cancel()


async def _collect(stream, into: list[tuple]) -> None:
    async for batch in stream:
        into.extend(batch)


async def _room_with_chats(api, pool, count: int, *, visibility: str = "public"):
    """A room whose log holds ``count`` chats (seq 1..count) and a transport after every 100th."""
    host = await api.user()
    response = await api.http.post("/v1/rooms", json={"name": "Long history", "visibility": visibility},
                                   headers=host["headers"])
    assert response.status_code == 201, response.text
    room_id, sender = uuid.UUID(response.json()["id"]), uuid.UUID(host["id"])
    messages, seq = [], 0
    for i in range(count):
        seq += 1
        body = {"type": "chat", "room": str(room_id), "seq": seq, "from": str(sender), "text": f"m{i}", "ts": i}
        messages.append(repository.NewMessage(seq, "chat", sender, body, None))
        if i % 100 == 99:
            seq += 1
            messages.append(repository.NewMessage(seq, "transport", sender, {"type": "transport", "seq": seq}, None))
    await repository.append_batch(pool, room_id, messages)
    return room_id, host


async def test_chat_history_opens_on_the_newest_and_pages_back_to_the_first(api, pool):
    from rooms import service

    room_id, host = await _room_with_chats(api, pool, 1050)
    who = Principal(user_id=uuid.UUID(host["id"]), role=Role.LISTENER)
    first = await service.chat_history(pool, who, room_id, before=None, limit=50)
    assert [m["text"] for m in first["items"]] == [f"m{i}" for i in range(1000, 1050)]  # the newest, oldest first
    texts, page = [], first
    while True:
        texts = [m["text"] for m in page["items"]] + texts
        if page["older"] is None:
            break
        assert page["older"] == page["items"][0]["seq"]
        page = await service.chat_history(pool, who, room_id, before=page["older"], limit=200)
    assert texts == [f"m{i}" for i in range(1050)]  # every chat once, no transport, in order
    assert (await service.chat_history(pool, who, room_id, before=1, limit=10)) == {"items": [], "older": None}


async def test_chat_history_over_http_is_bounded_and_authorized(api, pool, settings):
    room_id, host = await _room_with_chats(api, pool, 300, visibility="private")
    response = await api.http.get(f"/v1/rooms/{room_id}/messages", params={"limit": 10_000}, headers=host["headers"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["items"]) == settings.room_chat_page_max and body["items"][-1]["text"] == "m299"
    assert body["items"][-1]["from"] == host["id"] and body["older"] == body["items"][0]["seq"]
    stranger = await api.user()
    response = await api.http.get(f"/v1/rooms/{room_id}/messages", headers=stranger["headers"])
    assert response.status_code == 404  # a private room is not there for someone without a role
    response = await api.http.get(f"/v1/rooms/{room_id}/messages", params={"before": 0}, headers=host["headers"])
    assert response.status_code == 422


async def _public_room(api) -> tuple[uuid.UUID, Principal]:
    host = await api.user("artist")
    response = await api.http.post("/v1/rooms", json={"name": "Roles", "visibility": "public"},
                                   headers=host["headers"])
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"]), Principal(user_id=uuid.UUID(host["id"]), role=Role.ARTIST)


async def _next_batch(stream) -> list[tuple]:
    """Everything the host put on the gateway's stream so far (one batch: the outbox is taken whole)."""
    return await asyncio.wait_for(anext(stream), 10)


async def test_a_role_change_holds_at_once_for_a_members_open_sockets(api, pool, settings):
    from rooms import service
    from rooms.model import RoomRole, read_only_document_reason
    from tests.yjs_support import FakeClient

    room_id, owner = await _public_room(api)
    guest = await api.user()
    who = Principal(user_id=uuid.UUID(guest["id"]), role=Role.LISTENER)
    core = RoomHostCore(pool, settings)
    stream = core.subscribe("gw")
    assert await anext(stream) == []
    chat, doc = Endpoint("gw", "chat"), Endpoint("gw", "doc")
    await core.join(chat, who, room_id, None)
    await core.doc_open(doc, who, room_id)
    peer = FakeClient("doc")
    for kind, conn, data, *_ in await _next_batch(stream):
        assert kind != "conn" or conn == "doc" and peer.handle(data) == [b"\x00\x01\x02\x00\x00"]  # nothing new

    async def send(frame: bytes) -> list[tuple]:
        """Hand a frame to the host; what it sent back (call only where an answer is due)."""
        await core.doc_frame(doc, room_id, frame)
        return await _next_batch(stream)

    async def change_role(role: RoomRole) -> int:
        await service.set_member_role(pool, owner, room_id, who.user_id, role)
        return await core.set_role(room_id, who.user_id)

    # A listener's edit is refused.
    ((kind, conn, frame, *_),) = await send(peer.edit("while listening"))
    assert (kind, conn) == ("conn", "doc") and peer.handle(frame) == []
    assert peer.denied == [read_only_document_reason(RoomRole.LISTENER)]

    # Made a collaborator: the room hears it, and the document socket may write from now on.
    assert await change_role(RoomRole.COLLABORATOR) == 1
    event, resync = await _next_batch(stream)
    assert event[:2] == ("room", str(room_id)) and json.loads(event[2]) == {
        "type": "role", "room": str(room_id), "user": guest["id"], "role": "collaborator"}
    assert resync[:2] == ("conn", "doc")
    (step2,) = peer.handle(resync[2])  # what the server lacks: the edit it refused
    await core.doc_frame(doc, room_id, step2)
    await core.doc_frame(doc, room_id, peer.edit("as editor"))
    assert [t["track"] for t in (await core.document_json(room_id))["playlist"]] == ["while listening", "as editor"]
    assert {"user": guest["id"], "role": "collaborator", "devices": 1} in await core.online(room_id)
    broadcasts = await _next_batch(stream)
    assert [d[0] for d in broadcasts] == ["doc", "doc"]  # both edits went to the room's other documents

    # Made a listener again: the very next edit is refused, and explained again.
    assert await change_role(RoomRole.LISTENER) == 1
    (event,) = await _next_batch(stream)
    assert json.loads(event[2])["role"] == "listener"
    ((kind, conn, frame, *_),) = await send(peer.edit("demoted"))
    assert peer.handle(frame) == [] and len(peer.denied) == 2
    assert [t["track"] for t in (await core.document_json(room_id))["playlist"]] == ["while listening", "as editor"]

    # Two quick changes whose calls arrive in the other order: the host reads the role itself, so the
    # last one committed holds. Here the first change's call comes last and changes nothing.
    await service.set_member_role(pool, owner, room_id, who.user_id, RoomRole.COLLABORATOR)
    assert await change_role(RoomRole.LISTENER) == 0  # committed second, applied first: already so
    assert await core.set_role(room_id, who.user_id) == 0  # the collaborator change's call, late
    # Nor does a host's role change, and nothing was announced.
    assert await core.set_role(room_id, owner.user_id) == 0
    await core.chat(chat, room_id, "still here", "r1")
    assert [json.loads(d[2])["type"] for d in await _next_batch(stream)] == ["chat"]
    await stream.aclose()


async def test_a_join_that_read_its_role_before_a_change_reads_it_again(api, pool, settings, monkeypatch):
    """A change is applied after its commit; a join whose lookup answered before it must not keep the old role."""
    from rooms import service
    from rooms.model import RoomRole

    room_id, owner = await _public_room(api)
    core = RoomHostCore(pool, settings)
    stream = core.subscribe("gw")
    assert await anext(stream) == []
    real_lookup = repository.load_accesses
    looked_up, release = asyncio.Event(), asyncio.Event()

    async def late(pool_, keys):  # answers with what the database held before the change below
        answer = await real_lookup(pool_, keys)
        looked_up.set()
        await release.wait()
        return answer

    monkeypatch.setattr(repository, "load_accesses", late)

    async def join_during(change) -> tuple[dict | None, Exception | None]:
        looked_up.clear()
        release.clear()
        user = await api.user()
        who = Principal(user_id=uuid.UUID(user["id"]), role=Role.LISTENER)
        joining = asyncio.ensure_future(core.join(Endpoint("gw", user["id"]), who, room_id, None))
        await looked_up.wait()
        await change(who.user_id)
        release.set()
        try:
            await joining
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            return None, exc
        joined = [d for d in await _next_batch(stream) if d[0] == "joined"]
        return json.loads(joined[0][2]), None

    async def promote(user_id):
        await service.set_member_role(pool, owner, room_id, user_id, RoomRole.COLLABORATOR)
        await core.set_role(room_id, user_id)

    async def kick(user_id):
        await service.kick(pool, owner, room_id, user_id)
        await core.kick(room_id, user_id)

    joined, _ = await join_during(promote)
    assert joined["role"] == "collaborator"
    joined, error = await join_during(kick)
    assert joined is None and getattr(error, "status", None) == 403
    await stream.aclose()
