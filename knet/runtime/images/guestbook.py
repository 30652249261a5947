"""`gb-frontend`: the guestbook tutorial's PHP frontend on :80. `/` is the guestbook page;
`/guestbook.php?cmd=set&key=K&value=V` writes to redis-leader:6379 and answers
`{"message": "Updated"}`, `?cmd=get&key=K` reads from redis-follower:6379 and answers
`{"data": "V"}` (env GET_HOSTS_FROM=env takes REDIS_LEADER_SERVICE_HOST/_PORT and
REDIS_FOLLOWER_SERVICE_HOST/_PORT instead), as the image's guestbook.php does. Redis is spoken
directly (RESP over a socket, on a thread); an unreachable redis is a 500 with the reason.
"""

from __future__ import annotations

import os

from knet.runtime.images._http import Deferred, Request, Response, serve_fixed

PAGE = """<!DOCTYPE html>
<html>
<head><title>Guestbook</title></head>
<body>
<h2>Guestbook</h2>
<form id="guestbook"><input id="message" placeholder="Messages"> <button>Submit</button></form>
<div id="messages"></div>
<script>
const show = d => document.getElementById("messages").innerHTML =
  (d || "").split(",").filter(Boolean).map(m => "<p>" + m + "</p>").join("");
const get = () => fetch("guestbook.php?cmd=get&key=messages").then(r => r.json()).then(j => show(j.data));
document.getElementById("guestbook").onsubmit = e => {
  e.preventDefault();
  fetch("guestbook.php?cmd=get&key=messages").then(r => r.json()).then(j => {
    const value = (j.data || "") + "," + document.getElementById("message").value;
    return fetch("guestbook.php?cmd=set&key=messages&value=" + encodeURIComponent(value));
  }).then(get);
};
get();
</script>
</body>
</html>
"""


def _addr(role: str) -> tuple[str, int]:
    """redis-ROLE:6379, or the Service's env vars with GET_HOSTS_FROM=env (the port too)."""
    if os.environ.get("GET_HOSTS_FROM") == "env":
        env = f"REDIS_{role.upper()}_SERVICE"
        return os.environ.get(f"{env}_HOST", ""), int(os.environ.get(f"{env}_PORT", "6379"))
    return f"redis-{role}", 6379


def redis(addr: tuple[str, int], *words: str) -> str | None:
    """One RESP command; the bulk or simple string answer (None for a nil)."""
    import socket
    payload = f"*{len(words)}\r\n" + "".join(f"${len(w.encode())}\r\n{w}\r\n" for w in words)
    with socket.create_connection(addr, timeout=5) as s:
        s.sendall(payload.encode())
        f = s.makefile("rb")
        line = f.readline().decode().rstrip("\r\n")
        if line.startswith("-"):
            raise OSError(line[1:])
        if line.startswith("$"):
            size = int(line[1:])
            return None if size < 0 else f.read(size + 2)[:-2].decode("utf-8", "replace")
        return line[1:]


def _php(req: Request) -> Response:
    cmd, key = req.arg("cmd"), req.arg("key")
    try:
        if cmd == "set":
            redis(_addr("leader"), "SET", key, req.arg("value"))
            body = '{"message": "Updated"}'
        else:
            import json
            value = redis(_addr("follower"), "GET", key) or ""
            body = '{"data": ' + json.dumps(value) + "}"
    except OSError as exc:
        return Response(500, f"Fatal error: Uncaught Predis\\Connection\\ConnectionException: {exc}\n",
                        "text/html; charset=UTF-8")
    return Response(200, body, "application/json")


def handle(req: Request) -> Response | Deferred:
    if req.path == "/guestbook.php" and req.arg("cmd"):
        return Deferred(lambda: _php(req))
    if req.path in ("/", "/index.html"):
        return Response(200, PAGE, "text/html; charset=UTF-8")
    return Response(404, "Not Found\n", "text/html; charset=iso-8859-1")


def main(argv: list[str]) -> int:
    return serve_fixed(handle, 80, name="gb-frontend", server="Apache/2.4.38 (Debian)")


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv[1:]))
