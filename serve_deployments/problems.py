"""RFC 9457 problem details for every error the API returns.

Domain errors, validation errors and HTTP errors all leave as ``application/problem+json`` with
a stable ``type``, a ``title``, the ``status`` and a ``detail``. Validation problems list what was
wrong without echoing the input back (it may hold a password).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from verseflow.errors import DomainError, RateLimited
from verseflow.logs import get_logger, request_id_var

PROBLEM_CONTENT_TYPE = "application/problem+json"
log = get_logger("http")


def problem(status: int, detail: str, *, title: str | None = None, headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    phrase = HTTPStatus(status).phrase
    body = {
        "type": "/problems/" + (title or phrase).lower().replace(" ", "-"),
        "title": title or phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    if (request_id := request_id_var.get()) is not None:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_CONTENT_TYPE)


async def _domain_error(_: Request, exc: DomainError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    if exc.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    extra = {k: v for k, v in exc.extra.items() if isinstance(v, str | int | float | bool)}
    return problem(exc.status, exc.detail, title=exc.title, headers=headers, **extra)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))}
        for err in exc.errors()
    ]
    if any(e["type"] == "json_invalid" for e in errors):
        return problem(400, "the request body is not valid JSON", title="Malformed request", errors=errors)
    return problem(422, "the request did not validate", title="Invalid input", errors=errors)


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return problem(exc.status_code, detail, headers=getattr(exc, "headers", None))


async def _unhandled(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "an internal error occurred; it has been logged")


_HANDLERS = ((DomainError, _domain_error), (RequestValidationError, _validation_error),
             (StarletteHTTPException, _http_error), (Exception, _unhandled))


def install(app: FastAPI) -> None:
    for kind, handler in _HANDLERS:
        app.add_exception_handler(kind, handler)


async def as_response(request: Request, exc: Exception) -> JSONResponse:
    """The problem the app's handlers answer for ``exc``, for a route class that must add its own
    headers to every response, errors included (tus's ``Tus-Resumable``)."""
    handler = next(handler for kind, handler in _HANDLERS if isinstance(exc, kind))
    return await handler(request, exc)
