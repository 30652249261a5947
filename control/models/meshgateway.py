"""Gateway API (gateway.networking.k8s.io/v1) kinds as pydantic v2 models: GatewayClass,
Gateway, HTTPRoute (with GAMMA parentRefs: a Service, group "" kind Service) and ReferenceGrant.

The models carry the upstream CRD's schema rules (enums, ranges, defaults, the 16-rule and
8-match limits) so `meshvalidation.check` can turn a pydantic error into kube-apiserver's
422 causes. Key design choice: unknown fields are kept (`extra="allow"`), and reported as
warnings by the validator, as kube-apiserver does with fieldValidation=Warn.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from control.models.meta import KModel, TopLevel

__all__ = [
    "Duration",
    "Gateway",
    "GatewayClass",
    "HTTPBackendRef",
    "HTTPHeaderMatch",
    "HTTPPathMatch",
    "HTTPRoute",
    "HTTPRouteFilter",
    "HTTPRouteMatch",
    "HTTPRouteRule",
    "HTTPRouteSpec",
    "ParentReference",
    "ReferenceGrant",
    "parse_duration",
]

GROUP = "gateway.networking.k8s.io"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")
_SCALE = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str) -> float:
    """A Go/Gateway API duration ("10s", "1m30s", "500ms", "1.5s") in seconds."""
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _SCALE[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise ValueError(f"{text!r} is not a duration; use a number and a unit, "
                         "like 10s, 1m30s or 500ms")
    return total


def _duration(text: str) -> str:
    try:
        parse_duration(text)
    except ValueError:
        raise ValueError("must be a duration: a number and a unit, like 10s, 1m30s or "
                         "500ms") from None
    return text


Duration = Annotated[str, AfterValidator(_duration)]
Name = Annotated[str, Field(min_length=1, max_length=253)]
Port = Annotated[int, Field(ge=1, le=65535)]


class ParentReference(KModel):
    group: str = GROUP
    kind: str = "Gateway"
    namespace: str | None = None
    name: Name
    section_name: str | None = None
    port: Port | None = None

    @property
    def is_service(self) -> bool:
        """A GAMMA parent: the route governs mesh traffic to this Service."""
        return self.group in ("", "core") and self.kind == "Service"


class HTTPPathMatch(KModel):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: Annotated[str, Field(max_length=1024)] = "/"

    @model_validator(mode="after")
    def _path(self) -> HTTPPathMatch:
        if self.type != "RegularExpression" and not self.value.startswith("/"):
            raise ValueError("must be an absolute path (start with '/')")
        if self.type == "RegularExpression":
            _regex(self.value)
        return self


def _regex(text: str) -> None:
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None


class HTTPHeaderMatch(KModel):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: Annotated[str, Field(min_length=1, max_length=256)]
    value: Annotated[str, Field(min_length=1, max_length=4096)]

    @model_validator(mode="after")
    def _value(self) -> HTTPHeaderMatch:
        if self.type == "RegularExpression":
            _regex(self.value)
        return self


HTTPQueryParamMatch = HTTPHeaderMatch
Method = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
                 "PATCH"]


class HTTPRouteMatch(KModel):
    path: HTTPPathMatch | None = Field(default_factory=HTTPPathMatch)
    headers: Annotated[list[HTTPHeaderMatch], Field(max_length=16)] = Field(default_factory=list)
    query_params: Annotated[list[HTTPQueryParamMatch], Field(max_length=16)] = Field(default_factory=list)
    method: Method | None = None


class HTTPHeader(KModel):
    name: Annotated[str, Field(min_length=1, max_length=256)]
    value: Annotated[str, Field(max_length=4096)]


class HTTPHeaderFilter(KModel):
    set: Annotated[list[HTTPHeader], Field(max_length=16)] = Field(default_factory=list)
    add: Annotated[list[HTTPHeader], Field(max_length=16)] = Field(default_factory=list)
    remove: Annotated[list[str], Field(max_length=16)] = Field(default_factory=list)


class BackendObjectReference(KModel):
    group: str = ""
    kind: str = "Service"
    name: Name
    namespace: str | None = None
    port: Port | None = None


class Fraction(KModel):
    numerator: Annotated[int, Field(ge=0)]
    denominator: Annotated[int, Field(ge=1)] = 100


class HTTPRequestMirrorFilter(KModel):
    backend_ref: BackendObjectReference
    percent: Annotated[int, Field(ge=0, le=100)] | None = None
    fraction: Fraction | None = None


class HTTPPathModifier(KModel):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: str | None = None
    replace_prefix_match: str | None = None


class HTTPURLRewriteFilter(KModel):
    hostname: str | None = None
    path: HTTPPathModifier | None = None


class HTTPRouteFilter(KModel):
    type: Literal["RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror",
                  "RequestRedirect", "URLRewrite", "ExtensionRef"]
    request_header_modifier: HTTPHeaderFilter | None = None
    response_header_modifier: HTTPHeaderFilter | None = None
    request_mirror: HTTPRequestMirrorFilter | None = None
    url_rewrite: HTTPURLRewriteFilter | None = None

    @model_validator(mode="after")
    def _one(self) -> HTTPRouteFilter:
        field = self.type[0].lower() + self.type[1:]
        need = {"RequestHeaderModifier": self.request_header_modifier,
                "ResponseHeaderModifier": self.response_header_modifier,
                "RequestMirror": self.request_mirror, "URLRewrite": self.url_rewrite}
        if self.type in need and need[self.type] is None:
            raise ValueError(f"filter.{field} must be specified for {self.type} filter.type")
        return self


class HTTPBackendRef(BackendObjectReference):
    weight: Annotated[int, Field(ge=0, le=1_000_000)] = 1
    filters: list[HTTPRouteFilter] = Field(default_factory=list)

    @model_validator(mode="after")
    def _port(self) -> HTTPBackendRef:
        if self.group in ("", "core") and self.kind == "Service" and self.port is None:
            raise ValueError("Must have port for Service reference")
        return self


class HTTPRouteTimeouts(KModel):
    request: Duration | None = None
    backend_request: Duration | None = None


class HTTPRouteRetry(KModel):
    codes: list[Annotated[int, Field(ge=400, le=599)]] = Field(default_factory=list)
    attempts: Annotated[int, Field(ge=0)] | None = None
    backoff: Duration | None = None


def _default_matches() -> list[HTTPRouteMatch]:
    return [HTTPRouteMatch()]


class HTTPRouteRule(KModel):
    name: str | None = None
    matches: Annotated[list[HTTPRouteMatch], Field(max_length=64)] = Field(
        default_factory=_default_matches)
    filters: Annotated[list[HTTPRouteFilter], Field(max_length=16)] = Field(default_factory=list)
    backend_refs: Annotated[list[HTTPBackendRef], Field(max_length=16)] = Field(default_factory=list)
    timeouts: HTTPRouteTimeouts | None = None
    retry: HTTPRouteRetry | None = None


class HTTPRouteSpec(KModel):
    parent_refs: Annotated[list[ParentReference], Field(max_length=32)] = Field(default_factory=list)
    hostnames: Annotated[list[str], Field(max_length=16)] = Field(default_factory=list)
    rules: Annotated[list[HTTPRouteRule], Field(max_length=16)] = Field(
        default_factory=lambda: [HTTPRouteRule()])


class HTTPRoute(TopLevel):
    api_version: str | None = "gateway.networking.k8s.io/v1"
    kind: str | None = "HTTPRoute"
    spec: HTTPRouteSpec | None = None  # required: admission says so (meshkinds.check_mesh)


class GatewayClassSpec(KModel):
    controller_name: Annotated[str, Field(min_length=1, max_length=253)]
    description: str | None = None


class GatewayClass(TopLevel):
    api_version: str | None = "gateway.networking.k8s.io/v1"
    kind: str | None = "GatewayClass"
    spec: GatewayClassSpec | None = None  # required: admission says so (meshkinds.check_mesh)


class Listener(KModel):
    name: Annotated[str, Field(min_length=1, max_length=253)]
    hostname: str | None = None
    port: Port
    protocol: Annotated[str, Field(min_length=1)]
    allowed_routes: dict[str, Any] | None = None  # namespaces.from Same/All/Selector


class GatewaySpec(KModel):
    gateway_class_name: Annotated[str, Field(min_length=1, max_length=253)]
    listeners: Annotated[list[Listener], Field(min_length=1, max_length=64)]


class Gateway(TopLevel):
    api_version: str | None = "gateway.networking.k8s.io/v1"
    kind: str | None = "Gateway"
    spec: GatewaySpec | None = None  # required: admission says so (meshkinds.check_mesh)


class ReferenceGrantFrom(KModel):
    group: str
    kind: Annotated[str, Field(min_length=1)]
    namespace: Annotated[str, Field(min_length=1)]


class ReferenceGrantTo(KModel):
    group: str
    kind: Annotated[str, Field(min_length=1)]
    name: str | None = None


class ReferenceGrantSpec(KModel):
    from_: Annotated[list[ReferenceGrantFrom], Field(min_length=1, max_length=16,
                                                     alias="from")]
    to: Annotated[list[ReferenceGrantTo], Field(min_length=1, max_length=16)]


class ReferenceGrant(TopLevel):
    api_version: str | None = "gateway.networking.k8s.io/v1"
    kind: str | None = "ReferenceGrant"
    spec: ReferenceGrantSpec | None = None  # required: admission says so (meshkinds.check_mesh)
