"""`hashicorp/http-echo`: answers every request with `-text` (status `-status-code`, default
200) on `-listen` (default :5678); /health answers {"status":"ok"}. Flags Go-style, as the
real one: `-text=hello`, `-listen=:8080`."""

from __future__ import annotations

import sys

from knet.runtime.images._http import HttpServer, Request, Response, UsageError, goflags, run
from knet.runtime.images._loop import Loop

VERSION = "1.0.0-knet"


def main(argv: list[str]) -> int:
    try:
        flags, _ = goflags(argv, {"text": "", "listen": ":5678", "status-code": 200,
                                  "version": False})
    except UsageError as exc:
        sys.stderr.write(f"http-echo: {exc}\n")
        return 2
    if flags["version"]:
        sys.stdout.write(f"http-echo v{VERSION}\n")
        return 0
    if not flags["text"]:
        sys.stderr.write("http-echo: missing -text option\n")
        return 127
    text, status = f"{flags['text']}\n", int(str(flags["status-code"]))
    host, _, port = str(flags["listen"]).rpartition(":")
    headers = [("X-App-Name", "http-echo"), ("X-App-Version", VERSION)]

    def handle(req: Request) -> Response:
        if req.path == "/health":
            return Response(200, '{"status":"ok"}\n', "application/json", headers)
        return Response(status, text, headers=headers)

    def setup(loop: Loop) -> None:
        HttpServer(loop, handle, int(port), host=host or None, name="http-echo")
        sys.stderr.write(f"http-echo: server is listening on {flags['listen']}\n")

    return run(setup, name="http-echo")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
