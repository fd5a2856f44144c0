"""The shared Yjs document of a live room, speaking the y-websocket protocol as a plain object.

Every room has one collaborative document: the playlist (a ``Y.Array`` named ``"playlist"``) and
the session notes (a ``Y.Text`` named ``"notes"``). Browsers edit it with stock ``yjs`` +
``y-websocket`` clients, so this module speaks their binary protocol byte for byte:

* ``[0, 0, state vector]`` sync step 1, ``[0, 1, update]`` sync step 2, ``[0, 2, update]`` update;
* ``[1, awareness update]`` presence (who is here, cursors), ``[3]`` query awareness;
* ``[2, 0, reason]`` y-protocols' auth message "permission denied", sent (never received) when a
  read-only connection first tries to change the document.

Why a synchronous object and not pycrdt-websocket: the room's host actor owns the only copy of the
document and feeds it one frame at a time, so there is nothing to lock and no room-creation race
(pycrdt-websocket creates rooms lazily and races when two clients open one at once). The class
never does I/O: ``receive`` says what to send to whom and which update to persist, and the caller
persists that update *before* broadcasting it, so whatever a peer has seen survives a restart.

A stock client's conversation, as observed against this class: on open it sends sync step 1 and
its awareness state (``{}`` until the app sets one); the server's greeting carries the server's own
step 1, which the client answers with a step 2 holding whatever the server lacks (offline edits);
the client counts as synced when it receives the step 2 replying to its own step 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from pycrdt import (
    Array,
    Doc,
    Text,
    TransactionEvent,
    YMessageType,
    YSyncMessageType,
    create_awareness_message,
    create_sync_message,
    create_update_message,
    get_update,
    merge_updates,
    write_message,
    write_var_uint,
)

QUERY_AWARENESS = 3  # y-websocket's messageQueryAwareness; pycrdt's YMessageType stops at 1
AUTH = 2  # y-websocket's messageAuth (y-protocols/auth.js)
PERMISSION_DENIED = 0  # y-protocols/auth.js messagePermissionDenied, the auth protocol's only message
READ_ONLY_REASON = "read-only: edits from this connection are not saved or shared"
EMPTY_UPDATE = b"\x00\x00"  # no structs, empty delete set
_MAX_VARUINT_BYTES = 10  # 70 bits: far beyond any Yjs client ID, clock or length


class InvalidFrame(ValueError):
    """A frame that is not a well-formed y-websocket message; the document is left untouched."""


@dataclass
class Reaction:
    """What the caller must do after :meth:`SharedDocument.receive`, in this order."""

    reply: list[bytes] = field(default_factory=list)  # frames for the sender only
    broadcast: list[bytes] = field(default_factory=list)  # frames for every OTHER connection of the room
    update: bytes | None = None  # persist this BEFORE sending `broadcast`


@dataclass
class _Presence:
    conn_id: str
    clock: int
    state: str  # the client's JSON text, passed on verbatim


class _Reader:
    """lib0 decoding with bounds checks (pycrdt's Decoder silently truncates short payloads)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def var_uint(self, what: str) -> int:
        value = shift = 0
        for _ in range(_MAX_VARUINT_BYTES):
            if self.pos >= len(self.data):
                raise InvalidFrame(f"truncated {what}")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
        raise InvalidFrame(f"{what} is not a valid varuint")

    def var_bytes(self, what: str) -> bytes:
        length = self.var_uint(f"length of {what}")
        if self.pos + length > len(self.data):
            raise InvalidFrame(f"{what} declares {length} bytes, only {len(self.data) - self.pos} left")
        chunk = self.data[self.pos : self.pos + length]
        self.pos += length
        return chunk

    def end(self, what: str) -> None:
        if self.pos != len(self.data):
            raise InvalidFrame(f"{len(self.data) - self.pos} trailing bytes after {what}")


def _parse_awareness(payload: bytes) -> list[tuple[int, int, str, object]]:
    """An awareness update as (client ID, clock, JSON text, parsed state); state None means removed."""
    reader = _Reader(payload)
    entries = []
    for _ in range(reader.var_uint("awareness count")):
        client_id = reader.var_uint("awareness client ID")
        clock = reader.var_uint("awareness clock")
        raw = reader.var_bytes("awareness state")
        try:
            text = raw.decode()
            state = json.loads(text, parse_constant=_reject_constant)  # browsers' JSON.parse refuses NaN
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidFrame(f"awareness state of client {client_id} is not JSON: {exc}") from None
        entries.append((client_id, clock, text, state))
    reader.end("awareness update")
    return entries


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _awareness_frame(entries: Iterable[tuple[int, int, str]]) -> bytes:
    """Encode (client ID, clock, JSON text) entries; the length prefix counts UTF-8 bytes.

    (pycrdt's ``Encoder.write_var_string`` writes the character count, wrong for non-ASCII names.)
    """
    items = list(entries)
    body = write_var_uint(len(items)) + b"".join(
        write_var_uint(client_id) + write_var_uint(clock) + write_message(text.encode())
        for client_id, clock, text in items
    )
    return create_awareness_message(body)


def permission_denied_message(reason: str) -> bytes:
    """y-protocols/auth.js ``writePermissionDenied`` framed as y-websocket reads it:
    varUint(2) varUint(0) varString(reason), the string's length counting UTF-8 bytes."""
    return write_var_uint(AUTH) + write_var_uint(PERMISSION_DENIED) + write_message(reason.encode())


class SharedDocument:
    """One room's document plus the awareness states of its connected clients."""

    def __init__(self, updates: Iterable[bytes] = ()) -> None:
        """Rebuild the document by replaying persisted updates (oldest first, though Yjs does not mind)."""
        self._doc = Doc()
        self._playlist = self._doc.get("playlist", type=Array)
        self._notes = self._doc.get("notes", type=Text)
        self._presence: dict[int, _Presence] = {}  # awareness client ID -> latest announcement
        self._denied: set[str] = set()  # read-only connections already told their edits are refused
        self._changes: list[bytes] = []  # updates emitted by the transaction being applied
        # Updates whose structs still wait for missing predecessors. The document keeps them
        # internally but leaves them out of get_update(), so snapshot() must add them back.
        self._pending: list[bytes] = []
        self._doc.observe(self._on_transaction)
        for index, update in enumerate(updates):
            try:
                self._apply(update)
            except InvalidFrame as exc:
                raise InvalidFrame(f"persisted update #{index}: {exc}") from None

    def _on_transaction(self, event: TransactionEvent) -> None:
        self._changes.append(event.update)

    def _apply(self, update: bytes) -> bool:
        """Apply an update; True if the document changed or kept part of it pending (so: persist it)."""
        self._changes.clear()
        try:
            self._doc.apply_update(update)
        except ValueError as exc:
            raise InvalidFrame(f"not a Yjs update: {exc}") from None
        changed = any(change != EMPTY_UPDATE for change in self._changes)
        state = self._doc.get_state()
        if changed:
            self._pending = [p for p in self._pending if _has_structs(get_update(p, state))]
        if _has_structs(get_update(update, state)):
            if update not in self._pending:
                self._pending.append(update)
            return True
        return changed

    def greeting(self) -> list[bytes]:
        """Frames for a new connection: our step 1 (so the client sends what we lack) and who is here."""
        frames = [create_sync_message(self._doc)]
        if self._presence:
            frames.append(self._all_awareness())
        return frames

    def receive(self, conn_id: str, frame: bytes | bytearray | memoryview, *, can_write: bool,
                read_only_reason: str = READ_ONLY_REASON) -> Reaction:
        """Handle one frame from `conn_id`; raises InvalidFrame, leaving all state as it was.

        Without ``can_write`` the connection's updates are dropped, and the first one that would
        have changed the document is answered with a permission-denied message carrying
        ``read_only_reason`` (see :meth:`_refuse`)."""
        if isinstance(frame, str):
            raise InvalidFrame("text frame: the y-websocket protocol is binary")
        frame = bytes(frame)  # pycrdt takes bytes only; transports may hand over bytearray or memoryview
        reader = _Reader(frame)
        kind = reader.var_uint("message type")
        if kind == YMessageType.SYNC:
            step = reader.var_uint("sync message type")
            payload = reader.var_bytes("sync payload")
            reader.end("sync message")
            if step == YSyncMessageType.SYNC_STEP1:
                return Reaction(reply=[self._step2(payload)])
            if step in (YSyncMessageType.SYNC_STEP2, YSyncMessageType.SYNC_UPDATE):
                if not can_write:
                    return self._refuse(conn_id, payload, read_only_reason)
                if not self._apply(payload):
                    return Reaction()
                return Reaction(broadcast=[create_update_message(payload)], update=payload)
            raise InvalidFrame(f"unknown sync message type {step}")
        if kind == YMessageType.AWARENESS:
            payload = reader.var_bytes("awareness update")
            reader.end("awareness message")
            self._remember(conn_id, _parse_awareness(payload))
            return Reaction(broadcast=[frame])
        if kind == QUERY_AWARENESS:
            reader.end("query-awareness message")
            return Reaction(reply=[self._all_awareness()])
        raise InvalidFrame(f"unsupported message type {kind}")

    def permission_changed(self, conn_id: str, can_write: bool) -> list[bytes]:
        """A connection's write permission changed while it is open; frames for that connection.

        Its refusal notice is reset either way, so a demoted editor's first refused edit is
        explained again. A promoted connection gets our sync step 1 once more: its answer (a step 2)
        carries whatever we lack. Without it, a client that edited while read-only would stay
        diverged for good, since its next edits build on the dropped ones and would wait here for
        those predecessors forever. A stock client's edits made while read-only are therefore
        saved once it may write (the web app offers no editing while read-only).
        """
        self._denied.discard(conn_id)
        return [create_sync_message(self._doc)] if can_write else []

    def _refuse(self, conn_id: str, update: bytes, reason: str) -> Reaction:
        """A read-only connection's update: dropped, and the first real edit is answered once.

        A stock client applies its edits locally before sending them, so a dropped edit leaves it
        diverged from everyone else; y-websocket reports y-protocols' permission-denied message
        (``permissionDeniedHandler``), so it learns why instead of diverging in silence. Once per
        connection: an editor retrying on every keystroke gets one notice, not a stream of them.
        Updates that change nothing (the step 2 every client sends on connect) are not edits.
        """
        if conn_id in self._denied or not self._would_change(update):
            return Reaction()
        self._denied.add(conn_id)
        return Reaction(reply=[permission_denied_message(reason)])

    def _would_change(self, update: bytes) -> bool:
        """Whether applying ``update`` would change the document, without applying it.

        New content is read off the update against our state vector. Deletions are not (a state
        vector does not cover them) and a client's sync step 2 repeats every deletion it has seen,
        so an update that only deletes is tried on a throwaway copy; that copy is built only for
        such updates of not-yet-refused read-only connections. (A struct this document keeps
        pending counts as new: at worst a listener hears the notice once without having edited.)
        """
        try:
            news = get_update(update, self._doc.get_state())
        except ValueError as exc:
            raise InvalidFrame(f"not a Yjs update: {exc}") from None
        if _has_structs(news):
            return True
        if news == EMPTY_UPDATE:
            return False
        probe = Doc()
        probe.apply_update(self.snapshot())
        changes: list[bytes] = []
        probe.observe(lambda event: changes.append(event.update))
        try:
            probe.apply_update(update)
        except ValueError as exc:
            raise InvalidFrame(f"not a Yjs update: {exc}") from None
        return any(change != EMPTY_UPDATE for change in changes)

    def _step2(self, state_vector: bytes) -> bytes:
        try:
            diff = self._doc.get_update(state_vector)
        except ValueError as exc:
            raise InvalidFrame(f"not a Yjs state vector: {exc}") from None
        return bytes([YMessageType.SYNC, YSyncMessageType.SYNC_STEP2]) + write_message(diff)

    def _remember(self, conn_id: str, entries: list[tuple[int, int, str, object]]) -> None:
        """Keep the newest state per client ID, by the same clock rule as y-protocols' awareness.

        A client ID belongs to the connection that announced it last, so a client that reconnects
        before the gateway noticed its old socket die keeps its presence when the old one closes.
        """
        for client_id, clock, text, state in entries:
            known = self._presence.get(client_id)
            if known is not None and clock < known.clock:
                continue  # stale
            if state is None:
                self._presence.pop(client_id, None)
            elif known is None or clock > known.clock:
                self._presence[client_id] = _Presence(conn_id, clock, text)
            else:
                known.conn_id = conn_id  # same clock: a repeat, e.g. the first announcement after a reconnect

    def _all_awareness(self) -> bytes:
        return _awareness_frame((cid, p.clock, p.state) for cid, p in self._presence.items())

    def disconnect(self, conn_id: str) -> list[bytes]:
        """Forget a closed connection; frames telling the others its clients left (same clock + null)."""
        self._denied.discard(conn_id)
        gone = [(cid, p.clock) for cid, p in self._presence.items() if p.conn_id == conn_id]
        for client_id, _ in gone:
            del self._presence[client_id]
        return [_awareness_frame((cid, clock, "null") for cid, clock in gone)] if gone else []

    def snapshot(self) -> bytes:
        """The whole document as one update, replacing the persisted log when compacting."""
        update = self._doc.get_update()
        return merge_updates(update, *self._pending) if self._pending else update

    def to_json(self) -> dict:
        """Plain JSON view for HTTP responses and tests."""
        return {"playlist": self._playlist.to_py(), "notes": str(self._notes)}


def _has_structs(update: bytes) -> bool:
    """Whether an update carries any inserted content (its first varuint counts the clients with structs)."""
    return update[:1] != b"\x00"
