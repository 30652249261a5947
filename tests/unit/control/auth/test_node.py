"""The Node authorizer: a kubelet (system:node:NAME in system:nodes) may touch its own Node,
Lease and pods, read what its pods reference and nothing of other nodes' pods; everyone
else gets no opinion. Checked through the API server (Node,RBAC chain) with a node's token,
so the 403s are what a kubelet would see."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from authfixtures import NODE_TOKEN

from control.auth.node import NodeAuthorizer, referenced
from control.auth.types import Attributes, UserInfo, Verdict

NODE = {"Authorization": f"Bearer {NODE_TOKEN}"}


def pod(name: str, node: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "knet/whoami",
                                                       **spec.pop("container", {})}],
                     **spec}}


async def _setup(api: TestClient) -> None:
    for kind, name in (("secrets", "mine"), ("secrets", "theirs"), ("configmaps", "cfg"),
                       ("secrets", "pull"), ("configmaps", "vol")):
        resp = await api.post(f"/api/v1/namespaces/team/{kind}",
                              json={"metadata": {"name": name}})
        assert resp.status == 201, await resp.text()
    await api.post("/api/v1/nodes", json={"metadata": {"name": "node-1"}})
    await api.post("/api/v1/nodes", json={"metadata": {"name": "node-2"}})
    mine = pod("web", "node-1", imagePullSecrets=[{"name": "pull"}],
               volumes=[{"name": "v", "configMap": {"name": "vol"}}],
               container={"env": [{"name": "A", "valueFrom": {
                   "secretKeyRef": {"name": "mine", "key": "k"}}}],
                   "envFrom": [{"configMapRef": {"name": "cfg"}}]})
    for body in (mine, pod("db", "node-2", container={"env": [{"name": "B", "valueFrom": {
            "secretKeyRef": {"name": "theirs", "key": "k"}}}]})):
        resp = await api.post("/api/v1/namespaces/team/pods", json=body)
        assert resp.status == 201, await resp.text()


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/api/v1/namespaces/team/secrets/mine", 200),
    ("GET", "/api/v1/namespaces/team/secrets/pull", 200),
    ("GET", "/api/v1/namespaces/team/configmaps/cfg", 200),
    ("GET", "/api/v1/namespaces/team/configmaps/vol", 200),
    ("GET", "/api/v1/namespaces/team/secrets/theirs", 403),     # a pod of node-2 uses it
    ("GET", "/api/v1/namespaces/team/secrets", 403),            # no listing secrets
    ("GET", "/api/v1/namespaces/team/pods", 200),
    ("GET", "/api/v1/nodes", 200),
    ("GET", "/api/v1/services", 200),
    ("GET", "/apis/discovery.k8s.io/v1/endpointslices", 200),
    ("DELETE", "/api/v1/namespaces/team/pods/db", 403),         # not bound to node-1
    ("DELETE", "/api/v1/namespaces/team/pods/web", 200),
    ("POST", "/api/v1/namespaces/team/configmaps", 403),
    ("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles", 403),
])
async def test_node_reaches_only_its_graph(api: TestClient, method: str, path: str,
                                           status: int) -> None:
    await _setup(api)
    resp = await api.request(method, path, headers=NODE, json={"metadata": {"name": "x"}}
                             if method == "POST" else None)
    assert resp.status == status, await resp.text()


async def test_node_writes_its_own_node_lease_pod_status(api: TestClient) -> None:
    await _setup(api)
    merge = {**NODE, "Content-Type": "application/merge-patch+json"}
    ok = await api.patch("/api/v1/nodes/node-1/status", headers=merge,
                         json={"status": {"phase": "Running"}})
    assert ok.status == 200, await ok.text()
    other = await api.patch("/api/v1/nodes/node-2", headers=merge,
                            json={"metadata": {"labels": {"x": "y"}}})
    assert other.status == 403
    body = await other.json()
    assert body["message"] == ('nodes "node-2" is forbidden: User "system:node:node-1" cannot '
                               'patch resource "nodes" in API group "" at the cluster scope: '
                               "node 'node-1' can only update its own Node")
    lease = {"metadata": {"name": "node-1"}, "spec": {"holderIdentity": "node-1"}}
    assert (await api.post("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                           headers=NODE, json=lease)).status == 201
    assert (await api.patch(
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-1",
        headers=merge, json={"spec": {"leaseDurationSeconds": 40}})).status == 200
    assert (await api.post("/apis/coordination.k8s.io/v1/namespaces/team/leases",
                           headers=NODE, json=lease)).status == 403
    status = {"status": {"phase": "Running"}}
    assert (await api.patch("/api/v1/namespaces/team/pods/web/status", headers=merge,
                            json=status)).status == 200
    assert (await api.patch("/api/v1/namespaces/team/pods/db/status", headers=merge,
                            json=status)).status == 403
    event = {"metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod", "name": "web"},
             "reason": "Started", "message": "m"}
    assert (await api.post("/api/v1/namespaces/team/events", headers=NODE,
                           json=event)).status == 201


async def test_not_a_node_no_opinion() -> None:
    class NoPods:
        async def pod(self, namespace: str, name: str) -> None:
            raise AssertionError("no graph lookups for other users")

        async def pods_on(self, node: str, namespace: str) -> list[Any]:
            raise AssertionError("no graph lookups for other users")

    authz = NodeAuthorizer(NoPods())
    for user in (UserInfo("system:node:node-1"),                       # group missing
                 UserInfo("jane", groups=("system:nodes",))):          # name is not a node's
        decision = await authz.authorize(Attributes(user=user, verb="get", resource="secrets",
                                                    namespace="team", name="mine"))
        assert decision.verdict is Verdict.NO_OPINION and decision.reason == ""
    nameless = UserInfo("system:node:", groups=("system:nodes",))
    decision = await authz.authorize(Attributes(user=nameless, verb="get", resource="pods"))
    assert decision.reason == 'unknown node for user "system:node:"'


def test_referenced_objects_of_a_pod() -> None:
    spec = pod("p", "n", serviceAccountName="builder",
               volumes=[{"name": "s", "secret": {"secretName": "tls"}},
                        {"name": "c", "persistentVolumeClaim": {"claimName": "data"}},
                        {"name": "p", "projected": {"sources": [
                            {"configMap": {"name": "ca"}}, {"secret": {"name": "tok"}}]}}])
    assert referenced(spec) == {("serviceaccount", "builder"), ("secret", "tls"),
                                ("persistentvolumeclaim", "data"), ("configmap", "ca"),
                                ("secret", "tok")}


async def test_node_gets_tokens_only_for_its_pods_service_accounts(api: TestClient) -> None:
    await _setup(api)
    for sa in ("default", "robot"):
        assert (await api.post("/api/v1/namespaces/team/serviceaccounts",
                               json={"metadata": {"name": sa}})).status == 201
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
    # web on node-1 runs as "default": authorized (whatever the route then answers)
    ok = await api.post("/api/v1/namespaces/team/serviceaccounts/default/token",
                        headers=NODE, json=request)
    assert ok.status != 403, await ok.text()
    denied = await api.post("/api/v1/namespaces/team/serviceaccounts/robot/token",
                            headers=NODE, json=request)
    assert denied.status == 403
    assert (await denied.json())["message"].endswith(
        "no relationship found between node 'node-1' and this object")
    assert (await api.get("/api/v1/namespaces/team/serviceaccounts/default",
                          headers=NODE)).status == 200
