"""The OpenSubsonic API at ``/rest/``: every method as ``/rest/name`` and ``/rest/name.view``, by GET or
by form POST (the ``formPost`` extension), answered in XML (default), JSON or JSONP (``f``).

Thin: parameters are merged from the query string and the form body, the caller is authenticated
(``subsonic/auth.py``), the method runs (``subsonic/endpoints.py``) and the envelope is rendered
(``subsonic/protocol.py``). Failures are HTTP 200 with ``status="failed"`` and a Subsonic error code,
as every client expects; domain errors map to 70 (not found), 50 (forbidden), 40 (unauthenticated) or
0. Browser clients (Feishin's web build) get CORS: credentials travel in parameters, never cookies, so
any origin may call.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from serve_deployments.deps import ClientIp, Ctx
from serve_deployments.objects import serve_object
from subsonic import auth, endpoints
from subsonic.protocol import GENERIC, NOT_FOUND, Params, SubsonicError, envelope, render
from verseflow.errors import DomainError, Forbidden, NotFound, Unauthorized
from verseflow.logs import get_logger
from verseflow.storage import object_store

router = APIRouter(tags=["subsonic"])
log = get_logger("subsonic")

_CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Content-Length, Content-Range"}
_FORM = "application/x-www-form-urlencoded"


@router.api_route("/rest/{method}", methods=["GET", "POST", "HEAD", "OPTIONS"], include_in_schema=False)
async def rest(method: str, request: Request, ctx: Ctx, ip: ClientIp) -> Response:
    if request.method == "OPTIONS":  # CORS preflight
        allowed = request.headers.get("access-control-request-headers", "Content-Type")
        return Response(status_code=204, headers={**_CORS, "Access-Control-Allow-Methods": "GET, POST, HEAD",
                                                  "Access-Control-Allow-Headers": allowed[:512],
                                                  "Access-Control-Max-Age": "86400"})
    items = list(request.query_params.multi_items())
    if request.method == "POST" and request.headers.get("content-type", "").lower().startswith(_FORM):
        form = await request.form()
        items += [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    params = Params(items)
    name = method.removesuffix(".view")
    try:
        handler = endpoints.METHODS.get(name)
        if handler is None:
            raise SubsonicError(NOT_FOUND, f"unknown or unsupported method {name[:60]!r}")
        caller = None
        if name not in endpoints.PUBLIC:
            caller = await auth.authenticate(ctx.pool, ctx.redis, ctx.settings, params, ip)
        call = endpoints.Call(ctx.pool, ctx.redis, ctx.settings, object_store(ctx.settings), params, caller)
        result = await handler(call)
    except SubsonicError as exc:
        return _answer(params, envelope(error=exc))
    except DomainError as exc:
        return _answer(params, envelope(error=SubsonicError(_code(exc), exc.detail)))
    if isinstance(result, endpoints.Binary):
        return _binary(ctx, result)
    return _answer(params, envelope(result))


def _code(exc: DomainError) -> int:
    if isinstance(exc, NotFound):
        return NOT_FOUND
    if isinstance(exc, Forbidden):
        return 50
    if isinstance(exc, Unauthorized):
        return 40
    return GENERIC


def _answer(params: Params, body: dict) -> Response:
    content, media_type = render(body, params.format(), params.get("callback"))
    return Response(content, media_type=media_type, headers=_CORS)


def _binary(ctx: Ctx, result: endpoints.Binary) -> Response:
    headers = dict(_CORS)
    if result.filename:
        headers["Content-Disposition"] = f'attachment; filename="{result.filename}"'
    if result.key is not None:
        headers["Cache-Control"] = "private, max-age=3600"
        return serve_object(object_store(ctx.settings), result.key, result.content_type, headers,
                            expires_s=ctx.settings.media_url_ttl_s)
    headers["Cache-Control"] = "public, max-age=86400"
    return Response(result.data, media_type=result.content_type, headers=headers)
