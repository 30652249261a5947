"""`python -m bench celrules`: ms per admission of a mesh object through its CRD's CustomKind
(control.api.crd: prune, default, schema, x-kubernetes-validations CEL rules, knet's checks)
with and without its CEL rules: an HTTPRoute, a Gateway and a DestinationRule, each a new
object every call (distinct names and ports, so the outcome memo does not answer), then the
same object again (a re-apply or a status write: memo hits), and the one-off cost of compiling
one CRD's rules on the first admission of its kind. Measurements only.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from typing import Any

from bench.common import table
from control.api.celrules import Compiler
from control.api.crd import CustomKind, info_of, storage_version
from control.crds import mesh_crds
from control.models.meshkinds import MESH_CHECKS
from control.models.resources import ResourceInfo

NAME = "celrules"
DESCRIPTION = "ms per mesh-object admission with and without its CRD's CEL rules"

ROUTE: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["web.example"], "rules": [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
         "filters": [{"type": "RequestHeaderModifier",
                      "requestHeaderModifier": {"set": [{"name": "x-a", "value": "1"}]}}],
         "backendRefs": [{"name": "api", "port": 80, "weight": 90},
                         {"name": "api-canary", "port": 80, "weight": 10}]},
        {"backendRefs": [{"name": "web", "port": 80}]}]},
}
GATEWAY: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
    "metadata": {"name": "gw", "namespace": "default"},
    "spec": {"gatewayClassName": "knet", "listeners": [
        {"name": "http", "protocol": "HTTP", "port": 80},
        {"name": "https", "protocol": "HTTPS", "port": 443,
         "tls": {"certificateRefs": [{"name": "cert"}]}}]},
}
DESTINATIONRULE: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
    "metadata": {"name": "reviews", "namespace": "default"},
    "spec": {"host": "reviews", "trafficPolicy": {"outlierDetection": {
        "consecutive5xxErrors": 5, "interval": "10s", "baseEjectionTime": "30s"}},
        "subsets": [{"name": "v1", "labels": {"version": "v1"}}]},
}


def per_call_ms(fn: Callable[[int], object], *, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n < 5:
        fn(n)
        n += 1
    return (time.perf_counter() - start) / n * 1e3


def _variant(obj: dict[str, Any], i: int) -> dict[str, Any]:
    """A distinct object: another name, and another port or host where rules look."""
    out = copy.deepcopy(obj)
    out["metadata"]["name"] = f"{obj['metadata']['name']}-{i}"
    spec = out["spec"]
    if "rules" in spec:
        spec["rules"][0]["backendRefs"][0]["port"] = 1000 + i % 60000
    elif "listeners" in spec:
        spec["listeners"][0]["port"] = 1000 + i % 60000
    else:
        spec["host"] = f"reviews-{i}"
    return out


def _admission(kind: CustomKind, info: ResourceInfo, obj: dict[str, Any],
               offset: int | None) -> Callable[[int], object]:
    """Call i admits a distinct variant of obj (offset: where the variants start), or obj
    itself when offset is None."""
    def admit(i: int) -> object:
        return kind(info, obj if offset is None else _variant(obj, offset + i), None)
    return admit


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench celrules")
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args(argv)
    crds = {c["metadata"]["name"]: c for c in mesh_crds()}
    rows: list[list[Any]] = []
    for crd_name, obj in (("httproutes.gateway.networking.k8s.io", ROUTE),
                          ("gateways.gateway.networking.k8s.io", GATEWAY),
                          ("destinationrules.networking.istio.io", DESTINATIONRULE)):
        crd = crds[crd_name]
        version = storage_version(crd) or {}
        info, schema = info_of(crd), version["schema"]["openAPIV3Schema"]
        rules = Compiler().rules_of(crd, version)
        assert rules is not None
        start = time.perf_counter()
        _ = rules.tree
        compile_ms = (time.perf_counter() - start) * 1e3
        plain = CustomKind(schema, check=MESH_CHECKS.get(crd_name))
        with_cel = CustomKind(schema, check=MESH_CHECKS.get(crd_name), rules=rules)
        label = info.kind
        rows.append([label, f"compile {rules.compiled} rules (first admission)", compile_ms])
        for work, kind, offset in (("admit, no CEL", plain, 0),
                                   ("admit with CEL, new object", with_cel, 10**6),
                                   ("admit with CEL, same object again", with_cel, None)):
            rows.append([label, work, per_call_ms(
                _admission(kind, info, obj, offset), seconds=args.seconds)])
    print(table(["kind", "work", "ms"], rows, value_col=2, group_col=0,
                ratio_title="vs first", title="CRD admission with CEL rules (celpy)"))
    return 0
