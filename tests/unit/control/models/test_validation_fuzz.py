"""Bad input never crashes admission: every field of valid objects, replaced by a value of
the wrong type, gives either an admitted object or a 422 Invalid / 400 BadRequest, never an
unexpected exception (which the API server would turn into a 500)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from control.errors import BadRequest, Invalid
from control.models.validation import admit, copy_json

Obj = dict[str, Any]
TEMPLATE: Obj = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {"containers": [{
        "name": "c", "image": "i", "ports": [{"containerPort": 80, "name": "http"}],
        "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "envFrom": [{"configMapRef": {"name": "cm"}}],
        "readinessProbe": {"httpGet": {"port": "http"}},
        "livenessProbe": {"tcpSocket": {"port": 80}},
        "volumeMounts": [{"name": "v", "mountPath": "/v"}],
        "resources": {"limits": {"cpu": "1"}}}],
        "volumes": [{"name": "v", "configMap": {"name": "cm"}}],
        "tolerations": [{"key": "k", "operator": "Exists"}],
        "nodeSelector": {"disk": "ssd"}},
}
SAMPLES: dict[str, Obj] = {
    "pods": {"metadata": {"name": "p", "namespace": "d", "labels": {"a": "b"},
                          "annotations": {"x": "y"},
                          "ownerReferences": [{"apiVersion": "v1", "kind": "K", "name": "n",
                                               "uid": "u", "controller": True}]},
             "spec": TEMPLATE["spec"]},
    "deployments": {"metadata": {"name": "d", "namespace": "d"},
                    "spec": {"selector": {"matchLabels": {"app": "web"},
                                          "matchExpressions": [{"key": "app",
                                                                "operator": "In",
                                                                "values": ["web"]}]},
                             "strategy": {"rollingUpdate": {"maxSurge": 1}},
                             "template": TEMPLATE}},
    "replicationcontrollers": {"metadata": {"name": "r", "namespace": "d"},
                               "spec": {"selector": {"app": "web"}, "template": TEMPLATE}},
    "services": {"metadata": {"name": "s", "namespace": "d"},
                 "spec": {"type": "NodePort", "selector": {"app": "web"},
                          "sessionAffinity": "ClientIP",
                          "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}},
                          "ports": [{"name": "a", "port": 80, "nodePort": 30001},
                                    {"name": "b", "port": 81, "targetPort": "http"}]}},
    "endpoints": {"metadata": {"name": "s", "namespace": "d"},
                  "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]},
    "endpointslices": {"metadata": {"name": "s", "namespace": "d"}, "addressType": "IPv4",
                       "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"port": 80}]},
    "secrets": {"metadata": {"name": "s", "namespace": "d"}, "data": {"k": "dg=="},
                "stringData": {"s": "v"}},
    "configmaps": {"metadata": {"name": "c", "namespace": "d"}, "data": {"k": "v"}},
    "nodes": {"metadata": {"name": "n"},
              "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}},
    "events": {"metadata": {"name": "e", "namespace": "d"},
               "involvedObject": {"kind": "Pod", "name": "p", "namespace": "d"}},
    "leases": {"metadata": {"name": "l", "namespace": "d"},
               "spec": {"leaseDurationSeconds": 40}},
    "namespaces": {"metadata": {"name": "ns", "labels": {"team": "a"}},
                   "spec": {"finalizers": ["kubernetes"]}},
}
WRONG: tuple[Any, ...] = ("x", 7, -1, None, True, [], {}, ["x"], {"k": "v"})


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield path + (k,)
            yield from _paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield path + (i,)
            yield from _paths(v, path + (i,))


def _replaced(obj: Obj, path: tuple[Any, ...], value: Any) -> Obj:
    out = copy_json(obj)
    cur = out
    for key in path[:-1]:
        cur = cur[key]
    cur[path[-1]] = copy_json(value)
    return out


@pytest.mark.parametrize("resource", sorted(SAMPLES))
def test_wrong_types_anywhere_give_invalid_not_a_crash(resource: str) -> None:
    sample = SAMPLES[resource]
    admit(resource, sample)                                     # the sample itself is valid
    tried = 0
    for path in _paths(sample):
        for wrong in WRONG:
            bad = _replaced(sample, path, wrong)
            try:
                admit(resource, bad)
                admit(resource, bad, old=admit(resource, sample)[0])
            except (Invalid, BadRequest):
                pass
            except Exception as exc:              # noqa: BLE001 - the point of the test
                pytest.fail(f"{resource} with {'.'.join(map(str, path))} = {wrong!r}: "
                            f"{type(exc).__name__}: {exc}")
            tried += 1
    assert tried >= len(WRONG) * 2
