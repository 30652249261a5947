"""Istio networking.istio.io/v1 VirtualService and DestinationRule as pydantic v2 models.

Only the fields knet's mesh acts on are modelled in detail (http match/route/timeout/
retries/fault/mirror/rewrite/headers; subsets, load balancer, connection pool, outlier
detection); the rest round-trips untouched (`extra="allow"`, warned by the validator).
Durations are Go-style strings ("1s", "500ms"), checked as Istio's validation checks them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from control.models.meshgateway import Duration, _regex
from control.models.meta import KModel, TopLevel

__all__ = [
    "DestinationRule",
    "HTTPMatchRequest",
    "HTTPRouteDestination",
    "IstioHTTPRoute",
    "StringMatch",
    "TrafficPolicy",
    "VirtualService",
]

GROUP = "networking.istio.io"


class StringMatch(KModel):
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one(self) -> StringMatch:
        set_ = [k for k in ("exact", "prefix", "regex") if getattr(self, k) is not None]
        if len(set_) != 1:
            raise ValueError("exactly one of exact, prefix or regex must be set")
        if self.regex is not None:
            _regex(self.regex)
        return self


class HTTPMatchRequest(KModel):
    name: str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, StringMatch] = Field(default_factory=dict)
    query_params: dict[str, StringMatch] = Field(default_factory=dict)
    without_headers: dict[str, StringMatch] = Field(default_factory=dict)
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    ignore_uri_case: bool = False


class PortSelector(KModel):
    number: Annotated[int, Field(ge=1, le=65535)]


class Destination(KModel):
    host: Annotated[str, Field(min_length=1)]
    subset: str | None = None
    port: PortSelector | None = None


class HeaderOperations(KModel):
    set: dict[str, str] = Field(default_factory=dict)
    add: dict[str, str] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)


class Headers(KModel):
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


class HTTPRouteDestination(KModel):
    destination: Destination
    weight: Annotated[int, Field(ge=0)] | None = None
    headers: Headers | None = None


class Percent(KModel):
    value: Annotated[float, Field(ge=0, le=100)]


class HTTPRetry(KModel):
    attempts: Annotated[int, Field(ge=0)]
    per_try_timeout: Duration | None = None
    retry_on: str | None = None
    retry_remote_localities: bool | None = None


class Delay(KModel):
    fixed_delay: Duration
    percentage: Percent | None = None


class Abort(KModel):
    http_status: Annotated[int, Field(ge=200, le=599)]
    percentage: Percent | None = None


class HTTPFaultInjection(KModel):
    delay: Delay | None = None
    abort: Abort | None = None

    @model_validator(mode="after")
    def _some(self) -> HTTPFaultInjection:
        if self.delay is None and self.abort is None:
            raise ValueError("fault must have at least delay or abort")
        return self


class HTTPRewrite(KModel):
    uri: str | None = None
    authority: str | None = None


class IstioHTTPRoute(KModel):
    name: str | None = None
    match: list[HTTPMatchRequest] = Field(default_factory=list)
    route: list[HTTPRouteDestination] = Field(default_factory=list)
    redirect: dict[str, object] | None = None
    rewrite: HTTPRewrite | None = None
    timeout: Duration | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirror_percentage: Percent | None = None
    headers: Headers | None = None

    @model_validator(mode="after")
    def _target(self) -> IstioHTTPRoute:
        if not self.route and self.redirect is None:
            raise ValueError("HTTP route or redirect is required")
        if self.route and self.redirect is not None:
            raise ValueError("HTTP route cannot contain both route and redirect")
        return self


class VirtualServiceSpec(KModel):
    hosts: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    gateways: list[str] = Field(default_factory=list)
    http: list[IstioHTTPRoute] = Field(default_factory=list)
    export_to: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _hosts(self) -> VirtualServiceSpec:
        if not self.hosts:
            raise ValueError("virtual service must have at least one host")
        return self


class VirtualService(TopLevel):
    api_version: str | None = "networking.istio.io/v1"
    kind: str | None = "VirtualService"
    spec: VirtualServiceSpec | None = None  # required: admission says so (meshkinds.check_mesh)


class ConsistentHash(KModel):
    http_header_name: str | None = None
    http_query_parameter_name: str | None = None
    use_source_ip: bool | None = Field(default=None, alias="useSourceIp")
    http_cookie: dict[str, object] | None = None


class LoadBalancer(KModel):
    simple: Literal["UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN",
                    "LEAST_REQUEST"] | None = None
    consistent_hash: ConsistentHash | None = None


class TCPSettings(KModel):
    max_connections: Annotated[int, Field(ge=0)] | None = None
    connect_timeout: Duration | None = None


class HTTPSettings(KModel):
    http1_max_pending_requests: Annotated[int, Field(ge=0)] | None = None
    http2_max_requests: Annotated[int, Field(ge=0)] | None = None
    max_requests_per_connection: Annotated[int, Field(ge=0)] | None = None
    max_retries: Annotated[int, Field(ge=0)] | None = None
    idle_timeout: Duration | None = None


class ConnectionPool(KModel):
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


class OutlierDetection(KModel):
    consecutive5xx_errors: Annotated[int, Field(ge=0)] | None = Field(
        default=None, alias="consecutive5xxErrors")
    consecutive_gateway_errors: Annotated[int, Field(ge=0)] | None = None
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: Annotated[int, Field(ge=0, le=100)] | None = None
    min_health_percent: Annotated[int, Field(ge=0, le=100)] | None = None


class TrafficPolicy(KModel):
    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None


class Subset(KModel):
    name: Annotated[str, Field(min_length=1)]
    labels: dict[str, str] = Field(default_factory=dict)
    traffic_policy: TrafficPolicy | None = None


class DestinationRuleSpec(KModel):
    host: Annotated[str, Field(min_length=1)]
    traffic_policy: TrafficPolicy | None = None
    subsets: list[Subset] = Field(default_factory=list)
    export_to: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> DestinationRuleSpec:
        seen: set[str] = set()
        for s in self.subsets:
            if s.name in seen:
                raise ValueError(f"duplicate subset name {s.name!r}")
            seen.add(s.name)
        return self


class DestinationRule(TopLevel):
    api_version: str | None = "networking.istio.io/v1"
    kind: str | None = "DestinationRule"
    spec: DestinationRuleSpec | None = None  # required: admission says so (meshkinds.check_mesh)
