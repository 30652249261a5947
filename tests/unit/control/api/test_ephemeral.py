"""`pods/ephemeralcontainers` as kubectl debug drives it: GET returns the pod, a strategic
merge PATCH (what kubectl 1.32 sends) or a PUT adds ephemeral containers and nothing else,
validated as kube-apiserver validates them; a pod that is gone is a 404 whose Status names
it (kubectl reads `details.name`; without `details` it panicked)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control.api.app import Settings, create_app
from control.store.memory import MemoryStore

TOKEN = "s3cret"
PODS = "/api/v1/namespaces/default/pods"
SMP = {"Content-Type": "application/strategic-merge-patch+json"}


@pytest.fixture
async def api() -> AsyncIterator[TestClient]:
    app = create_app(MemoryStore(), Settings(token=TOKEN))
    async with TestClient(TestServer(app), headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        assert (await c.post("/api/v1/namespaces",
                             json={"metadata": {"name": "default"}})).status == 201
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
               "spec": {"containers": [{"name": "app", "image": "busybox"}],
                        "volumes": [{"name": "data", "emptyDir": {}}]}}
        assert (await c.post(PODS, json=pod)).status == 201
        yield c


def debugger(name: str = "debugger-abcde", **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "command": ["sh"], "stdin": True, "tty": True,
            "targetContainerName": "app", **extra}


async def patch(api: TestClient, *ecs: dict[str, Any], pod: str = "web") -> Any:
    return await api.patch(f"{PODS}/{pod}/ephemeralcontainers", headers=SMP,
                           json={"spec": {"ephemeralContainers": list(ecs)}})


async def test_a_strategic_patch_adds_an_ephemeral_container(api: TestClient) -> None:
    r = await patch(api, debugger())
    assert r.status == 200, await r.text()
    pod = await r.json()
    assert pod["kind"] == "Pod"
    ec = pod["spec"]["ephemeralContainers"][0]
    assert ec["name"] == "debugger-abcde" and ec["targetContainerName"] == "app"
    assert ec["terminationMessagePolicy"] == "File"           # defaulted like any container
    r = await api.get(f"{PODS}/web/ephemeralcontainers")
    assert r.status == 200 and (await r.json())["spec"]["ephemeralContainers"][0]["name"] \
        == "debugger-abcde"
    # a second one keeps the first (merge key: name)
    r = await patch(api, debugger("two", targetContainerName=None))
    names = [e["name"] for e in (await r.json())["spec"]["ephemeralContainers"]]
    assert names == ["debugger-abcde", "two"]


async def test_the_subresource_changes_nothing_else(api: TestClient) -> None:
    r = await api.patch(f"{PODS}/web/ephemeralcontainers", headers=SMP, json={
        "metadata": {"labels": {"sneaky": "yes"}},
        "spec": {"ephemeralContainers": [debugger()],
                 "containers": [{"name": "app", "image": "nginx"}]}})
    assert r.status == 200, await r.text()
    pod = await (await api.get(f"{PODS}/web")).json()
    assert "sneaky" not in (pod["metadata"].get("labels") or {})
    assert pod["spec"]["containers"][0]["image"] == "busybox"
    assert len(pod["spec"]["ephemeralContainers"]) == 1


async def test_put_of_a_pod_adds_them_too(api: TestClient) -> None:
    pod = await (await api.get(f"{PODS}/web")).json()
    pod["spec"]["ephemeralContainers"] = [debugger()]
    r = await api.put(f"{PODS}/web/ephemeralcontainers", json=pod)
    assert r.status == 200, await r.text()
    assert (await r.json())["spec"]["ephemeralContainers"][0]["name"] == "debugger-abcde"


async def test_a_pod_that_is_gone_is_a_404_naming_it(api: TestClient) -> None:
    r = await patch(api, debugger(), pod="gone")
    assert r.status == 404
    status = await r.json()
    assert status["message"] == 'pods "gone" not found'
    assert status["details"] == {"name": "gone", "kind": "pods"}


async def test_kube_apiserver_validation(api: TestClient) -> None:
    r = await patch(api, debugger(ports=[{"containerPort": 80}],
                                  readinessProbe={"tcpSocket": {"port": 80}},
                                  resources={"limits": {"cpu": "1"}},
                                  targetContainerName="nope",
                                  volumeMounts=[{"name": "data", "mountPath": "/d",
                                                 "subPath": "x"}]))
    assert r.status == 422
    status = await r.json()
    fields = {c["field"]: c["message"] for c in status["details"]["causes"]}
    forbidden = "Forbidden: cannot be set for an Ephemeral Container"
    assert fields == {
        "spec.ephemeralContainers[0].targetContainerName": 'Not found: "nope"',
        "spec.ephemeralContainers[0].ports": forbidden,
        "spec.ephemeralContainers[0].resources": forbidden,
        "spec.ephemeralContainers[0].readinessProbe": forbidden,
        "spec.ephemeralContainers[0].volumeMounts[0].subPath": forbidden}
    assert status["message"].startswith('Pod "web" is invalid: [')
    # a name already taken by a container
    r = await patch(api, debugger("app"))
    assert (await r.json())["details"]["causes"][0] == {
        "reason": "FieldValueDuplicate", "message": 'Duplicate value: "app"',
        "field": "spec.ephemeralContainers[0].name"}


async def test_existing_ones_may_not_change_or_go(api: TestClient) -> None:
    assert (await patch(api, debugger())).status == 200
    r = await api.patch(f"{PODS}/web/ephemeralcontainers",
                        headers={"Content-Type": "application/json-patch+json"},
                        json=[{"op": "replace", "path": "/spec/ephemeralContainers/0/image",
                               "value": "nginx"}])
    assert r.status == 422
    assert 'existing ephemeral containers "debugger-abcde" may not be changed' in \
        (await r.json())["message"]
    r = await api.patch(f"{PODS}/web/ephemeralcontainers",
                        headers={"Content-Type": "application/json-patch+json"},
                        json=[{"op": "remove", "path": "/spec/ephemeralContainers/0"}])
    assert r.status == 422
    assert 'existing ephemeral containers "debugger-abcde" may not be removed' in \
        (await r.json())["message"]


async def test_a_pod_update_may_not_add_them(api: TestClient) -> None:
    pod = await (await api.get(f"{PODS}/web")).json()
    pod["spec"]["ephemeralContainers"] = [debugger()]
    r = await api.put(f"{PODS}/web", json=pod)
    assert r.status == 422


async def test_a_pod_create_may_not_carry_them(api: TestClient) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "early"},
           "spec": {"containers": [{"name": "app", "image": "busybox"}],
                    "ephemeralContainers": [debugger()]}}
    r = await api.post(PODS, json=pod)
    assert r.status == 422
    assert (await r.json())["message"] == ('Pod "early" is invalid: spec.ephemeralContainers: '
                                           "Forbidden: cannot be set on create")


async def test_discovery_lists_the_subresource(api: TestClient) -> None:
    resources = (await (await api.get("/api/v1")).json())["resources"]
    entry = next(r for r in resources if r["name"] == "pods/ephemeralcontainers")
    assert entry["kind"] == "Pod" and set(entry["verbs"]) == {"get", "patch", "update"}
