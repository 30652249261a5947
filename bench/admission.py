"""`python -m bench admission`: µs per object for the work control.models adds to every API
write and list: admit() (defaulting + validation) on a typical Pod, Deployment and Service,
and table() rows for `kubectl get`, side by side with their anchors in the same run — a JSON
encode+decode of the same object (what every write pays anyway). The mesh kinds are
validated with pydantic models (control/models/mesh*.py): a VirtualService row shows
that typed path's cost next to the same anchor.
Measurements only; the API goal is 2,000 creates/s, i.e. 500 µs for the whole request.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from bench.common import table
from control.models.tables import table as kube_table
from control.models.validation import admit

NAME = "admission"
DESCRIPTION = "µs per object: admit() (dict path; pydantic for mesh kinds) and Table rows vs JSON"

POD: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web-7d4b9c-x2k8p", "namespace": "default",
                 "labels": {"app": "web", "pod-template-hash": "7d4b9c"},
                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                      "name": "web-7d4b9c", "uid": "u-1", "controller": True}]},
    "spec": {"containers": [{
        "name": "web", "image": "knet/whoami:1",
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [{"name": "MODE", "value": "demo"},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
}
DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}}, "spec": POD["spec"]}},
}
VIRTUALSERVICE: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
    "metadata": {"name": "reviews", "namespace": "default"},
    "spec": {"hosts": ["reviews"], "http": [
        {"match": [{"headers": {"end-user": {"exact": "jason"}}}],
         "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
        {"route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 90},
                   {"destination": {"host": "reviews", "subset": "v3"}, "weight": 10}],
         "retries": {"attempts": 3, "perTryTimeout": "2s"}, "timeout": "10s"}]},
}
SERVICE: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"type": "NodePort", "selector": {"app": "web"},
             "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
}


def per_call_us(fn: Callable[[], object], *, seconds: float) -> float:
    """Median-free simple rate: run fn for about `seconds`, return µs per call."""
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(200):
            fn()
        n += 200
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / n * 1e6


def _roundtrip(obj: dict[str, Any]) -> Callable[[], object]:
    return lambda: json.loads(json.dumps(obj))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench admission")
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    args = parser.parse_args(argv)
    rows: list[list[Any]] = []
    for resource, obj in (("pods", POD), ("deployments", DEPLOYMENT), ("services", SERVICE),
                          ("virtualservices", VIRTUALSERVICE)):
        admit_label = "admit() (pydantic)" if resource == "virtualservices" else "admit()"
        for label, fn in (("json encode+decode", _roundtrip(obj)),
                          (admit_label, lambda r=resource, o=obj: admit(r, o))):
            rows.append([resource, label, per_call_us(fn, seconds=args.seconds)])
    pods = [admit("pods", {**POD, "metadata": {**POD["metadata"], "name": f"web-{i}"}})[0]
            for i in range(1000)]
    rows.append(["1,000 pods", "json encode+decode", per_call_us(
        _roundtrip({"items": pods}), seconds=args.seconds) / 1000])
    rows.append(["1,000 pods", "table() row", per_call_us(
        lambda: kube_table("pods", pods), seconds=args.seconds) / 1000])
    print(table(["object", "work", "µs/object"], rows, value_col=2, group_col=0,
                ratio_title="vs json", title="control.models per-object cost"))
    return 0
