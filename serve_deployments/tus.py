"""The tus 1.0.0 wire format (https://tus.io/protocols/resumable-upload): headers in and out.

What ``routes/uploads.py`` needs and nothing of VerseFlow's: the protocol's constants, the
``Upload-Metadata`` codec, integer headers, HTTP dates, and a route class that puts
``Tus-Resumable`` on every response (errors too) and refuses other protocol versions with 412.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Coroutine
from datetime import datetime
from email.utils import format_datetime
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from serve_deployments import problems
from verseflow.errors import MalformedRequest

VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,expiration"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"

_KEY = re.compile(r"^[^\s,]+$")
_DIGITS = re.compile(r"^[0-9]{1,18}$")  # within PostgreSQL's bigint


class TusRoute(APIRoute):
    """Every response carries ``Tus-Resumable``; requests (but OPTIONS) must declare version 1.0.0."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def tus_handler(request: Request) -> Response:
            if request.method != "OPTIONS" and request.headers.get("tus-resumable") != VERSION:
                response: Response = problems.problem(
                    412, f"this server speaks tus {VERSION}: send `Tus-Resumable: {VERSION}`",
                    headers={"Tus-Version": VERSION})
            else:
                try:
                    response = await handler(request)
                except Exception as exc:  # noqa: BLE001 - every error becomes the app's problem response
                    response = await problems.as_response(request, exc)
            response.headers["Tus-Resumable"] = VERSION
            return response

        return tus_handler


def parse_metadata(header: str, *, max_bytes: int) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs (the value may be absent)."""
    if len(header) > max_bytes:
        raise MalformedRequest(f"Upload-Metadata is longer than {max_bytes} bytes")
    pairs: dict[str, str] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition(" ")
        if not key and not value:
            continue
        if not _KEY.match(key) or key in pairs:
            raise MalformedRequest("Upload-Metadata keys must be unique, non-empty and free of spaces and commas")
        try:
            pairs[key] = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise MalformedRequest(f"Upload-Metadata: the value of {key!r} is not base64-encoded UTF-8") from None
        if "\x00" in pairs[key]:
            raise MalformedRequest(f"Upload-Metadata: the value of {key!r} contains a NUL character")
    return pairs


def integer_header(name: str, value: str | None) -> int | None:
    """A non-negative integer header (``Upload-Length``, ``Upload-Offset``); None when absent."""
    if value is None:
        return None
    if not _DIGITS.match(value.strip()):
        raise MalformedRequest(f"{name} must be a non-negative integer of at most 18 digits")
    return int(value)


def http_date(moment: datetime) -> str:
    """RFC 9110 date, as ``Upload-Expires`` is written."""
    return format_datetime(moment, usegmt=True)
