"""A streaming ``multipart/form-data`` reader: small fields buffered with a cap, files passed through.

Starlette's ``request.form()`` spools every file to a temporary file before the route sees it; an
upload would then be written twice and its size limit checked only afterwards. Here the body is
parsed as it arrives (python-multipart's push parser) and the route consumes the parts in order:
a text field's value (at most ``field_max_bytes``) or a file's chunks, which go straight to the
object store with the store enforcing the upload limit. Malformed bodies raise ``InvalidInput``.
"""

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from verseflow.errors import InvalidInput, PayloadTooLarge


@dataclass
class Part:
    name: str
    filename: str | None
    content_type: str | None


class MultipartReader:
    """Iterate ``parts()``; for each, read ``value()`` (a field) or iterate ``chunks()`` (a file)."""

    def __init__(self, request: Request, *, field_max_bytes: int, max_parts: int = 32) -> None:
        content_type, options = parse_options_header(request.headers.get("content-type", ""))
        boundary = options.get(b"boundary")
        if content_type != b"multipart/form-data" or not boundary:
            raise InvalidInput("expected multipart/form-data with a boundary")
        self._body = request.stream()
        self._events: deque[tuple[str, Any]] = deque()
        self._header_name = b""
        self._headers: dict[bytes, bytes] = {}
        self._field_max = field_max_bytes
        self._max_parts = max_parts
        self._parts = 0
        self._ended = False
        self._parser = MultipartParser(boundary, {
            "on_part_begin": lambda: self._headers.clear(),
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": lambda: self._events.append(("part", self._describe())),
            "on_part_data": lambda data, start, end: self._events.append(("data", bytes(data[start:end]))),
            "on_part_end": lambda: self._events.append(("end", b"")),
            "on_end": lambda: self._events.append(("done", b"")),
        })

    async def parts(self) -> AsyncIterator[Part]:
        """Each part as its headers end; the data of a part the caller does not read is passed over."""
        while (event := await self._next()) is not None:
            kind, part = event
            if kind == "part":
                self._parts += 1
                if self._parts > self._max_parts:
                    raise InvalidInput(f"more than {self._max_parts} form parts")
                yield part
            elif kind == "done":
                return
        raise InvalidInput("the multipart body ended early")

    async def chunks(self) -> AsyncIterator[bytes]:
        """The current part's bytes, as they arrive."""
        while (event := await self._next()) is not None:
            kind, data = event
            if kind == "data":
                yield data
            elif kind == "end":
                return
        raise InvalidInput("the multipart body ended inside a part")

    async def value(self) -> str:
        """The current part as text (UTF-8), at most ``field_max_bytes``."""
        buffer = bytearray()
        async for chunk in self.chunks():
            buffer += chunk
            if len(buffer) > self._field_max:
                raise PayloadTooLarge(f"a form field is longer than {self._field_max} bytes")
        try:
            return buffer.decode()
        except UnicodeDecodeError:
            raise InvalidInput("a form field is not UTF-8 text") from None

    async def _next(self) -> tuple[str, Any] | None:
        while not self._events:
            if self._ended:
                return None
            try:
                chunk = await anext(self._body)
            except StopAsyncIteration:
                self._ended = True
                self._parser.finalize()
                continue
            try:
                self._parser.write(chunk)
            except MultipartParseError as exc:
                raise InvalidInput(f"malformed multipart body: {exc}") from None
        return self._events.popleft()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        name = self._header_name.lower()
        self._headers[name] = self._headers.get(name, b"") + data[start:end]
        if len(self._headers[name]) > 4096:
            raise InvalidInput("a multipart header is too long")

    def _header_end(self) -> None:
        self._header_name = b""

    def _describe(self) -> Part:
        """The part whose headers just ended (called by the parser, before later parts' headers)."""
        disposition, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        if disposition != b"form-data" or name is None:
            raise InvalidInput("each form part needs Content-Disposition: form-data with a name")
        filename = options.get(b"filename")
        content_type = self._headers.get(b"content-type")
        return Part(name=name.decode(errors="replace"),
                    filename=filename.decode(errors="replace") if filename else None,
                    content_type=content_type.decode(errors="replace") if content_type else None)
