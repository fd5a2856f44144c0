"""The realtime wire protocol: client messages (validated), server messages, close codes.

One JSON text frame per message, ``{"type": ...}``. Both transports (``/v1/ws`` on Serve and the
edge's ``websockets`` server) parse with :func:`parse_client_message` and answer with the builders
here, so a client cannot tell them apart. ``docs/realtime.md`` is the reference for client authors.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

# Close codes. 4xxx mirror the HTTP status a REST client would get for the same reason.
CLOSE_GOING_AWAY = 1001  # server shutting down: reconnect elsewhere
CLOSE_TOO_LARGE = 1009  # frame above ws_max_message_bytes
CLOSE_IDLE = 4000  # nothing received for ws_idle_timeout_s
CLOSE_UNAUTHORIZED = 4401  # missing, bad, expired or revoked token
CLOSE_FORBIDDEN = 4403  # authenticated, but not allowed in this room (Yjs endpoint)
CLOSE_NOT_FOUND = 4404  # no such room (Yjs endpoint)
CLOSE_SLOW_CONSUMER = 4408  # outbound queue full or a write blocked too long
CLOSE_RATE_LIMITED = 4429  # more messages than ws_messages_per_s allows


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Auth(_Message):
    type: Literal["auth"]
    token: str = Field(min_length=1, max_length=4096)


class Join(_Message):
    type: Literal["join"]
    room: uuid.UUID
    since: int | None = Field(None, ge=0, description="last seq the client has; replay everything after it")


class Leave(_Message):
    type: Literal["leave"]
    room: uuid.UUID


class Chat(_Message):
    type: Literal["chat"]
    room: uuid.UUID
    text: str = Field(min_length=1)
    ref: str | None = Field(None, min_length=1, max_length=64, description="client id; a retry with it is deduplicated")


class TransportUpdate(_Message):
    """The host's playback state; the room stamps it with server time."""

    type: Literal["transport"]
    room: uuid.UUID
    track_id: uuid.UUID | None = None
    position_ms: int = Field(ge=0, le=86_400_000)
    playing: bool
    rate: float = Field(1.0, ge=0.25, le=4.0)


class TimeRequest(_Message):
    """NTP-style clock probe: the client sends its clock, gets the server's back."""

    type: Literal["time"]
    id: str | int | None = None
    t0: float | None = None


class Ping(_Message):
    type: Literal["ping"]


ClientMessage = Annotated[
    Auth | Join | Leave | Chat | TransportUpdate | TimeRequest | Ping, Field(discriminator="type")
]
_client_message: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


class ProtocolError(Exception):
    """A message the server cannot act on; the socket stays open and gets an ``error`` message."""

    def __init__(self, code: str, message: str, *, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


def parse_client_message(raw: str | bytes) -> ClientMessage:
    """Validate one frame; raise :class:`ProtocolError` with a message a developer can act on."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad_json", f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError("bad_message", 'a message is a JSON object with a string "type"')
    try:
        return _client_message.validate_python(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "type"
        code = "unknown_type" if first["type"] == "union_tag_invalid" else "invalid"
        raise ProtocolError(code, f"{where}: {first['msg']}") from None


def now_ms() -> int:
    return int(time.time() * 1000)


def dumps(message: dict[str, Any]) -> str:
    """Compact JSON; UUIDs and other values become strings."""
    return json.dumps(message, separators=(",", ":"), default=str)


def error(code: str, message: str, *, ref: str | None = None, room: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if ref is not None:
        payload["ref"] = ref
    if room is not None:
        payload["room"] = room
    return payload


def time_reply(request: TimeRequest) -> dict[str, Any]:
    return {"type": "time", "id": request.id, "t0": request.t0, "server_ts": time.time() * 1000}
