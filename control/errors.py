"""The control plane's errors, each one a Kubernetes `Status` waiting to be sent.

    ApiError(code, reason)           -> Status{code, reason, message, details}
    ├── BadRequest        400 BadRequest
    ├── Unauthorized      401 Unauthorized
    ├── Forbidden         403 Forbidden
    ├── NotFound          404 NotFound
    ├── MethodNotAllowed  405 MethodNotAllowed
    ├── AlreadyExists     409 AlreadyExists
    ├── Conflict          409 Conflict        (stale resourceVersion)
    ├── Gone              410 Expired         (watch/list below the compacted revision)
    ├── RequestTooLarge   413 RequestEntityTooLarge
    ├── UnsupportedMedia  415 UnsupportedMediaType
    ├── Invalid           422 Invalid         (with causes: field, reason, message)
    ├── TooManyRequests   429 TooManyRequests (an eviction a disruption budget forbids)
    └── Internal          500 InternalError

The store raises NotFound / AlreadyExists / Conflict / Gone with the key; the object layer
re-raises them naming the object (`pods "web-1" not found`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Cause:
    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


class ApiError(Exception):
    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, kind: str = "", name: str = "", group: str = "",
                 causes: list[Cause] | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.name = name
        self.group = group
        self.causes = causes or []
        self.retry_after = retry_after

    def status(self) -> dict[str, Any]:
        """The Kubernetes Status object for this error."""
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [c.to_dict() for c in self.causes]
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                               "status": "Failure", "message": self.message,
                               "reason": self.reason, "code": self.code}
        if details:
            out["details"] = details
        return out


class BadRequest(ApiError):
    code, reason = 400, "BadRequest"


class Unauthorized(ApiError):
    code, reason = 401, "Unauthorized"


class Forbidden(ApiError):
    code, reason = 403, "Forbidden"


class NotFound(ApiError):
    code, reason = 404, "NotFound"


class MethodNotAllowed(ApiError):
    code, reason = 405, "MethodNotAllowed"


class AlreadyExists(ApiError):
    code, reason = 409, "AlreadyExists"


class Conflict(ApiError):
    code, reason = 409, "Conflict"


class Gone(ApiError):
    code, reason = 410, "Expired"


class RequestTooLarge(ApiError):
    code, reason = 413, "RequestEntityTooLarge"


class UnsupportedMedia(ApiError):
    code, reason = 415, "UnsupportedMediaType"


class Invalid(ApiError):
    code, reason = 422, "Invalid"


class TooManyRequests(ApiError):
    code, reason = 429, "TooManyRequests"


class Internal(ApiError):
    code, reason = 500, "InternalError"


_BY_REASON: dict[str, type[ApiError]] = {
    c.reason: c for c in (BadRequest, Unauthorized, NotFound, MethodNotAllowed, AlreadyExists,
                          Conflict, Gone, RequestTooLarge, UnsupportedMedia, Invalid,
                          TooManyRequests,
                          Internal)
}


def from_status(status: dict[str, Any]) -> ApiError:
    """Rebuild the matching ApiError from a Status object received over HTTP."""
    cls = _BY_REASON.get(str(status.get("reason", "")), ApiError)
    details = status.get("details") or {}
    causes = [Cause(field=c.get("field", ""), message=c.get("message", ""),
                    reason=c.get("reason", "")) for c in details.get("causes") or []]
    err = cls(str(status.get("message", "")), kind=details.get("kind", ""),
              name=details.get("name", ""), group=details.get("group", ""), causes=causes)
    if cls is ApiError:
        err.code = int(status.get("code", 500))
    return err
