"""`registry.k8s.io/echoserver`: HTTP on :8080 answering what it received, in the image's
text layout (Hostname, Pod Information from env NODE_NAME/POD_NAME/POD_NAMESPACE/POD_IP,
Request Information with client_address, Request Headers, Request Body). The Source IP
tutorial reads `client_address` to see whether the client's address survived the Service.
"""

from __future__ import annotations

import os
import sys

from knet.runtime.images._http import Request, Response, serve_fixed


def handle(req: Request) -> Response:
    env = os.environ
    pod = [f"\t{label}={env[key]}" for label, key in (
        ("node name", "NODE_NAME"), ("pod name", "POD_NAME"), ("pod namespace", "POD_NAMESPACE"),
        ("pod IP", "POD_IP")) if env.get(key)] or ["\t-no pod information available-"]
    path, _, query = req.target.partition("?")
    host = req.header("host") or f"{req.local[0]}:{req.local[1]}"
    lines = ["", "", f"Hostname: {os.uname().nodename}", "", "Pod Information:", *pod, "",
             "Server values:", "\tserver_version=nginx: 1.13.3 - lua: 10008", "",
             "Request Information:", f"\tclient_address={req.client[0]}",
             f"\tmethod={req.method}", f"\treal path={path}", f"\tquery={query}",
             f"\trequest_version={req.version.partition('/')[2]}", "\trequest_scheme=http",
             f"\trequest_uri=http://{host}{req.target}", "", "Request Headers:",
             *sorted(f"\t{k.lower()}={v}" for k, v in req.headers), "", "Request Body:",
             "\t" + (req.body.decode("utf-8", "replace") or "-no body in request-"), "", ""]
    return Response(200, "\n".join(lines), "text/plain")


def main(argv: list[str]) -> int:
    return serve_fixed(handle, 8080, name="echoserver")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
