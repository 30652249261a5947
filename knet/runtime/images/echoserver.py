"""`registry.k8s.io/echoserver`: HTTP on :8080 answering what it received, in the layout of
echoserver:1.4 that the Source IP tutorial shows (CLIENT VALUES with client_address, SERVER
VALUES, HEADERS RECEIVED, BODY): the tutorial reads `client_address` to see whether the
client's address survived the Service. (Later tags print a longer layout; tags are ignored.)
"""

from __future__ import annotations

import sys

from knet.runtime.images._http import Request, Response, serve_fixed


def handle(req: Request) -> Response:
    path, _, query = req.target.partition("?")
    host = req.header("host") or req.local[0]
    if not host.startswith("["):  # the Host header without its port: nginx's $host
        host = host.rsplit(":", 1)[0]
    lines = ["CLIENT VALUES:", f"client_address={req.client[0]}", f"command={req.method}",
             f"real path={path}", f"query={query or 'nil'}",
             f"request_version={req.version.partition('/')[2]}",
             f"request_uri=http://{host}:{req.local[1]}{req.target}", "", "SERVER VALUES:",
             "server_version=nginx: 1.10.0 - lua: 10001", "", "HEADERS RECEIVED:",
             *sorted(f"{k.lower()}={v}" for k, v in req.headers), "BODY:",
             req.body.decode("utf-8", "replace") or "-no body in request-"]
    return Response(200, "\n".join(lines), "text/plain")


def main(argv: list[str]) -> int:
    return serve_fixed(handle, 8080, name="echoserver")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
