"""`nginx`: a static HTTP server on :80 that looks like nginx to a user: the stock welcome
page (`Welcome to nginx!`) or the files under /usr/share/nginx/html when that directory
exists (a ConfigMap or emptyDir mounted there), `Server: nginx`, nginx-style 404/405 pages,
GET and HEAD. The real image's arguments (`nginx -g 'daemon off;'`) are accepted and ignored;
`--port N` and `--root DIR` are knet extensions (for tests and labs).
"""

from __future__ import annotations

import os
import sys

from knet.runtime.images._http import HttpServer, Request, Response, run
from knet.runtime.images._loop import Loop

HTML_ROOT = "/usr/share/nginx/html"
WELCOME = """<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>

<p>For online documentation and support please refer to
<a href="http://nginx.org/">nginx.org</a>.<br/>
Commercial support is available at
<a href="http://nginx.com/">nginx.com</a>.</p>

<p><em>Thank you for using nginx.</em></p>
</body>
</html>
"""
TYPES = {".html": "text/html", ".htm": "text/html", ".css": "text/css", ".txt": "text/plain",
         ".js": "application/javascript", ".json": "application/json", ".png": "image/png",
         ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".svg": "image/svg+xml",
         ".ico": "image/x-icon", ".xml": "text/xml", ".wasm": "application/wasm"}


def _error_page(status: int, reason: str) -> Response:
    body = (f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
            "</body>\r\n</html>\r\n")
    return Response(status, body, "text/html")


class Site:
    def __init__(self, root: str | None) -> None:
        self.root = os.path.realpath(root) if root and os.path.isdir(root) else None

    def handle(self, req: Request) -> Response:
        if req.method not in ("GET", "HEAD"):
            return _error_page(405, "Not Allowed")
        if self.root is None:
            if req.path in ("/", "/index.html"):
                return Response(200, WELCOME, "text/html")
            return _error_page(404, "Not Found")
        return self._file(req.path)

    def _file(self, path: str) -> Response:
        assert self.root is not None
        full = os.path.realpath(os.path.join(self.root, path.lstrip("/")))
        if full != self.root and not full.startswith(self.root + os.sep):
            return _error_page(404, "Not Found")
        if os.path.isdir(full):
            if not path.endswith("/"):
                resp = _error_page(301, "Moved Permanently")
                resp.headers.append(("Location", path + "/"))
                return resp
            full = os.path.join(full, "index.html")
            if not os.path.exists(full):  # nginx without autoindex: a directory is forbidden
                return _error_page(403, "Forbidden")
        try:
            with open(full, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return _error_page(404, "Not Found")
        except (IsADirectoryError, PermissionError):
            return _error_page(403, "Forbidden")
        ctype = TYPES.get(os.path.splitext(full)[1].lower(), "application/octet-stream")
        return Response(200, data, ctype)


def main(argv: list[str]) -> int:
    port, root = 80, HTML_ROOT
    it = iter(argv)
    for arg in it:  # nginx's own flags (-g 'daemon off;', -c FILE) take a value: skip both
        if arg in ("-g", "-c", "-p", "-e"):
            next(it, None)
        elif arg == "--port":
            port = int(next(it, "80"))
        elif arg == "--root":
            root = next(it, root)
    site = Site(root)

    def setup(loop: Loop) -> None:
        HttpServer(loop, site.handle, port, name="nginx")
        sys.stderr.write(f"nginx: serving {site.root or 'the welcome page'} on :{port}\n")

    return run(setup, name="nginx")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
