"""The Subsonic wire format: the ``subsonic-response`` envelope in XML or JSON, error codes, parameters.

A payload is a plain dict: a scalar value is an XML attribute (a JSON member), a dict is a child
element, a list is repeated child elements (of text, for a list of scalars), and the key ``value`` is
an element's text (``<genre songCount="3">Rock</genre>`` is ``{"value": "Rock", "songCount": 3}``).
The same dict therefore renders as the XML the original Subsonic schema defines and as the JSON the
OpenSubsonic documents show. Errors are answered with HTTP 200 and ``status="failed"``: that is what
every Subsonic client expects.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

API_VERSION = "1.16.1"
SERVER_TYPE = "verseflow"
SERVER_VERSION = "0.1.0"
XML_NAMESPACE = "http://subsonic.org/restapi"

# Error codes of the specification (docs/Responses/error.md).
GENERIC = 0
MISSING_PARAMETER = 10
WRONG_CREDENTIALS = 40
TOKEN_AUTH_NOT_SUPPORTED = 41
AUTH_MECHANISM_NOT_SUPPORTED = 42
CONFLICTING_AUTH = 43
INVALID_API_KEY = 44
NOT_AUTHORIZED = 50
NOT_FOUND = 70

_CALLBACK = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$.]{0,63}$")


class SubsonicError(Exception):
    """A failure the client sees as ``<error code=... message=...>``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Params:
    """The request's parameters (query string and form body merged); names may repeat (``id=1&id=2``)."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in items:
            self._values.setdefault(name, []).append(value)

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._values.get(name)
        return values[0] if values else default

    def has(self, name: str) -> bool:
        return bool(self._values.get(name))

    def all(self, name: str) -> list[str]:
        return list(self._values.get(name, ()))

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None or value == "":
            raise SubsonicError(MISSING_PARAMETER, f"required parameter '{name}' is missing")
        return value

    def integer(self, name: str, default: int | None = None, *, low: int | None = None,
                high: int | None = None) -> int | None:
        """An integer parameter clamped into ``low..high``; a malformed one is a generic error (0)."""
        text = self.get(name)
        if text is None or text == "":
            return default
        try:
            value = int(text)
        except ValueError:
            raise SubsonicError(GENERIC, f"parameter '{name}' must be an integer") from None
        if low is not None:
            value = max(low, value)
        if high is not None:
            value = min(high, value)
        return value

    def boolean(self, name: str, default: bool) -> bool:
        text = self.get(name)
        return default if text is None else text.lower() in ("true", "1", "yes")

    def format(self) -> str:
        fmt = (self.get("f") or "xml").lower()
        return fmt if fmt in ("xml", "json", "jsonp") else "xml"


def envelope(payload: Mapping[str, Any] | None = None, *, error: SubsonicError | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": "failed" if error else "ok", "version": API_VERSION, "type": SERVER_TYPE,
                            "serverVersion": SERVER_VERSION, "openSubsonic": True}
    if error is not None:
        body["error"] = {"code": error.code, "message": error.message}
    elif payload:
        body.update(payload)
    return body


def render(body: Mapping[str, Any], fmt: str, callback: str | None = None) -> tuple[bytes, str]:
    """The envelope as bytes and its content type, in the client's format (``f``)."""
    if fmt in ("json", "jsonp"):
        text = json.dumps({"subsonic-response": _jsonable(body)}, ensure_ascii=False, separators=(",", ":"))
        if fmt == "jsonp" and callback and _CALLBACK.match(callback):
            return f"{callback}({text});".encode(), "application/javascript"
        return text.encode(), "application/json"
    root = ET.Element("subsonic-response", {"xmlns": XML_NAMESPACE})
    _fill(root, body)
    return b'<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="utf-8", xml_declaration=False), \
        "text/xml; charset=utf-8"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(round(value, 3))
    return str(value)


def _fill(element: ET.Element, data: Mapping[str, Any]) -> None:
    for name, value in data.items():
        if value is None:
            continue
        if name == "value" and not isinstance(value, Mapping | list):
            element.text = _scalar(value)
        elif isinstance(value, Mapping):
            _fill(ET.SubElement(element, name), value)
        elif isinstance(value, list):
            for item in value:
                child = ET.SubElement(element, name)
                if isinstance(item, Mapping):
                    _fill(child, item)
                else:
                    child.text = _scalar(item)
        else:
            element.set(name, _scalar(value))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value
