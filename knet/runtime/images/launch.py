"""Starts a built-in image program: `python -S -I launch.py PROG [ARGS...]`.

Without site-packages the interpreter starts in about half the time, which is most of a
container's start latency; the programs need only the standard library. This file puts the
directory that holds `knet` on sys.path and runs `knet.runtime.images.PROG.main(ARGS)`;
`launch.py -m MODULE ARGS` runs a module of that knet as `python -m` would (the full
interpreter, for images that need site-packages).
"""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
_PROGRAMS = ("nginx", "whoami", "http_echo", "agnhost", "pause", "goproxy", "hpa_example",
             "echoserver", "guestbook")


def _module() -> int:
    """`launch.py -m MODULE ARGS...`: `python -m MODULE` on this knet (a container's working
    directory is its own root's, not the agent's)."""
    import runpy

    sys.path.insert(0, _ROOT)
    module = sys.argv[2]
    del sys.argv[1:3]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


def _main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "-m":
        return _module()
    if len(sys.argv) < 2 or sys.argv[1] not in _PROGRAMS:
        sys.stderr.write(f"usage: launch.py {{{','.join(_PROGRAMS)}}} [ARGS...]\n")
        return 2
    sys.path.insert(0, _ROOT)
    module = __import__(f"knet.runtime.images.{sys.argv[1]}", fromlist=["main"])
    return int(module.main(sys.argv[2:]))


if __name__ == "__main__":
    sys.exit(_main())
