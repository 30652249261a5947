"""`registry.k8s.io/pause` (and `agnhost pause`): sleeps until SIGTERM or SIGINT, reaps
children it inherits (like the real pause, it may be a pod's init process), exits 0.
No asyncio: this one should cost nothing but the interpreter start."""

from __future__ import annotations

import _signal as signal  # type: ignore[import-not-found]
import os
import sys


def main(argv: list[str]) -> int:
    stopping = []

    def stop(signum: int, frame: object) -> None:
        stopping.append(signum)

    def reap(signum: int, frame: object) -> None:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGCHLD, reap)
    while not stopping:
        signal.pause()
    sys.stderr.write("pause: shutting down on signal\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
