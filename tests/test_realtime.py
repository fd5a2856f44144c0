"""Realtime rooms end to end: real Ray hosts, both transports (Serve ``/v1/ws`` and the edge), PostgreSQL.

Clients are plain ``websockets`` connections speaking the JSON protocol of docs/realtime.md.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
import websockets

from tests.realtime_support import Client, close_code
from verseflow import security

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def room(api, realtime) -> dict[str, Any]:
    host = await api.user("artist")
    response = await api.http.post("/v1/rooms", json={"name": "Listening party", "visibility": "public"},
                                   headers=host["headers"])
    assert response.status_code == 201, response.text
    return {"id": response.json()["id"], "host": host}


TRANSPORTS = ["serve", "edge"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_every_auth_failure_closes_4401_with_a_reason(realtime, settings, transport):
    url = realtime[transport]
    expired, _ = security.issue_access_token(uuid.uuid4(), "listener", secret=settings.secret(), ttl_s=-10,
                                             issuer=settings.jwt_issuer)
    forged, _ = security.issue_access_token(uuid.uuid4(), "listener", secret="not-the-secret", ttl_s=600,
                                            issuer=settings.jwt_issuer)
    for suffix in ("?token=garbage", f"?token={forged}", f"?token={expired}"):
        async with websockets.connect(url + suffix) as ws:
            code, reason = await close_code(ws)
            assert code == 4401 and reason, (suffix[:20], code, reason)
    async with websockets.connect(url) as ws:  # no token and no auth message within ws_auth_timeout_s
        assert await close_code(ws) == (4401, "no auth message in time")
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "join", "room": str(uuid.uuid4())}))
        assert await close_code(ws) == (4401, "first message must be auth")
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": expired}))
        code, _ = await close_code(ws)
        assert code == 4401


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_auth_message_then_bad_messages_get_errors_and_the_socket_stays_open(api, realtime, room, transport):
    user = await api.user()
    async with websockets.connect(realtime[transport]) as ws:
        client = Client(ws)
        await client.send(type="auth", token=user["access_token"])
        assert (await client.next("ready"))["user"] == user["id"]
        for bad, code in [("{nope", "bad_json"), ('{"type": "dance"}', "unknown_type"), ("[1]", "bad_message"),
                          ('{"type": "join", "room": "x"}', "invalid")]:
            await ws.send(bad)
            error = await client.next("error")
            assert error["code"] == code, (bad, error)
        await client.send(type="chat", room=room["id"], text="hi")
        assert (await client.next("error"))["code"] == "not_joined"
        await client.send(type="join", room=str(uuid.uuid4()))
        assert (await client.next("error"))["code"] == "not_found"
        await client.send(type="time", id=7, t0=123.5)
        reply = await client.next("time")
        assert reply["id"] == 7 and reply["t0"] == 123.5 and abs(reply["server_ts"] - time.time() * 1000) < 5000
        await client.send(type="ping")
        assert (await client.next("pong"))["type"] == "pong"


async def test_two_clients_on_different_gateways_chat_with_presence(api, realtime, room):
    alice, bob = await api.user(), await api.user()
    a = await Client.open(realtime["serve"], alice["access_token"])
    b = await Client.open(realtime["edge"], bob["access_token"])
    joined = await a.join(room["id"])
    assert joined["type"] == "joined" and joined["role"] == "listener"
    await b.join(room["id"])
    presence = await a.next("presence")
    while bob["id"] not in {j["user"] for j in presence["joins"]}:  # alice's own join may come first
        presence = await a.next("presence")
    assert {"user": bob["id"], "role": "listener"} in presence["joins"]

    await a.send(type="chat", room=room["id"], text="hello from serve")
    await b.send(type="chat", room=room["id"], text="hello from the edge")
    got_a, got_b = await a.chats(2), await b.chats(2)
    assert [m["seq"] for m in got_a] == [m["seq"] for m in got_b]
    assert got_a == got_b  # same messages, same order, on both gateways
    assert {m["text"] for m in got_a} == {"hello from serve", "hello from the edge"}
    assert {m["from"] for m in got_a} == {alice["id"], bob["id"]}

    response = await api.http.get(f"/v1/rooms/{room['id']}", headers=alice["headers"])
    assert {o["user"] for o in response.json()["online"]} == {alice["id"], bob["id"]}

    await b.close()
    presence = await a.next("presence")
    assert presence["leaves"] == [bob["id"]]
    await a.close()


async def test_resume_after_reconnect_has_no_gap_and_no_duplicate(api, realtime, room):
    alice, bob = await api.user(), await api.user()
    a = await Client.open(realtime["edge"], alice["access_token"])
    await a.join(room["id"])
    b = await Client.open(realtime["serve"], bob["access_token"])
    await b.join(room["id"])
    for i in range(3):
        await a.send(type="chat", room=room["id"], text=f"m{i}")
    last = (await b.chats(3))[-1]["seq"]
    await b.close()
    for i in range(3, 8):
        await a.send(type="chat", room=room["id"], text=f"m{i}")
    await a.chats(8)
    b = await Client.open(realtime["edge"], bob["access_token"])
    joined = await b.join(room["id"], since=last)
    assert joined["seq"] == last + 5 and not joined["truncated"]
    replay = await b.chats(5)
    assert [m["text"] for m in replay] == [f"m{i}" for i in range(3, 8)]
    assert [m["seq"] for m in replay] == list(range(last + 1, last + 6))
    await a.send(type="chat", room=room["id"], text="live")
    assert (await b.next("chat"))["text"] == "live"
    await a.close()
    await b.close()


async def test_a_killed_room_host_loses_nothing_acknowledged(api, realtime, room, settings):
    import ray

    from actors.room_host import room_host_for

    alice, bob = await api.user(), await api.user()
    a = await Client.open(realtime["edge"], alice["access_token"])
    b = await Client.open(realtime["serve"], bob["access_token"])
    await a.join(room["id"])
    await b.join(room["id"])
    acknowledged: list[str] = []

    async def say(text: str) -> None:
        """Send until the room echoes it back (the acknowledgement), retrying with the same ref."""
        for _ in range(100):
            await a.send(type="chat", room=room["id"], text=text, ref=text)
            reply = await a.next("chat", "error", timeout=15)
            while reply["type"] == "chat" and reply["text"] != text:
                # A rejoin replays history after `since`: only acknowledged messages may appear.
                assert reply["text"] in acknowledged, reply
                reply = await a.next("chat", "error", timeout=15)
            if reply["type"] == "chat":
                acknowledged.append(text)
                return
            assert reply["code"] in ("unavailable", "not_joined"), reply
            if reply["code"] == "not_joined":
                await a.join(room["id"], since=0)
            await asyncio.sleep(0.2)
        raise AssertionError(f"{text} never acknowledged")

    for i in range(5):
        await say(f"before-{i}")
    ray.kill(room_host_for(settings, room["id"]), no_restart=False)
    for i in range(5):
        await say(f"after-{i}")
    # Bob reconnects from scratch, as a client would after a network blip, and resumes from 0.
    await b.close()
    b = await Client.open(realtime["edge"], bob["access_token"])
    await b.join(room["id"], since=0)
    replay = [m["text"] for m in await b.chats(10)]
    assert replay == acknowledged
    await a.send(type="chat", room=room["id"], text="done")
    assert (await b.next("chat"))["text"] == "done"
    seqs = [m["seq"] for m in b.seen if m["type"] == "chat"]
    assert seqs == sorted(set(seqs))
    await a.close()
    await b.close()


async def test_slow_consumer_is_cut_with_4408_while_the_room_goes_on(api, realtime, room):
    alice, bob, slow = await api.user(), await api.user(), await api.user()
    a = await Client.open(realtime["edge"], alice["access_token"])
    b = await Client.open(realtime["edge"], bob["access_token"])
    # max_queue=1: the client library stops reading from TCP once one frame is waiting.
    s = await Client.open(realtime["edge"], slow["access_token"], max_queue=1)
    for client in (a, b, s):
        await client.join(room["id"])
    text = "x" * 15_000
    reading = asyncio.ensure_future(b.chats(600, timeout=30))  # bob keeps up
    echoes = asyncio.ensure_future(a.chats(600, timeout=30))  # so does alice, who gets her own messages
    for i in range(600):
        await a.send(type="chat", room=room["id"], text=f"{i}:{text}", ref=f"slow-{i}")
        if i % 40 == 39:
            await asyncio.sleep(0.8)  # stay under the per-connection rate limit (50/s)
    received = await reading
    assert len(await echoes) == 600
    assert received[-1]["text"].startswith("599:")
    code, reason = await close_code(s.ws, timeout=30)
    assert code == 4408 and "slow consumer" in reason
    await a.close()
    await b.close()


async def test_late_joiner_receives_the_transport_and_only_the_host_sets_it(api, realtime, room):
    host = room["host"]
    h = await Client.open(realtime["serve"], host["access_token"])
    assert (await h.join(room["id"]))["role"] == "host"
    track = str(uuid.uuid4())
    await h.send(type="transport", room=room["id"], track_id=track, position_ms=42_000, playing=True, rate=1.0)
    stamped = await h.next("transport")
    assert stamped["track_id"] == track and stamped["playing"] is True
    assert abs(stamped["server_ts"] - time.time() * 1000) < 5000

    listener = await api.user()
    late = await Client.open(realtime["edge"], listener["access_token"])
    joined = await late.join(room["id"])
    assert joined["transport"]["track_id"] == track and joined["transport"]["position_ms"] == 42_000
    assert joined["transport"]["now_ts"] >= stamped["server_ts"]
    await late.send(type="transport", room=room["id"], position_ms=0, playing=False)
    assert (await late.next("error"))["code"] == "forbidden"
    await h.close()
    await late.close()


async def test_rate_and_size_limits_close_the_socket(api, realtime, room):
    user = await api.user()
    c = await Client.open(realtime["edge"], user["access_token"])
    for _ in range(150):
        await c.send(type="ping")
    assert (await close_code(c.ws))[0] == 4429
    c = await Client.open(realtime["serve"], user["access_token"], max_size=None)
    await c.ws.send("x" * 70_000)
    assert (await close_code(c.ws))[0] == 1009


async def test_notify_reaches_every_device_of_the_user(api, realtime, settings):
    from actors.room_host import notify_user

    user = await api.user()
    phone = await Client.open(realtime["edge"], user["access_token"])
    laptop = await Client.open(realtime["serve"], user["access_token"])
    reached = await notify_user(settings, uuid.UUID(user["id"]), "upload.ready", {"track_id": "t1"})
    assert reached == 2
    for device in (phone, laptop):
        event = await device.next("notify")
        assert event["event"] == "upload.ready" and event["data"] == {"track_id": "t1"}
    await phone.close()
    await laptop.close()


async def test_a_socket_opened_while_its_session_host_restarts_is_registered_once_it_is_back(api, realtime, settings):
    """``ready`` does not wait for a restarting session host (a node loss would hold every reconnect):
    the socket is registered by the resync that follows the host's return, and notifications reach it."""
    import ray

    from actors.room_host import notify_user, session_host_for

    user = await api.user()
    user_id = uuid.UUID(user["id"])
    ray.kill(session_host_for(settings, user_id), no_restart=False)
    device = await Client.open(realtime["edge"], user["access_token"])
    reached = 0
    for _ in range(150):
        try:
            reached = await notify_user(settings, user_id, "upload.ready", {"track_id": "t2"})
        except ray.exceptions.RayActorError:
            reached = 0
        if reached:
            break
        await asyncio.sleep(0.2)
    assert reached == 1
    event = await device.next("notify")
    assert event["event"] == "upload.ready" and event["data"] == {"track_id": "t2"}
    await device.close()


async def test_private_rooms_invites_and_kicks(api, realtime):
    host, guest, stranger = await api.user("artist"), await api.user(), await api.user()
    response = await api.http.post("/v1/rooms", json={"name": "Studio", "visibility": "private"},
                                   headers=host["headers"])
    room_id = response.json()["id"]
    assert (await api.http.get(f"/v1/rooms/{room_id}", headers=stranger["headers"])).status_code == 404
    s = await Client.open(realtime["edge"], stranger["access_token"])
    assert (await s.join(room_id))["code"] == "not_found"
    response = await api.http.put(f"/v1/rooms/{room_id}/members/{guest['id']}", json={"role": "collaborator"},
                                  headers=stranger["headers"])
    assert response.status_code == 404
    response = await api.http.put(f"/v1/rooms/{room_id}/members/{guest['id']}", json={"role": "collaborator"},
                                  headers=host["headers"])
    assert response.status_code == 200 and response.json()["role"] == "collaborator"
    g = await Client.open(realtime["serve"], guest["access_token"])
    assert (await g.join(room_id))["role"] == "collaborator"
    response = await api.http.delete(f"/v1/rooms/{room_id}/members/{guest['id']}", headers=guest["headers"])
    assert response.status_code == 403
    response = await api.http.delete(f"/v1/rooms/{room_id}/members/{guest['id']}", headers=host["headers"])
    assert response.status_code == 204
    assert (await g.next("kicked"))["room"] == room_id
    await g.send(type="chat", room=room_id, text="still here?")
    assert (await g.next("error"))["code"] == "not_joined"
    assert (await g.join(room_id))["code"] == "not_found"
    await s.close()
    await g.close()


async def test_a_role_change_reaches_members_already_in_the_room(api, realtime, room, settings):
    """Made an editor over REST, a listener's open sockets may edit at once (no rejoin); made a
    listener again, the next edit is refused. Chat on Serve, the host on the edge, Yjs on the edge."""
    from actors.room_host import room_host_for
    from rooms.model import RoomRole, read_only_document_reason
    from tests.yjs_support import FakeClient

    guest = await api.user()
    g = await Client.open(realtime["serve"], guest["access_token"])
    h = await Client.open(realtime["edge"], room["host"]["access_token"])
    assert (await g.join(room["id"]))["role"] == "listener"
    assert (await h.join(room["id"]))["role"] == "host"
    peer = FakeClient("guest")
    document = room_host_for(settings, room["id"]).document

    async def tracks() -> list[str]:
        return [t["track"] for t in (await document.remote(uuid.UUID(room["id"])))["playlist"]]

    async with websockets.connect(f"{realtime['edge_yjs']}/{room['id']}?token={guest['access_token']}") as ws:
        async def answered(kind: int) -> None:
            """Read (and answer) frames until one of ``kind`` (a y-websocket message type) arrives."""
            while True:
                frame = await asyncio.wait_for(ws.recv(), 10)
                for reply in peer.handle(frame):
                    await ws.send(reply)
                if frame[0] == kind:
                    return

        async def settled() -> None:
            """Every frame sent so far is handled: the host answers a query-awareness in order."""
            await ws.send(b"\x03")
            await answered(1)

        await answered(0)  # the greeting's sync step 1
        await ws.send(peer.edit("while listening"))
        await answered(2)
        assert peer.denied == [read_only_document_reason(RoomRole.LISTENER)]

        async def make(role: str) -> None:
            response = await api.http.put(f"/v1/rooms/{room['id']}/members/{guest['id']}", json={"role": role},
                                          headers=room["host"]["headers"])
            assert response.status_code == 200, response.text
            for client in (g, h):  # the member and everyone else in the room hear it, on both gateways
                assert await client.next("role") == {"type": "role", "room": room["id"], "user": guest["id"],
                                                     "role": role}

        await make("collaborator")
        await answered(0)  # the host's step 1 again; the answer hands over the refused edit
        await ws.send(peer.edit("as editor"))
        await settled()
        assert await tracks() == ["while listening", "as editor"]
        response = await api.http.get(f"/v1/rooms/{room['id']}", headers=guest["headers"])
        assert {"user": guest["id"], "role": "collaborator", "devices": 1} in response.json()["online"]

        await make("listener")
        await ws.send(peer.edit("demoted"))
        await answered(2)  # refused, and told so again
        assert len(peer.denied) == 2
        assert await tracks() == ["while listening", "as editor"]
    await g.close()
    await h.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_stock_yjs_clients_converge_through_the_room_document(api, realtime, room, transport):
    """Two npm ``yjs`` + ``y-websocket`` peers under node edit the room's document together; a third,
    a listener, edits too and its stock client reports y-protocols' permission denied."""
    from rooms.model import RoomRole, read_only_document_reason
    from tests.yjs_support import ensure_node_modules, run_peers

    ensure_node_modules()
    collaborator, listener = await api.user(), await api.user()
    response = await api.http.put(f"/v1/rooms/{room['id']}/members/{collaborator['id']}",
                                  json={"role": "collaborator"}, headers=room["host"]["headers"])
    assert response.status_code == 200
    tokens = [room["host"]["access_token"], collaborator["access_token"], listener["access_token"]]
    results = await run_peers(realtime[f"{transport}_yjs"], room["id"], tokens, names=["host", "guest", "listener"],
                              expect_peers=1, expect_tracks=2, denied=[2])
    assert results[0]["playlist"] == results[1]["playlist"]
    assert sorted(entry["track"] for entry in results[0]["playlist"]) == ["guest", "host"]
    assert results[0]["notes"] == results[1]["notes"]
    assert [r["permission_denied"] for r in results] == [[], [], [read_only_document_reason(RoomRole.LISTENER)]]
    from actors.room_host import room_host_for
    from verseflow.settings import get_settings

    server = await room_host_for(get_settings(), room["id"]).document.remote(uuid.UUID(room["id"]))
    assert server["playlist"] == results[0]["playlist"] and server["notes"] == results[0]["notes"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_socket_lives_no_longer_than_its_token_unless_reauthenticated(api, realtime, settings, transport):
    user = await api.user()
    user_id = uuid.UUID(user["id"])

    def token(ttl: int) -> str:
        return security.issue_access_token(user_id, "listener", secret=settings.secret(), ttl_s=ttl,
                                           issuer=settings.jwt_issuer)[0]

    short = await Client.open(realtime[transport], token(2))
    code, reason = await close_code(short.ws, timeout=15)
    assert (code, reason) == (4401, "token expired: send auth with a fresh token")

    renewed = await Client.open(realtime[transport], token(2))
    await renewed.send(type="auth", token=token(600))
    assert (await renewed.next("authenticated"))["expires_at"] > time.time() * 1000 + 500_000
    other = (await api.user())["access_token"]
    await renewed.send(type="auth", token=other)
    assert (await renewed.next("error"))["code"] == "forbidden"
    await asyncio.sleep(3)
    await renewed.send(type="ping")
    assert (await renewed.next("pong"))["type"] == "pong"
    await renewed.close()


async def test_a_connect_storm_reaches_the_hosts_in_batches(realtime, room, settings):
    """Sockets that connect and join together reach the hosts in batches of calls, not one frame each,
    and every one of them is joined, sees the others and leaves cleanly."""
    import ray

    from actors.edge import EDGE_NAME, NAMESPACE

    def minted() -> str:
        return security.issue_access_token(uuid.uuid4(), "listener", secret=settings.secret(), ttl_s=600,
                                           issuer=settings.jwt_issuer)[0]

    (name,) = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
               if a["namespace"] == NAMESPACE and a["name"].startswith(EDGE_NAME.format(""))]
    edge = ray.get_actor(name, namespace=NAMESPACE)
    before = (await edge.stats.remote())["hosts"]
    clients = await asyncio.gather(*(Client.open(realtime["edge"], minted()) for _ in range(60)))
    joined = await asyncio.gather(*(c.join(room["id"]) for c in clients))
    assert all(j["type"] == "joined" for j in joined), [j for j in joined if j["type"] != "joined"][:2]
    after = (await edge.stats.remote())["hosts"]
    for host in ("session-0",):
        calls = after[host]["calls"] - before.get(host, {}).get("calls", 0)
        frames = after[host]["frames_out"] - before.get(host, {}).get("frames_out", 0)
        assert calls >= 60 and frames < calls, (host, calls, frames)
        assert after[host]["waiting"] == 0
    assert max(j["online"] for j in joined) == 60
    await asyncio.gather(*(c.close() for c in clients))
