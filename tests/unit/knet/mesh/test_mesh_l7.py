"""The mesh on the proxy's real L7 path: a Proxier on 127.x with real aiohttp backends and
a real client, the route table compiled from VirtualServices / HTTPRoutes /
DestinationRules. What a client sees (status, body, which pod answered) and what the flow
record says (route, match, bucket, retries and why, fault, ejection)."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from proxy_testkit import endpoint_slice, loopback_net, service, start_proxier, wait_flows  # type: ignore[import-not-found]

from knet.mesh.source import MeshState, relisten
from knet.mesh.table import compile_table
from knet.proxy.proxier import Proxier

KEY = "default/reviews:http"
CLOSE = {"Connection": "close"}


class Pod:
    """A backend pod: answers `name path x-from-header`, with a status, optionally slow."""

    def __init__(self, name: str, ip: str, *, status: int = 200, delay: float = 0.0) -> None:
        self.name, self.ip, self.status, self.delay = name, ip, status, delay
        self.hits = 0
        self.port = 0
        self.runner: web.AppRunner | None = None

    async def start(self) -> Pod:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.serve)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.ip, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def serve(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.status, text=(
            f"{self.name} {request.path_qs} {request.headers.get('x-from', '-')} "
            f"{request.headers.get('x-secret', '-')}"))

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class Mesh:
    def __init__(self, proxier: Proxier, pods: list[Pod], state: MeshState, net: str) -> None:
        self.proxier, self.pods, self.state, self.url = proxier, pods, state, f"http://{net}1"

    def route(self, **objs: Any) -> None:
        labels = {f"default/{p.name}": {"version": p.name.split("-")[0]} for p in self.pods}
        self.state.table = compile_table(self.proxier.table, pod_labels=labels, **objs)


def subsets(policy: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "reviews", "namespace": "default"},
            "spec": {"host": "reviews", **({"trafficPolicy": policy} if policy else {}),
                     "subsets": [{"name": v, "labels": {"version": v}} for v in ("v1", "v2")]}}


def vs(*http: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "reviews", "namespace": "default"},
            "spec": {"hosts": ["reviews"], "http": list(http)}}


def to(subset: str, weight: int | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"destination": {"host": "reviews", "subset": subset}}
    return d | ({"weight": weight} if weight is not None else {})


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


MeshMaker = Callable[..., Any]


@pytest.fixture
async def mesh() -> AsyncIterator[MeshMaker]:
    made: list[Mesh] = []

    async def make(specs: list[tuple[str, int, float]],
                   rng: Callable[[], float] | None = None) -> Mesh:
        net = loopback_net()
        pods = [await Pod(name, f"{net}{i + 10}", status=st, delay=d).start()
                for i, (name, st, d) in enumerate(specs)]
        objs: list[dict[str, Any]] = [service("reviews", f"{net}1", [
            {"name": "http", "port": 80, "targetPort": 9080, "appProtocol": "http"}])]
        for p in pods:
            sl = endpoint_slice("reviews", [{"name": "http", "port": p.port, "protocol": "TCP"}],
                                [(p.ip, p.name)])
            sl["metadata"]["name"] = f"reviews-{p.name}"
            objs.append(sl)
        proxier = await start_proxier(objs)
        state = MeshState(rng=rng)
        proxier.ctx.mesh = state
        m = Mesh(proxier, pods, state, net)
        made.append(m)
        return m

    yield make
    for m in made:
        await m.proxier.stop()
        for p in m.pods:
            await p.stop()


async def get(s: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, str, Any]:
    async with s.get(url, **kw) as r:
        return r.status, await r.text(), r.headers


async def test_header_routing_to_subsets_and_the_flow_record(
        mesh: MeshMaker, session: aiohttp.ClientSession) -> None:
    m = await mesh([("v1-a", 200, 0), ("v2-a", 200, 0)])
    m.route(virtualservices=[vs({"match": [{"headers": {"end-user": {"exact": "jason"}}}],
                                 "route": [to("v2")]}, {"route": [to("v1")]})],
            destinationrules=[subsets()])
    for _ in range(3):
        st, body, _ = await get(session, m.url + "/", headers={"end-user": "jason"})
        assert (st, body.split()[0]) == (200, "v2-a")
        st, body, _ = await get(session, m.url + "/")
        assert (st, body.split()[0]) == (200, "v1-a")
    flows = await wait_flows(m.proxier.ring, 6)
    assert flows[0].route == "virtualservice default/reviews http[0] match[0]"
    assert flows[0].match == "header:end-user=exact:jason"
    assert flows[0].bucket == "0:default/reviews:80/v2 100/100"
    assert flows[1].route == "virtualservice default/reviews http[1] match[0]"


async def test_weights_split_as_written(mesh: MeshMaker,
                                        session: aiohttp.ClientSession) -> None:
    seq = itertools.cycle([i / 100 for i in range(100)])
    m = await mesh([("v1-a", 200, 0), ("v2-a", 200, 0)], rng=lambda: next(seq))
    m.route(virtualservices=[vs({"route": [to("v1", 80), to("v2", 20)]})],
            destinationrules=[subsets()])
    seen: Counter[str] = Counter()
    for _ in range(100):
        seen[(await get(session, m.url + "/"))[1].split()[0]] += 1
    assert seen == {"v1-a": 80, "v2-a": 20}
    buckets = Counter(f.bucket for f in await wait_flows(m.proxier.ring, 100))
    assert buckets == {"0:default/reviews:80/v1 80/100": 80, "1:default/reviews:80/v2 20/100": 20}


async def test_route_timeout_is_504_upstream_request_timeout(
        mesh: MeshMaker, session: aiohttp.ClientSession) -> None:
    m = await mesh([("v1-slow", 200, 2.0)])
    m.route(virtualservices=[vs({"route": [to("v1")], "timeout": "300ms",
                                 "retries": {"attempts": 0}})],
            destinationrules=[subsets()])
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    st, body, _ = await get(session, m.url + "/")
    assert (st, body) == (504, "upstream request timeout")
    assert 0.25 < loop.time() - t0 < 1.5
    (flow,) = await wait_flows(m.proxier.ring, 1)
    assert (flow.verdict, flow.status) == ("TIMEOUT", 504)


async def test_abort_fault_at_50_percent(mesh: MeshMaker,
                                         session: aiohttp.ClientSession) -> None:
    m = await mesh([("v1-a", 200, 0)], rng=random.Random(7).random)
    m.route(virtualservices=[vs({"route": [to("v1")], "fault": {
        "abort": {"httpStatus": 503, "percentage": {"value": 50}}}})],
        destinationrules=[subsets()])
    results = [await get(session, m.url + "/") for _ in range(100)]
    statuses = Counter(r[0] for r in results)
    assert set(statuses) == {200, 503} and 35 <= statuses[503] <= 65
    assert {r[1] for r in results} == {"fault filter abort", "v1-a / - -"}
    flows = await wait_flows(m.proxier.ring, 100)
    assert {f.fault for f in flows if f.status == 503} == {"abort 503"}
    assert m.pods[0].hits == statuses[200]  # an aborted request never reaches the pod


async def test_retries_go_to_another_endpoint_and_say_why(
        mesh: MeshMaker, session: aiohttp.ClientSession) -> None:
    # RANDOM with a random source stuck at 0 always draws the first endpoint it may: only
    # the previous-hosts rule sends the one retry to the good pod
    m = await mesh([("v1-bad", 500, 0), ("v1-good", 200, 0)], rng=lambda: 0.0)
    m.route(virtualservices=[vs({"route": [to("v1")],
                                 "retries": {"attempts": 1, "retryOn": "5xx"}})],
            destinationrules=[subsets({"loadBalancer": {"simple": "RANDOM"}})])
    statuses = Counter([(await get(session, m.url + "/"))[0] for _ in range(20)])
    assert statuses == {200: 20}
    flows = await wait_flows(m.proxier.ring, 20)
    assert all(f.retry_reasons == ["500 from default/v1-bad"] for f in flows)
    assert m.pods[0].hits == 20
    assert all(f.endpoint_pod == "default/v1-good" for f in flows)


async def test_outlier_detection_ejects_the_failing_pod(
        mesh: MeshMaker, session: aiohttp.ClientSession) -> None:
    m = await mesh([("v1-bad", 500, 0), ("v1-good", 200, 0)])
    m.route(virtualservices=[vs({"route": [to("v1")], "retries": {"attempts": 0}})],
            destinationrules=[subsets({"outlierDetection": {
                "consecutive5xxErrors": 2, "interval": "1s", "baseEjectionTime": "30s",
                "maxEjectionPercent": 50}})])
    statuses = [(await get(session, m.url + "/"))[0] for _ in range(12)]
    assert statuses.count(500) == 2 and m.pods[0].hits == 2
    flows = await wait_flows(m.proxier.ring, 12)
    assert [f.ejections for f in flows if f.ejections] == [
        ["ejected default/v1-bad for 30s after 2 consecutive 5xx"]]


async def test_header_ops_rewrite_and_no_route(mesh: MeshMaker,
                                               session: aiohttp.ClientSession) -> None:
    m = await mesh([("v1-a", 200, 0)])
    m.route(httproutes=[{
        "metadata": {"name": "r", "namespace": "default"},
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "reviews"}],
                 "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/old"}}],
                            "filters": [
                                {"type": "URLRewrite", "urlRewrite": {"path": {
                                    "type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}},
                                {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                                    "set": [{"name": "x-from", "value": "mesh"}],
                                    "remove": ["x-secret"]}},
                                {"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                                    "add": [{"name": "x-route", "value": "r"}]}}],
                            "backendRefs": [{"name": "reviews", "port": 80}]}]}}])
    st, body, headers = await get(session, m.url + "/old/x?q=1",
                                  headers={"x-secret": "s", "x-from": "client"})
    assert (st, body) == (200, "v1-a /new/x?q=1 mesh -")
    assert headers["x-route"] == "r"
    st, body, _ = await get(session, m.url + "/other")
    assert st == 404 and "no route" in body


async def test_connection_pool_overflow_is_503(mesh: MeshMaker,
                                               session: aiohttp.ClientSession) -> None:
    m = await mesh([("v1-slow", 200, 0.5)])
    m.route(virtualservices=[vs({"route": [to("v1")]})],
            destinationrules=[subsets({"connectionPool": {
                "tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 0}}})])
    results = await asyncio.gather(*(get(session, m.url + "/") for _ in range(3)))
    statuses = sorted(r[0] for r in results)
    assert statuses == [200, 503, 503]
    assert {r[1] for r in results if r[0] == 503} == {
        "upstream connect error or disconnect/reset before headers. reset reason: overflow"}


async def test_mirror_sends_a_shadow_copy_and_the_client_never_sees_it(
        mesh: MeshMaker, session: aiohttp.ClientSession) -> None:
    m = await mesh([("v1-a", 200, 0), ("v2-shadow", 503, 0)])
    m.route(virtualservices=[vs({"route": [to("v1")],
                                 "mirror": {"host": "reviews", "subset": "v2"},
                                 "mirrorPercentage": {"value": 100}})],
            destinationrules=[subsets()])
    for _ in range(5):
        st, body, _ = await get(session, m.url + "/m")
        assert (st, body.split()[0]) == (200, "v1-a")
    for _ in range(100):
        if m.pods[1].hits == 5:
            break
        await asyncio.sleep(0.02)
    assert m.pods[1].hits == 5
    flows = await wait_flows(m.proxier.ring, 5)
    assert {f.mirrored for f in flows} == {"default/v2-shadow"}


async def test_per_try_timeout_retries_on_another_endpoint(
        mesh: MeshMaker, session: aiohttp.ClientSession) -> None:
    m = await mesh([("v1-slow", 200, 2.0), ("v1-fast", 200, 0)], rng=lambda: 0.0)
    m.route(virtualservices=[vs({"route": [to("v1")], "timeout": "3s", "retries": {
        "attempts": 1, "perTryTimeout": "200ms", "retryOn": "5xx,connect-failure"}})],
        destinationrules=[subsets({"loadBalancer": {"simple": "RANDOM"}})])
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    st, body, _ = await get(session, m.url + "/")
    assert (st, body.split()[0]) == (200, "v1-fast")
    assert loop.time() - t0 < 1.5
    (flow,) = await wait_flows(m.proxier.ring, 1)
    assert flow.retry_reasons == [f"per-try timeout at {m.pods[0].ip}:{m.pods[0].port}"]


async def test_ambient_enrollment_moves_a_plain_port_to_the_l7_path(
        session: aiohttp.ClientSession) -> None:
    net = loopback_net()
    pod = await Pod("v1-a", f"{net}10").start()
    objs: list[dict[str, Any]] = [service("reviews", f"{net}1", [
        {"name": "http", "port": 80, "targetPort": 9080}])]  # no appProtocol
    objs.append(endpoint_slice("reviews", [{"name": "http", "port": pod.port,
                                            "protocol": "TCP"}], [(pod.ip, "v1-a")]))
    proxier = await start_proxier(objs)
    # new connections take the new path; one already spliced carries on (closed here)
    state = MeshState()
    proxier.ctx.mesh = state
    try:
        st, _, headers = await get(session, f"http://{net}1/", headers=CLOSE)
        assert st == 200 and "x-knet-upstream" not in headers  # L4: bytes spliced
        state.table = compile_table(proxier.table, namespace_labels={
            "default": {"istio.io/dataplane-mode": "ambient"}})
        assert await relisten(proxier, state) == 1
        await proxier.wait_applied()
        st, _, headers = await get(session, f"http://{net}1/", headers=CLOSE)
        assert (st, headers["x-knet-upstream"]) == (200, "default/v1-a")
        (flow,) = [f for f in proxier.ring.records() if f.protocol == "http"]
        assert flow.route == "default"
        state.table = compile_table(proxier.table)  # the label is gone: back to L4
        assert await relisten(proxier, state) == 1
        await proxier.wait_applied()
        st, _, headers = await get(session, f"http://{net}1/", headers=CLOSE)
        assert st == 200 and "x-knet-upstream" not in headers
    finally:
        await proxier.stop()
        await pod.stop()
