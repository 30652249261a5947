"""Garbage collector: background cascade, foreground (owner waits for its dependents), orphan
(dependents keep living without the reference), dangling references pruned."""

from __future__ import annotations

from ctlharness import ControllerHarness

from control.errors import NotFound


def cm(name: str, owners: list[dict] | None = None) -> dict:
    md: dict = {"name": name}
    if owners:
        md["ownerReferences"] = [
            {"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"],
             "uid": o["metadata"]["uid"], "controller": i == 0, "blockOwnerDeletion": True}
            for i, o in enumerate(owners)]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": {"k": "v"}}


async def exists(h: ControllerHarness, resource: str, name: str) -> dict | None:
    try:
        return await h.client.get(resource, name, namespace="default")
    except NotFound:
        return None


async def test_background_cascade_through_replicaset_to_pods(harness: ControllerHarness) -> None:
    await harness.start("replicaset", "deployment", "garbagecollector")
    await harness.client.create("deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "x"}]}}}})

    async def two_pods():
        return len(await harness.pods()) == 2
    await harness.eventually(two_pods)
    await harness.client.delete("deployments", "web", namespace="default",
                                propagation="Background")

    async def all_gone():
        rss = (await harness.client.list("replicasets", namespace="default")).items
        return not rss and not await harness.pods()
    await harness.eventually(all_gone, what="ReplicaSet and pods collected")


async def test_foreground_owner_waits_for_dependents(harness: ControllerHarness) -> None:
    await harness.start("garbagecollector")
    owner = await harness.client.create("configmaps", cm("owner"))
    await harness.client.create("configmaps", cm("dep", [owner]))
    await harness.client.create("configmaps", {**cm("dep-fin", [owner]), "metadata": {
        **cm("dep-fin", [owner])["metadata"], "finalizers": ["test/hold"]}})
    await harness.client.delete("configmaps", "owner", namespace="default",
                                propagation="Foreground")

    async def dep_gone():
        return await exists(harness, "configmaps", "dep") is None
    await harness.eventually(dep_gone, what="plain dependent deleted")
    held = await exists(harness, "configmaps", "owner")
    assert held is not None and "foregroundDeletion" in held["metadata"]["finalizers"]
    # release the held dependent: then the owner goes too
    fin = await exists(harness, "configmaps", "dep-fin")
    assert fin["metadata"].get("deletionTimestamp")
    await harness.client.patch("configmaps", "dep-fin", {"metadata": {"finalizers": None}},
                               namespace="default")

    async def owner_gone():
        return await exists(harness, "configmaps", "owner") is None
    await harness.eventually(owner_gone, what="owner removed after its dependents")


async def test_orphan_keeps_dependents(harness: ControllerHarness) -> None:
    await harness.start("garbagecollector")
    owner = await harness.client.create("configmaps", cm("owner"))
    await harness.client.create("configmaps", cm("dep", [owner]))
    await harness.client.delete("configmaps", "owner", namespace="default", propagation="Orphan")

    async def owner_gone():
        return await exists(harness, "configmaps", "owner") is None
    await harness.eventually(owner_gone, what="owner removed")
    await harness.settle(20)
    dep = await exists(harness, "configmaps", "dep")
    assert dep is not None and not dep["metadata"].get("ownerReferences")


async def test_dangling_reference_pruned_and_orphan_collected(harness: ControllerHarness) -> None:
    a = await harness.client.create("configmaps", cm("a"))
    b = await harness.client.create("configmaps", cm("b"))
    await harness.client.create("configmaps", cm("two", [a, b]))
    await harness.client.create("configmaps", cm("one", [a]))
    await harness.client.delete("configmaps", "a", namespace="default")
    await harness.start("garbagecollector")      # started after: works from the cache alone

    async def settled():
        two = await exists(harness, "configmaps", "two")
        one = await exists(harness, "configmaps", "one")
        return (one is None and two is not None
                and [r["name"] for r in two["metadata"]["ownerReferences"]] == ["b"])
    await harness.eventually(settled, what="'one' collected, 'two' keeps only b")


async def test_fresh_owner_not_in_cache_is_not_mistaken_for_gone(
        harness: ControllerHarness) -> None:
    await harness.start("garbagecollector")
    for i in range(5):
        owner = await harness.client.create("configmaps", cm(f"o{i}"))
        await harness.client.create("configmaps", cm(f"d{i}", [owner]))
    await harness.settle(30)
    for i in range(5):
        assert await exists(harness, "configmaps", f"d{i}") is not None


async def test_an_owner_of_a_custom_kind_takes_its_dependents(harness: ControllerHarness) -> None:
    from control.api.crd import CustomKind
    from control.models.resources import ResourceInfo
    registry = harness.client.objects.registry
    registry.set_custom("widgets.example.com", ResourceInfo(
        "Widget", "widgets", "example.com", "v1", True, custom=True), CustomKind(None))
    await harness.start("garbagecollector")
    owner = await harness.client.create("widgets", {
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}},
        namespace="default")
    await harness.client.create("configmaps", cm("child", [owner]))
    await harness.client.create("configmaps", cm("orphan-free"))
    await harness.client.delete("widgets", "w", namespace="default")

    async def collected() -> bool:
        await harness.clock.advance(3.0)       # the re-check of an unwatched owner
        return await exists(harness, "configmaps", "child") is None
    await harness.eventually(collected, what="the Widget's ConfigMap collected")
    assert await exists(harness, "configmaps", "orphan-free") is not None
