"""What kubectl users see of admission, through knet's real API app on loopback (memory
store): Kubernetes' defaults in `get -o json`, 422 messages that name the field, `Warning:`
lines for fields knet keeps but ignores, and Tables for `get`."""

from __future__ import annotations

import json
from typing import Any


def manifest(kind: str, **spec: Any) -> str:
    api = "apps/v1" if kind == "Deployment" else "v1"
    return json.dumps({"apiVersion": api, "kind": kind,
                       "metadata": {"name": "web", "namespace": "default"}, "spec": spec})


TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "knet/whoami",
                                     "securityContext": {"runAsUser": 1000,
                                                         "procMount": "Default"}}]}}


async def test_selector_mismatch_is_refused_naming_the_field(run: Any) -> None:
    bad = manifest("Deployment", selector={"matchLabels": {"app": "other"}},
                   template=TEMPLATE)
    result = await run("apply", "-f", "-", stdin=bad)
    assert result.code == 1
    assert 'The Deployment "web" is invalid: spec.template.metadata.labels: Invalid value: ' \
           '{"app":"web"}: `selector` does not match template `labels`' in result.err
    assert (await run("get", "deploy", "-n", "default")).err.startswith("No resources found")


async def test_defaults_warnings_and_table(run: Any) -> None:
    good = manifest("Deployment", selector={"matchLabels": {"app": "web"}},
                    template=TEMPLATE)
    result = await run("apply", "-f", "-", stdin=good)
    assert result.code == 0, result.err
    assert ("Warning: spec.template.spec.containers[0].securityContext.procMount: ignored by "
            "knet's runtime") in result.err
    got = json.loads((await run("get", "deploy", "web", "-n", "default", "-o", "json")).out)
    assert got["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%",
                                                        "maxUnavailable": "25%"}
    assert got["spec"]["template"]["spec"]["containers"][0]["securityContext"] == {
        "runAsUser": 1000, "procMount": "Default"}
    rows = (await run("get", "deploy", "-n", "default", "-o", "wide")).rows
    assert rows[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS",
                       "IMAGES", "SELECTOR"]
    assert rows[1][:4] == ["web", "0/1", "0", "0"] and rows[1][5:] == ["web", "knet/whoami",
                                                                       "app=web"]


async def test_service_errors_name_each_port_field(run: Any) -> None:
    svc = manifest("Service", type="NodePort", selector={"app": "web"},
                   ports=[{"name": "a", "port": 80, "nodePort": 70000},
                          {"name": "b", "port": 9, "protocol": "SCTP"}])
    result = await run("create", "-f", "-", stdin=svc)
    assert result.code == 1
    assert "spec.ports[0].nodePort: Invalid value: 70000: must be between 1 and 65535" \
        in result.err
    assert "spec.ports[1].protocol" in result.err and "SCTP is not supported by knet" \
        in result.err
    # the range is the allocator's, checked once the Service is otherwise valid
    svc = manifest("Service", type="NodePort", selector={"app": "web"},
                   ports=[{"name": "a", "port": 80, "nodePort": 80}])
    result = await run("create", "-f", "-", stdin=svc)
    assert result.code == 1
    assert ('spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid '
            "range. The range of valid ports is 30000-32767") in result.err
