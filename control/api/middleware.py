"""The edge between HTTP and the domain: one middleware turns every failure into a Kubernetes
`Status` (ApiError subclasses, aiohttp's own 404/405/413, and unexpected exceptions as 500),
and authenticates then authorizes every request through the control.auth seam:
`guarded(authn, authz)`, one layer (every request pays for each middleware layer), with
impersonation (Impersonate-* headers, control.auth.impersonation) between the two. No token:
the anonymous user (kube-apiserver's default), which the authorizer lets read only public
paths; a token nobody knows: 401; a request the authorizer does not allow: 403 in
kube-apiserver's words.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from control.auth.escalation import ACTING_USER
from control.auth.impersonation import impersonate, wants_impersonation
from control.auth.requestinfo import attributes, forbidden_message
from control.auth.types import ANONYMOUS, Authenticator, Authorizer, UserInfo
from control.errors import ApiError, Forbidden, Internal, Unauthorized

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# request[USER]: who is asking (UserInfo), set before any handler runs
USER: Any = web.RequestKey("user", UserInfo) if hasattr(web, "RequestKey") else "knet.user"

_HTTP_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                 405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict",
                 413: "RequestEntityTooLarge", 415: "UnsupportedMediaType",
                 422: "Invalid", 429: "TooManyRequests", 503: "ServiceUnavailable"}


# Status fields in the order of the Go struct, which is the order kube-apiserver writes them.
_STATUS_ORDER = ("kind", "apiVersion", "metadata", "status", "message", "reason", "details",
                 "code")
# What Go's encoding/json escapes inside strings that Python's json leaves alone.
_GO_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
               ("\u2029", "\\u2029"))


def go_json(obj: Any) -> bytes:
    """JSON as kube-apiserver writes it (Go's json.Encoder): compact, UTF-8, HTML characters
    escaped, one trailing newline. Clients that compare error bodies see the same bytes."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in _GO_ESCAPES:
        if char in text:
            text = text.replace(char, escaped)
    return text.encode() + b"\n"


def status_response(err: ApiError, *, empty_details: bool = False) -> web.Response:
    """The Status for err, byte for byte as kube-apiserver encodes one: fields in Go's
    order, empty ones left out (omitempty), `details: {}` where Kubernetes' generic errors
    carry empty details (an unknown path)."""
    status = err.status()
    if empty_details:
        status.setdefault("details", {})
    ordered = {key: status[key] for key in _STATUS_ORDER
               if key in status and (status[key] not in ("", None) or key == "metadata")}
    resp = web.Response(body=go_json(ordered), status=err.code,
                        content_type="application/json")
    if err.retry_after is not None:
        resp.headers["Retry-After"] = str(err.retry_after)
    return resp


def _from_http(exc: web.HTTPException, request: web.Request) -> ApiError:
    """aiohttp's own errors (no route, wrong method, body too large) in kube-apiserver's
    words for the same cases."""
    code = exc.status
    if code == 404:
        message = "the server could not find the requested resource"
    elif code == 405:
        message = "the server does not allow this method on the requested resource"
    elif code == 413:
        message = f"Request entity too large: limit is {request.app._client_max_size}"
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
        return status_response(_from_http(exc, request), empty_details=exc.status in (404, 405))
    if isinstance(exc, ConnectionResetError):
        raise exc
    log.error("%s %s: internal error", request.method, request.path, exc_info=exc)
    return status_response(Internal(f"internal error serving {request.method} "
                                    f"{request.path}: {type(exc).__name__}: {exc}"))


async def _authenticate(request: web.Request, authn: Authenticator) -> UserInfo:
    header = request.headers.get("Authorization", "")
    if not header:
        return ANONYMOUS
    scheme, _, token = header.partition(" ")
    user = await authn.authenticate(token.strip()) if scheme.lower() == "bearer" else None
    if user is None:
        raise Unauthorized(f"Unauthorized: {request.method} {request.path} came with a bearer "
                           "token the API server does not know; use the kubeconfig knet wrote "
                           "('knet kubeconfig')")
    return user


def guarded(authn: Authenticator, authz: Authorizer) -> Middleware:
    """The API's middleware: who is asking, may they, and every failure as a Status."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        token = None
        try:
            user = await _authenticate(request, authn)
            if wants_impersonation(request.headers):
                user = await impersonate(user, request.headers, authz)
            request[USER] = user
            attrs = attributes(user, request.method, request.path, request.query)
            decision = await authz.authorize(attrs)
            if not decision.allowed:
                raise Forbidden(forbidden_message(attrs, decision.reason),
                                kind=attrs.resource, name=attrs.name, group=attrs.api_group)
            token = ACTING_USER.set(user)
            return await handler(request)
        except Exception as exc:  # noqa: BLE001 (_failure re-raises what is no Status)
            return _failure(request, exc)
        finally:
            if token is not None:
                ACTING_USER.reset(token)
    return guard
