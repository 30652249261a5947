"""`registry.k8s.io/hpa-example`: the HorizontalPodAutoscaler walkthrough's php-apache, an
HTTP server on :80 whose every request runs the original index.php's loop (a million
`$x += sqrt($x)`) and answers `OK!`. Requests run on threads, so concurrent load keeps the
CPU busy as it does with Apache's workers (one core at most: the interpreter's lock).
"""

from __future__ import annotations

import math
import sys

from knet.runtime.images._http import Deferred, Request, Response, serve_fixed

ITERATIONS = 1_000_000


def burn(iterations: int = ITERATIONS) -> float:
    x, sqrt = 0.0001, math.sqrt
    for _ in range(iterations + 1):
        x += sqrt(x)
    return x


def handle(req: Request) -> Deferred:
    def work() -> Response:
        burn()
        return Response(200, "OK!", "text/html; charset=UTF-8", [("X-Powered-By", "PHP/5.6.40")])
    return Deferred(work)


def main(argv: list[str]) -> int:
    return serve_fixed(handle, 80, name="hpa-example", server="Apache/2.4.10 (Debian)")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
