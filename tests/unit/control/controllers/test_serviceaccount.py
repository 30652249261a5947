"""The ServiceAccount controller: `default` in every namespace, made when the namespace
appears, made again when deleted, never in a terminating namespace."""

from __future__ import annotations

from ctlharness import ControllerHarness

from control.errors import NotFound


async def _uid(harness: ControllerHarness, ns: str) -> str | None:
    try:
        sa = await harness.client.get("serviceaccounts", "default", namespace=ns)
    except NotFound:
        return None
    return str(sa["metadata"]["uid"])


async def test_default_service_account_in_every_namespace(harness: ControllerHarness) -> None:
    c = harness.client
    await harness.start("serviceaccount")
    for ns in ("default", "kube-system", "kube-node-lease"):
        await harness.eventually(lambda ns=ns: _uid(harness, ns), what=f"{ns}/default")
    await c.create("namespaces", {"metadata": {"name": "lab"}})
    first = await harness.eventually(lambda: _uid(harness, "lab"), what="lab/default")
    await c.delete("serviceaccounts", "default", namespace="lab")

    async def recreated() -> str | None:
        uid = await _uid(harness, "lab")
        return uid if uid and uid != first else None
    await harness.eventually(recreated, what="lab/default made again")
    # a user's own ServiceAccount is theirs: deleting it makes nothing
    await c.create("serviceaccounts", {"metadata": {"name": "robot"}}, namespace="lab")
    await c.delete("serviceaccounts", "robot", namespace="lab")
    names = [sa["metadata"]["name"] for sa in
             (await c.list("serviceaccounts", namespace="lab")).items]
    assert names == ["default"]


async def test_terminating_namespace_gets_none(harness: ControllerHarness) -> None:
    c = harness.client
    await c.create("namespaces", {"metadata": {"name": "going"}})
    await c.create("configmaps", {"metadata": {"name": "hold", "finalizers": ["x/y"]}},
                   namespace="going")
    await c.delete("namespaces", "going")           # Terminating while the configmap stays
    await harness.start("serviceaccount")
    for ns in ("default", "kube-node-lease", "kube-system"):    # every namespace was seen
        await harness.eventually(lambda ns=ns: _uid(harness, ns), what=f"{ns}/default")
    assert (await c.get("namespaces", "going"))["status"]["phase"] == "Terminating"
    assert await _uid(harness, "going") is None
