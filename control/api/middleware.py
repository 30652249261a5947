"""The edge between HTTP and the domain: one middleware turns every failure into a Kubernetes
`Status` (ApiError subclasses, aiohttp's own 404/405/413, and unexpected exceptions as 500),
and checks the bearer token on everything but the health endpoints: `guarded(token)`, one
layer (every request pays for each middleware layer).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from control.errors import ApiError, Internal, Unauthorized

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/livez"})

_HTTP_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                 405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict",
                 413: "RequestEntityTooLarge", 415: "UnsupportedMediaType",
                 422: "Invalid", 429: "TooManyRequests", 503: "ServiceUnavailable"}


def status_response(err: ApiError) -> web.Response:
    body = json.dumps(err.status()).encode()
    resp = web.Response(body=body, status=err.code, content_type="application/json")
    if err.retry_after is not None:
        resp.headers["Retry-After"] = str(err.retry_after)
    return resp


def _from_http(exc: web.HTTPException, request: web.Request) -> ApiError:
    code = exc.status
    if code == 404:
        message = (f"the server could not find the requested resource: {request.method} "
                   f"{request.path}")
    elif code == 405:
        message = f"the server does not allow {request.method} on {request.path}"
    elif code == 413:
        message = (f"the request body is too large ({request.content_length or '?'} bytes); "
                   f"the limit is {request.app._client_max_size} bytes")
    else:
        message = exc.text or exc.reason
    err = ApiError(message)
    err.code = code
    err.reason = _HTTP_REASONS.get(code, exc.reason.replace(" ", ""))
    return err


def _failure(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The Status response for `exc`; re-raises what must not become one."""
    if isinstance(exc, ApiError):
        if exc.code >= 500:
            log.error("%s %s: %s", request.method, request.path, exc.message)
        return status_response(exc)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        return status_response(_from_http(exc, request))
    if isinstance(exc, ConnectionResetError):
        raise exc
    log.error("%s %s: internal error", request.method, request.path, exc_info=exc)
    return status_response(Internal(f"internal error serving {request.method} "
                                    f"{request.path}: {type(exc).__name__}: {exc}"))


def _check_token(request: web.Request, expected: bytes) -> None:
    if request.path not in OPEN_PATHS:
        got = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(got, expected):
            why = "no bearer token" if not got else "a wrong bearer token"
            raise Unauthorized(f"Unauthorized: {request.method} {request.path} came with "
                               f"{why}; use the token from the kubeconfig knet wrote")


def guarded(token: str) -> Middleware:
    """The API's middleware: the bearer token checked, and every failure as a Status."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            _check_token(request, expected)
            return await handler(request)
        except Exception as exc:  # noqa: BLE001 (_failure re-raises what is no Status)
            return _failure(request, exc)
    return guard
