"""The real kubectl renders knet's Tables: a loopback stub API serves discovery and
`table()` output for pods, and `kubectl get` must print Kubernetes' columns and cells,
with `-o wide`, `-A` (NAMESPACE from the row objects) and `--sort-by`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from control.models.tables import table

def _pod(ns: str, name: str, phase: str, node: str, ip: str, age_s: int) -> dict[str, Any]:
    # made when served: a module-level "now" ages by the minutes a whole suite takes
    created = (datetime.now(UTC) - timedelta(seconds=age_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "uid": name, "resourceVersion": "5",
                         "creationTimestamp": created},
            "spec": {"containers": [{"name": "app", "image": "knet/whoami"}], "nodeName": node},
            "status": {"phase": phase, "podIP": ip, "containerStatuses": [{
                "name": "app", "ready": phase == "Running", "restartCount": 0,
                "state": {"running": {}} if phase == "Running"
                else {"waiting": {"reason": "CrashLoopBackOff"}}}]}}


def _pods() -> list[dict[str, Any]]:
    return [_pod("default", "web-b", "Running", "node-2", "10.244.2.7", 3 * 3600 + 10),
            _pod("team", "web-a", "Pending", "node-1", "10.244.1.3", 30)]


def _app() -> web.Application:
    async def version(_: web.Request) -> web.Response:
        return web.json_response({"major": "1", "minor": "32", "gitVersion": "v1.32.0"})

    async def api(_: web.Request) -> web.Response:
        return web.json_response({"kind": "APIVersions", "versions": ["v1"]})

    async def apis(_: web.Request) -> web.Response:
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})

    async def core(_: web.Request) -> web.Response:
        return web.json_response({"kind": "APIResourceList", "groupVersion": "v1",
                                  "resources": [{"name": "pods", "singularName": "pod",
                                                 "namespaced": True, "kind": "Pod",
                                                 "verbs": ["get", "list"],
                                                 "shortNames": ["po"]}]})

    async def pods(request: web.Request) -> web.Response:
        ns = request.match_info.get("ns")
        objs = [p for p in _pods() if ns is None or p["metadata"]["namespace"] == ns]
        if "as=Table" not in request.headers.get("Accept", ""):
            raise web.HTTPNotAcceptable(text="this stub only serves Tables")
        return web.json_response(table("pods", objs, list_meta={"resourceVersion": "9"}))

    app = web.Application()
    app.router.add_get("/version", version)
    app.router.add_get("/api", api)
    app.router.add_get("/apis", apis)
    app.router.add_get("/api/v1", core)
    app.router.add_get("/api/v1/pods", pods)
    app.router.add_get("/api/v1/namespaces/{ns}/pods", pods)
    return app


@pytest.fixture
async def port() -> Any:
    runner = web.AppRunner(_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    sockets = site._server.sockets if site._server else []   # type: ignore[union-attr]
    yield sockets[0].getsockname()[1]
    await runner.cleanup()


async def _rows(run: Any, *args: str) -> list[list[str]]:
    result = await run(*args)
    assert result.code == 0, result.err
    return list(result.rows)


async def test_kubectl_prints_knet_tables(kubectl: Any, port: int) -> None:
    run = kubectl(f"http://127.0.0.1:{port}")
    lines = await _rows(run, "get", "pods", "-n", "default")
    assert lines[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert lines[1] == ["web-b", "1/1", "Running", "0", "3h"]

    wide = await _rows(run, "get", "pods", "-n", "default", "-o", "wide")
    assert wide[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
                       "NOMINATED", "NODE", "READINESS", "GATES"]
    assert wide[1][5:] == ["10.244.2.7", "node-2", "<none>", "<none>"]

    every = await _rows(run, "get", "pods", "-A", "--sort-by", ".metadata.name")
    assert every[0][:2] == ["NAMESPACE", "NAME"]
    assert [row[:4] for row in every[1:]] == [["team", "web-a", "0/1", "CrashLoopBackOff"],
                                              ["default", "web-b", "1/1", "Running"]]
