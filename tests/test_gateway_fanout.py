"""rooms.gateway fan-out without a network: a run of one room's messages reaches each socket once.

The socket here is the transport interface the gateway writes to (what the edge and Serve adapt),
recording what it is given.
"""

from __future__ import annotations

import uuid

from rooms.gateway import Gateway, Prepared
from verseflow.security import AccessClaims


class RecordingSocket:
    def __init__(self) -> None:
        self.frames: list = []

    async def accept(self) -> None: ...

    async def receive(self):
        raise NotImplementedError

    async def send(self, frame) -> None:
        self.frames.append(frame)

    def send_nowait(self, frame) -> bool:
        self.frames.append(frame)
        return True

    async def close(self, code: int, reason: str) -> None: ...


def _texts(frames: list) -> list[str]:
    return [t for f in frames for t in (f.texts if isinstance(f, Prepared) else (f,))]


def test_a_run_of_room_messages_is_one_write_per_socket_from_each_ones_last_seq(settings):
    gateway = Gateway(settings, backend=None, authenticate=None, kind="test")
    room = str(uuid.uuid4())
    claims = AccessClaims(user_id=uuid.uuid4(), role="listener", jti="j", expires_at=2**40, issued_at=0)
    sockets = [RecordingSocket() for _ in range(4)]
    conns = [gateway._open(s, claims) for s in sockets]
    for conn, last in zip(conns, (3, 3, 4, None), strict=True):  # the last one is still joining
        conn.rooms[room] = last
        gateway._rooms.setdefault(room, set()).add(conn)

    batch = [("room", room, f'{{"seq":{seq}}}', seq, None) for seq in (4, 5, 6)]
    batch.append(("room", room, '{"type":"presence"}', 0, None))
    gateway.deliver(batch)

    for socket in sockets[:2]:
        assert len(socket.frames) == 2 and isinstance(socket.frames[0], Prepared)  # one write for the run
        assert _texts(socket.frames) == ['{"seq":4}', '{"seq":5}', '{"seq":6}', '{"type":"presence"}']
    assert _texts(sockets[2].frames) == ['{"seq":5}', '{"seq":6}', '{"type":"presence"}']  # had 4 already
    assert sockets[3].frames == []  # its `joined` will set where it starts
    assert [c.rooms[room] for c in conns] == [6, 6, 6, None]
    assert gateway.delivered == 3 + 3 + 2 + 3

    gateway.deliver([("room", room, '{"seq":6}', 6, None)])  # a replay of what everyone has: nothing
    assert [len(s.frames) for s in sockets] == [2, 2, 2, 0]


def test_overlapping_joins_never_send_a_socket_a_message_twice(settings):
    """After a host restart the gateway rejoins its sockets while a client may rejoin on its own (from an
    older ``since``): the second ``joined`` must not make the gateway send again what the socket has."""
    gateway = Gateway(settings, backend=None, authenticate=None, kind="test")
    room = str(uuid.uuid4())
    claims = AccessClaims(user_id=uuid.uuid4(), role="listener", jti="j", expires_at=2**40, issued_at=0)
    socket = RecordingSocket()
    conn = gateway._open(socket, claims)
    gateway._rooms.setdefault(room, set()).add(conn)
    conn.rooms[room] = None
    gateway.deliver([("joined", conn.id, '{"type":"joined"}', 3, room)])
    gateway.deliver([("room", room, f'{{"seq":{seq}}}', seq, None) for seq in (4, 5)])

    conn.rooms[room] = None  # the client's rejoin from since=3, as Gateway._join marks it
    backlog = [("conn", conn.id, f'{{"seq":{seq}}}', seq, room) for seq in (4, 5, 6)]
    gateway.deliver([("joined", conn.id, '{"type":"joined"}', 3, room), *backlog])
    assert _texts(socket.frames) == ['{"type":"joined"}', '{"seq":4}', '{"seq":5}', '{"type":"joined"}',
                                     '{"seq":6}']

    gateway._unjoin(conn, room)  # a leave forgets it: a new join replays from its own `since`
    conn.sent.pop(room)
    gateway._rooms.setdefault(room, set()).add(conn)
    conn.rooms[room] = None
    gateway.deliver([("joined", conn.id, '{"type":"joined"}', 3, room), *backlog])
    assert _texts(socket.frames)[-4:] == ['{"type":"joined"}', '{"seq":4}', '{"seq":5}', '{"seq":6}']
