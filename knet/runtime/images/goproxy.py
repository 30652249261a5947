"""`registry.k8s.io/goproxy`: the Configure Probes tutorial's tcpSocket example, an HTTP
forward proxy on :8080 like goproxy's demo. A request with an absolute URL
(`GET http://svc:80/ HTTP/1.1`, what `curl -x` sends) is fetched and answered; any other
request gets goproxy's 500 `This is a proxy server. Does not respond to non-proxy requests.`
CONNECT is answered 501 (no tunnels). Fetches run on a thread with a 10 s timeout.
"""

from __future__ import annotations

import sys

from knet.runtime.images._http import Deferred, Request, Response, serve_fixed

TIMEOUT = 10.0


def fetch(req: Request) -> Response:
    import socket
    rest = req.target[len("http://"):]
    hostport, _, path = rest.partition("/")
    host, _sep, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "80")
    headers = "".join(f"{k}: {v}\r\n" for k, v in req.headers
                      if k.lower() not in ("proxy-connection", "connection", "keep-alive"))
    try:
        with socket.create_connection((host, int(port)), timeout=TIMEOUT) as s:
            s.sendall(f"{req.method} /{path} HTTP/1.0\r\n{headers}Connection: close\r\n\r\n"
                      .encode("latin-1") + req.body)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except (OSError, ValueError) as exc:
        return Response(502, f"{exc}\n")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ")[1])
    except (IndexError, ValueError):
        return Response(502, "bad response from upstream\n")
    ctype = next((v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])
                  if k.lower() == "content-type"), "application/octet-stream")
    return Response(status, body, ctype)


def handle(req: Request) -> Response | Deferred:
    if req.method == "CONNECT":
        return Response(501, "CONNECT tunnels are not supported by knet's goproxy\n")
    if not req.target.startswith("http://"):
        return Response(500, "This is a proxy server. Does not respond to non-proxy requests.\n")
    return Deferred(lambda: fetch(req))


def main(argv: list[str]) -> int:
    return serve_fixed(handle, 8080, name="goproxy")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
