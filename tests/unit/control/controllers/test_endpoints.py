"""Endpoints and EndpointSlices follow pods: ready pods as ready addresses, others as not
ready, ports resolved per pod (named targetPorts), hostnames under their subdomain, labels."""

from __future__ import annotations

from ctlharness import ControllerHarness


def svc(name: str = "web", *, target="http", headless: bool = False, **spec) -> dict:
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name,
                                                                "labels": {"team": "a"}},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": target}], **spec}}
    if headless:
        body["spec"]["clusterIP"] = "None"
    return body


def pod(name: str, port: int = 8080, pname: str = "http", **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "x",
                                     "ports": [{"name": pname, "containerPort": port}]}],
                     **spec}}


async def endpoints(h: ControllerHarness, name: str = "web") -> dict | None:
    try:
        return await h.client.get("endpoints", name, namespace="default")
    except Exception:
        return None


async def slices(h: ControllerHarness, name: str = "web") -> list[dict]:
    return (await h.client.list("endpointslices", namespace="default",
                                label_selector=f"kubernetes.io/service-name={name}")).items


async def test_endpoints_follow_readiness(harness: ControllerHarness) -> None:
    await harness.start("endpoints")
    await harness.client.create("services", svc())
    a = await harness.client.create("pods", pod("a"))
    b = await harness.client.create("pods", pod("b"))
    await harness.mark_pod(a, node="node-1", ip="10.244.1.5")
    await harness.mark_pod(b, node="node-2", ip="10.244.2.5", ready=False)

    async def check():
        ep = await endpoints(harness)
        subsets = (ep or {}).get("subsets") or []
        return subsets if subsets and subsets[0].get("notReadyAddresses") else None
    [subset] = await harness.eventually(check, what="endpoints with both pods")
    assert [x["ip"] for x in subset["addresses"]] == ["10.244.1.5"]
    assert [x["ip"] for x in subset["notReadyAddresses"]] == ["10.244.2.5"]
    assert subset["addresses"][0]["nodeName"] == "node-1"
    assert subset["addresses"][0]["targetRef"] == {
        "kind": "Pod", "namespace": "default", "name": "a", "uid": a["metadata"]["uid"]}
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    ep = await endpoints(harness)
    assert ep["metadata"]["labels"] == {"team": "a"}
    # b becomes ready, a is deleted
    await harness.mark_pod(b, ready=True)
    await harness.client.delete("pods", "a", namespace="default", grace_period=0)

    async def moved():
        ep = await endpoints(harness)
        subsets = (ep or {}).get("subsets") or []
        ok = (len(subsets) == 1 and [x["ip"] for x in subsets[0].get("addresses", [])]
              == ["10.244.2.5"] and not subsets[0].get("notReadyAddresses"))
        return ok
    await harness.eventually(moved, what="endpoints after readiness change and delete")


async def test_named_target_port_resolved_per_pod(harness: ControllerHarness) -> None:
    await harness.start("endpoints", "endpointslice")
    await harness.client.create("services", svc())
    a = await harness.client.create("pods", pod("a", port=8080))
    b = await harness.client.create("pods", pod("b", port=9090))
    c = await harness.client.create("pods", pod("c", port=7070, pname="other"))
    for p, ip in ((a, "10.244.1.2"), (b, "10.244.1.3"), (c, "10.244.1.4")):
        await harness.mark_pod(p, ip=ip)

    async def two_subsets():
        ep = await endpoints(harness)
        return ep if len((ep or {}).get("subsets") or []) == 2 else None
    ep = await harness.eventually(two_subsets, what="two port groups")
    by_port = {s["ports"][0]["port"]: [x["ip"] for x in s["addresses"]] for s in ep["subsets"]}
    assert by_port == {8080: ["10.244.1.2"], 9090: ["10.244.1.3"]}   # c lacks port "http"

    async def two_slices():
        s = await slices(harness)
        return s if len(s) == 2 and all(x.get("endpoints") for x in s) else None
    ss = await harness.eventually(two_slices, what="two slices")
    by_port = {s["ports"][0]["port"]: [e["addresses"][0] for e in s["endpoints"]] for s in ss}
    assert by_port == {8080: ["10.244.1.2"], 9090: ["10.244.1.3"]}


async def test_endpointslice_shape(harness: ControllerHarness) -> None:
    await harness.start("endpointslice")
    service = await harness.client.create("services", svc(target=8080, headless=True))
    a = await harness.client.create("pods", pod("a", hostname="web-0", subdomain="web"))
    b = await harness.client.create("pods", pod("b"))
    await harness.mark_pod(a, node="node-1", ip="10.244.1.7")
    await harness.mark_pod(b, node="node-1", ip="10.244.1.8", ready=False)

    async def check():
        s = await slices(harness)
        return s if len(s) == 1 and len(s[0].get("endpoints") or []) == 2 else None
    [s] = await harness.eventually(check, what="one slice with 2 endpoints")
    labels = s["metadata"]["labels"]
    assert labels["kubernetes.io/service-name"] == "web"
    assert labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    assert labels["service.kubernetes.io/headless"] == ""
    assert s["metadata"]["name"].startswith("web-")
    assert s["metadata"]["ownerReferences"][0]["uid"] == service["metadata"]["uid"]
    assert s["addressType"] == "IPv4"
    assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    e1, e2 = s["endpoints"]
    assert e1["addresses"] == ["10.244.1.7"] and e1["hostname"] == "web-0"
    assert e1["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert e1["nodeName"] == "node-1" and e1["targetRef"]["name"] == "a"
    assert e2["conditions"]["ready"] is False and "hostname" not in e2


async def test_service_without_pods_and_deleted(harness: ControllerHarness) -> None:
    await harness.start("endpoints", "endpointslice")
    await harness.client.create("services", svc())

    async def created():
        return await endpoints(harness) and await slices(harness)
    await harness.eventually(created, what="empty endpoints and placeholder slice")
    ep = await endpoints(harness)
    assert not ep.get("subsets")
    await harness.client.delete("services", "web", namespace="default")

    async def gone():
        return await endpoints(harness) is None and not await slices(harness)
    await harness.eventually(gone, what="endpoints and slices removed with the service")


async def test_service_without_selector_is_left_alone(harness: ControllerHarness) -> None:
    await harness.start("endpoints")
    body = svc()
    del body["spec"]["selector"]
    await harness.client.create("services", body)
    await harness.client.create("endpoints", {
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
        "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80}]}]})
    await harness.settle(20)
    ep = await endpoints(harness)
    assert ep["subsets"][0]["addresses"][0]["ip"] == "192.0.2.1"


async def test_selectorless_endpoints_are_mirrored_into_slices(harness: ControllerHarness) -> None:
    await harness.start("endpoints", "endpointslice", "endpointslicemirroring")
    body = svc("ext")
    del body["spec"]["selector"]
    await harness.client.create("services", body)
    await harness.client.create("endpoints", {
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "ext"},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}, {"ip": "192.0.2.9"}],
                     "notReadyAddresses": [{"ip": "192.0.2.11"}],
                     "ports": [{"name": "http", "port": 8080}]}]})

    async def mirrored():
        s = await slices(harness, "ext")
        return s if len(s) == 1 and len(s[0].get("endpoints") or []) == 3 else None
    [s] = await harness.eventually(mirrored, what="mirrored slice")
    labels = s["metadata"]["labels"]
    assert labels["endpointslice.kubernetes.io/managed-by"] == \
        "endpointslicemirroring-controller.k8s.io"
    assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert [(e["addresses"][0], e["conditions"]["ready"]) for e in s["endpoints"]] == [
        ("192.0.2.9", True), ("192.0.2.10", True), ("192.0.2.11", False)]
    # an edit of the Endpoints follows; deleting them removes the slice
    await harness.client.patch("endpoints", "ext", {"subsets": [
        {"addresses": [{"ip": "192.0.2.20"}], "ports": [{"name": "http", "port": 8080}]}]},
        namespace="default")

    async def followed():
        s = await slices(harness, "ext")
        return len(s) == 1 and [e["addresses"][0] for e in s[0]["endpoints"]] == ["192.0.2.20"]
    await harness.eventually(followed, what="slice follows the edit")
    await harness.client.delete("endpoints", "ext", namespace="default")
    await harness.eventually(lambda: _no_slices(harness, "ext"), what="slice removed")


async def _no_slices(h: ControllerHarness, name: str) -> bool:
    return not await slices(h, name)


async def test_unnamed_service_port_gives_slice_ports_an_empty_name(
        harness: ControllerHarness) -> None:
    """`kubectl expose` makes unnamed ports; kubectl describe svc dereferences each slice
    port's name, so the controllers must write `name: ""` (kubectl panicked without it)."""
    await harness.start("endpointslice", "endpointslicemirroring")
    body = svc(target=8080)
    del body["spec"]["ports"][0]["name"]
    await harness.client.create("services", body)
    await harness.mark_pod(await harness.client.create("pods", pod("a")), node="node-1",
                           ip="10.244.1.7")
    ext = svc("ext")
    del ext["spec"]["selector"]
    await harness.client.create("services", ext)
    await harness.client.create("endpoints", {
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "ext"},
        "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80}]}]})

    async def both():
        web, mirror = await slices(harness), await slices(harness, "ext")
        return web and web[0].get("endpoints") and mirror and (web[0], mirror[0])
    web, mirror = await harness.eventually(both, what="controller and mirrored slices")
    assert web["ports"] == [{"name": "", "port": 8080, "protocol": "TCP"}]
    assert mirror["ports"] == [{"name": "", "port": 80, "protocol": "TCP"}]


async def test_slice_conditions_like_upstream_pod_to_endpoint(harness: ControllerHarness) -> None:
    # serving = pod Ready; terminating = deletionTimestamp; ready = publishNotReadyAddresses
    # or (serving and not terminating): upstream's podToEndpoint
    await harness.start("endpointslice")
    await harness.client.create("services", svc(target=8080))
    await harness.client.create("services", svc("pub", target=8080,
                                                 publishNotReadyAddresses=True))
    a = await harness.client.create("pods", pod("a"))
    b = await harness.client.create("pods", pod("b"))
    c = await harness.client.create("pods", pod("c"))
    await harness.mark_pod(a, node="node-1", ip="10.244.1.2")
    await harness.mark_pod(b, node="node-1", ip="10.244.1.3", ready=False)
    await harness.mark_pod(c, node="node-1", ip="10.244.1.4")
    await harness.client.delete("pods", "c", namespace="default", grace_period=30)

    def conds(ss: list[dict]) -> dict[str, dict] | None:
        eps = [e for s in ss for e in s.get("endpoints") or []]
        if len(eps) != 3 or not any(e["conditions"]["terminating"] for e in eps):
            return None
        return {e["addresses"][0]: e["conditions"] for e in eps}

    async def web():
        return conds(await slices(harness))
    got = await harness.eventually(web, what="3 endpoints, one terminating")
    assert got == {
        "10.244.1.2": {"ready": True, "serving": True, "terminating": False},
        "10.244.1.3": {"ready": False, "serving": False, "terminating": False},
        "10.244.1.4": {"ready": False, "serving": True, "terminating": True}}

    async def pub():
        return conds(await slices(harness, "pub"))
    got = await harness.eventually(pub, what="published not-ready endpoints")
    assert got == {
        "10.244.1.2": {"ready": True, "serving": True, "terminating": False},
        "10.244.1.3": {"ready": True, "serving": False, "terminating": False},
        "10.244.1.4": {"ready": True, "serving": True, "terminating": True}}


async def test_recreated_service_gets_its_own_slices(harness: ControllerHarness) -> None:
    # a Service deleted and re-created under the same name must not keep (and then lose to
    # the garbage collector) the slices owned by its predecessor
    await harness.start("endpointslice")
    old = await harness.client.create("services", svc(target=8080))
    a = await harness.client.create("pods", pod("a"))
    await harness.mark_pod(a, node="node-1", ip="10.244.1.2")

    async def owned_by(uid: str):
        ss = await slices(harness)
        return ss if ss and all(s["metadata"]["ownerReferences"][0]["uid"] == uid
                                and s.get("endpoints") for s in ss) else None
    await harness.eventually(lambda: owned_by(old["metadata"]["uid"]), what="first slices")
    await harness.client.delete("services", "web", namespace="default")
    new = await harness.client.create("services", svc(target=8080))
    [s] = await harness.eventually(lambda: owned_by(new["metadata"]["uid"]),
                                   what="slices of the new Service")
    assert [e["addresses"] for e in s["endpoints"]] == [["10.244.1.2"]]
