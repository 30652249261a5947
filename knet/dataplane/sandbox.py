"""`knet sandbox -- CMD`: run CMD in a throwaway world.

A fresh network, mount and PID namespace: its own /run/netns and /var/lib/knet (tmpfs),
a fresh /proc and /sys (with the host's /sys/fs/cgroup bound back in), only `lo` (up). A tiny init (pid 1) runs CMD, reaps orphans and
forwards signals; when CMD exits, the kernel kills whatever is left in the PID namespace and
the namespaces vanish with every netns, link, address and route made inside. Nothing made
inside is visible outside, and no packet can leave: there is no link to anywhere.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

from knet.dataplane import nsutil

PRIVATE_DIRS = ("/run/netns", "/var/lib/knet")


class SandboxError(Exception):
    """The sandbox could not be made (not root, no namespaces)."""


def _setup_world() -> None:
    nsutil.mount("none", "/", None, nsutil.MS_REC | nsutil.MS_PRIVATE)
    nsutil.mount("proc", "/proc", "proc", nsutil.MS_NOSUID | nsutil.MS_NODEV | nsutil.MS_NOEXEC)
    cgroup = os.open("/sys/fs/cgroup", os.O_PATH | os.O_DIRECTORY)  # kept across the new /sys
    nsutil.mount("sysfs", "/sys", "sysfs", nsutil.MS_NOSUID | nsutil.MS_NODEV | nsutil.MS_NOEXEC)
    try:  # the host's cgroup hierarchies, so that container limits work in the sandbox too
        nsutil.mount(f"/proc/self/fd/{cgroup}", "/sys/fs/cgroup", None,
                     nsutil.MS_BIND | nsutil.MS_REC)
    except OSError:
        pass  # no cgroups here: containers run without limits
    finally:
        os.close(cgroup)
    for d in PRIVATE_DIRS:
        os.makedirs(d, exist_ok=True)
        nsutil.mount("tmpfs", d, "tmpfs", nsutil.MS_NOSUID | nsutil.MS_NODEV, "mode=0755")
    from pyroute2 import IPRoute  # type: ignore[import-untyped]  # the dataplane is the one place that speaks netlink

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname="lo")[0]
        ipr.link("set", index=idx, state="up")
    os.environ["KNET_SANDBOX"] = "1"


def _init(argv: Sequence[str]) -> int:
    """pid 1 of the sandbox: start CMD, forward signals, reap, return CMD's status."""
    child = os.fork()
    if child == 0:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execvp(argv[0], list(argv))
        except OSError as exc:
            print(f"knet sandbox: cannot run {argv[0]!r}: {exc.strerror}", file=sys.stderr)
            os._exit(127)

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
        if pid == child:
            return os.waitstatus_to_exitcode(status)


def run(argv: Sequence[str]) -> int:
    """Run argv in a new sandbox and return its exit code (128+N if killed by signal N)."""
    if not argv:
        raise SandboxError("knet sandbox: no command given; usage: knet sandbox -- CMD [ARGS...]")
    if os.geteuid() != 0:
        raise SandboxError("knet sandbox: needs root (network namespaces); run it with sudo "
                           "or as root in a privileged container")
    try:
        nsutil.unshare(nsutil.CLONE_NEWNS | nsutil.CLONE_NEWNET | nsutil.CLONE_NEWPID
                       | nsutil.CLONE_NEWUTS | nsutil.CLONE_NEWIPC)
    except OSError as exc:
        raise SandboxError(f"knet sandbox: cannot create namespaces ({exc.strerror}); "
                           "in a container, run it with --privileged") from None
    init = os.fork()
    if init == 0:
        code = 1
        try:
            _setup_world()
            code = _init(argv)
        except BaseException as exc:  # noqa: BLE001 - report and leave the child
            print(f"knet sandbox: {exc}", file=sys.stderr)
        finally:
            os._exit(code if code >= 0 else 128 - code)
    signal.signal(signal.SIGINT, lambda s, f: os.kill(init, s))
    signal.signal(signal.SIGTERM, lambda s, f: os.kill(init, s))
    while True:
        try:
            _, status = os.waitpid(init, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code
