"""`knet/whoami` (also traefik/whoami): who answered and what it received, as plain text like
traefik/whoami (`Hostname:`, `IP:`, `RemoteAddr:`, the request line and headers) and JSON at
/api; /health is 200. Listens on :80, or env PORT, or `--port N`.

Hostname is the pod name (env POD_NAME, else the UTS hostname the runtime sets to it); IP is
the local address the connection arrived on, i.e. the pod IP the client (or proxy) reached.
"""

from __future__ import annotations

import os
import sys

from knet.runtime.images._http import HttpServer, Request, Response, UsageError, goflags, run
from knet.runtime.images._loop import Loop

_NODE = os.environ.get("NODE_NAME", "")


def _hostname() -> str:
    return os.environ.get("POD_NAME") or os.uname().nodename


def _info(req: Request) -> dict[str, object]:
    return {"hostname": _hostname(), "ip": [req.local[0]], "node": _NODE,
            "remoteAddr": f"{req.client[0]}:{req.client[1]}", "method": req.method,
            "url": req.target, "proto": req.version, "host": req.header("host"),
            "headers": {k: v for k, v in req.headers}}


def handle(req: Request) -> Response:
    if req.path == "/health":
        return Response(200, "ok\n")
    info = _info(req)
    if req.path == "/api":
        import json  # only when asked: +20 ms at start otherwise
        return Response(200, json.dumps(info) + "\n", "application/json")
    lines = [f"Hostname: {info['hostname']}", f"IP: {req.local[0]}"]
    if info["node"]:
        lines.append(f"Node: {info['node']}")
    lines += [f"RemoteAddr: {info['remoteAddr']}", f"{req.method} {req.target} {req.version}"]
    lines += [f"{k}: {v}" for k, v in req.headers]
    return Response(200, "\n".join(lines) + "\n\n")


def main(argv: list[str]) -> int:
    try:
        flags, _ = goflags(argv, {"port": int(os.environ.get("PORT", "80")), "name": ""})
    except UsageError as exc:
        sys.stderr.write(f"whoami: {exc}\n")
        return 2
    if flags["name"]:
        os.environ["POD_NAME"] = str(flags["name"])

    def setup(loop: Loop) -> None:
        HttpServer(loop, handle, int(str(flags["port"])), name="knet-whoami")
        sys.stderr.write(f"whoami: listening on :{flags['port']}\n")

    return run(setup, name="whoami")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
