"""`knet mesh stat`'s golden metrics, computed from the node proxies' flow records.

Like `linkerd viz stat`: per target (a Service, or a Deployment/workload on the serving
side) over a window (default 1 minute): how many requests, the success rate (responses
that are not 5xx, and a request that got no response at all is a failure, as Linkerd
counts), requests per second over the window, and the p50/p95/p99 of the request
duration; plus the TCP connections the proxies recorded to a Service.

Key design choice: pure functions over flow-record dicts (`knet flows -o json`'s shape),
so the numbers are computed from the same records the user can list, and tested as data.
Percentiles are exact (nearest rank over the durations), not bucket interpolations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["GoldenRow", "format_table", "golden", "parse_target", "percentile"]

Kind = Literal["svc", "deploy"]
_KINDS: dict[str, Kind] = {"svc": "svc", "service": "svc", "services": "svc",
                           "deploy": "deploy", "deployment": "deploy", "deployments": "deploy",
                           "workload": "deploy"}


def parse_target(text: str) -> tuple[Kind, str]:
    """"svc", "svc/NAME", "deploy/NAME" (kubectl's spellings) -> (kind, name or "")."""
    kind, _, name = text.partition("/")
    if kind.lower() not in _KINDS:
        raise ValueError(f"mesh stat: target {text!r}: give svc, svc/NAME, deploy or "
                         "deploy/NAME")
    return _KINDS[kind.lower()], name


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (p in (0, 100])."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class GoldenRow:
    name: str
    namespace: str
    kind: Kind
    requests: int = 0
    successes: int = 0
    tcp_conns: int = 0
    durations_ms: list[float] = field(default_factory=list)
    window: float = 60.0

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.requests if self.requests else None

    @property
    def rps(self) -> float:
        return self.requests / self.window if self.window > 0 else 0.0

    def quantile(self, p: float) -> float | None:
        v = percentile(sorted(self.durations_ms), p)
        return None if math.isnan(v) else round(v, 3)

    def to_json(self) -> dict[str, Any]:
        """`-o json`'s object: success_rate is a fraction in [0, 1] (None: no requests)."""
        rate = self.success_rate
        return {"name": self.name, "namespace": self.namespace, "kind": self.kind,
                "requests": self.requests,
                "success_rate": None if rate is None else round(rate, 6),
                "rps": round(self.rps, 4), "p50_ms": self.quantile(50),
                "p95_ms": self.quantile(95), "p99_ms": self.quantile(99),
                "tcp_conn": self.tcp_conns, "window_s": self.window}


def _ok(flow: Mapping[str, Any]) -> bool:
    status = int(flow.get("status") or 0)
    return 0 < status < 500


def _target(flow: Mapping[str, Any], kind: Kind,
            workload_of: Callable[[str], str | None]) -> tuple[str, str] | None:
    """(namespace, name) the record counts for, or None."""
    if kind == "svc":
        ns, _, name = str(flow.get("service") or "").partition("/")
        return (ns, name) if name else None
    pod = str(flow.get("endpoint_pod") or "")
    if "/" not in pod:
        return None
    ns, _, name = pod.partition("/")
    return ns, workload_of(pod) or name


def golden(flows: Iterable[Mapping[str, Any]], *, kind: Kind, namespace: str | None,
           name: str = "", window: float = 60.0, since: float | None = None,
           workload_of: Callable[[str], str | None] = lambda _p: None) -> list[GoldenRow]:
    """One row per target with traffic (a named target always gets its row), sorted by
    namespace and name. `since`: records older than this (epoch seconds) are ignored."""
    rows: dict[tuple[str, str], GoldenRow] = {}
    if name and namespace:
        rows[(namespace, name)] = GoldenRow(name, namespace, kind, window=window)
    for f in flows:
        if since is not None and float(f.get("time") or 0) < since:
            continue
        proto = f.get("protocol")
        if proto not in ("http", "tcp") or f.get("kind", "proxy") != "proxy":
            continue
        tgt = _target(f, kind, workload_of)
        if tgt is None or (namespace and tgt[0] != namespace) or (name and tgt[1] != name):
            continue
        row = rows.get(tgt)
        if row is None:
            row = rows[tgt] = GoldenRow(tgt[1], tgt[0], kind, window=window)
        if proto == "tcp":
            row.tcp_conns += 1
            continue
        row.requests += 1
        row.successes += _ok(f)
        row.durations_ms.append(float(f.get("duration") or 0.0) * 1000.0)
    return [rows[k] for k in sorted(rows)]


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}ms" if v >= 10 else f"{v:.1f}ms" if v >= 1 else f"{v:.2f}ms"


def format_table(rows: list[GoldenRow], *, all_namespaces: bool = False) -> str:
    """linkerd viz stat's columns: NAME SUCCESS RPS LATENCY_P50 LATENCY_P95 LATENCY_P99."""
    head = (["NAMESPACE"] if all_namespaces else []) + [
        "NAME", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99", "TCP_CONN"]
    table = [head]
    for r in rows:
        rate = r.success_rate
        table.append(([r.namespace] if all_namespaces else []) + [
            r.name, "-" if rate is None else f"{rate * 100:.2f}%",
            f"{r.rps:.1f}rps" if r.requests else "-", _ms(r.quantile(50)),
            _ms(r.quantile(95)), _ms(r.quantile(99)), str(r.tcp_conns)])
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in table)
