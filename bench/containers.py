"""`python -m bench containers`: ms per container start, knet's shim beside its alternatives.

Each method starts a trivial container (`true`) in one pod netns with its own mount + UTS
namespaces, the pod's resolv.conf bind-mounted and the hostname set, and waits for it to
exit; one after another, then N at once. knet = ProcessRuntime.start + wait (a Python shim
per container, which also keeps the CRI log and the exit record); the anchors do only the
namespace part: `nsenter --net unshare --mount --uts sh -c 'mount --bind; hostname; exec'`
(util-linux, no log framing, no exit record surviving the agent) and a fork of the
benchmark process itself with a preexec_fn (the floor, unsafe in a threaded agent).
Runs itself inside `knet sandbox`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from knet.dataplane import nsutil
from knet.runtime.base import ContainerSpec, PodSandbox
from knet.runtime.process import ProcessRuntime

NAME = "containers"
DESCRIPTION = "ms per container start (netns + mount/UTS ns + DNS files): knet shim vs nsenter"
NETNS = "knet-bench-ct"


async def _knet(sb: PodSandbox, n: int, *, together: bool) -> float:
    rt = ProcessRuntime()
    t0 = time.perf_counter()
    if together:
        hs = await asyncio.gather(*(rt.start(sb, ContainerSpec(name=f"c{i}", argv=["true"]))
                                    for i in range(n)))
        await asyncio.gather(*(rt.wait(h) for h in hs))
    else:
        for i in range(n):
            await rt.wait(await rt.start(sb, ContainerSpec(name=f"c{i}", argv=["true"])))
    ms = (time.perf_counter() - t0) * 1000 / n
    await rt.remove(sb)
    await rt.close()
    return ms


def _nsenter_argv(pod_dir: Path) -> list[str]:
    script = (f"mount --bind {pod_dir}/resolv.conf /etc/resolv.conf && "
              "hostname bench-pod && exec true")
    return ["nsenter", f"--net=/run/netns/{NETNS}", "unshare", "--mount", "--uts",
            "--propagation", "private", "sh", "-c", script]


def _enter(pod_dir: Path) -> Callable[[], None]:
    def preexec() -> None:
        fd = os.open(f"/run/netns/{NETNS}", os.O_RDONLY)
        nsutil.setns(fd, nsutil.CLONE_NEWNET)
        nsutil.unshare(nsutil.CLONE_NEWNS | nsutil.CLONE_NEWUTS)
        nsutil.mount("none", "/", None, nsutil.MS_REC | nsutil.MS_PRIVATE)
        nsutil.mount(f"{pod_dir}/resolv.conf", "/etc/resolv.conf", None, nsutil.MS_BIND)
        nsutil.sethostname("bench-pod")
        os.setsid()
    return preexec


def _popen_batch(make: Callable[[], subprocess.Popen[bytes]], n: int, *,
                 together: bool) -> float:
    t0 = time.perf_counter()
    if together:
        procs = [make() for _ in range(n)]
        codes = [p.wait() for p in procs]
    else:
        codes = [make().wait() for _ in range(n)]
    assert codes == [0] * n, codes
    return (time.perf_counter() - t0) * 1000 / n


async def _knet_both(sb: PodSandbox, n: int) -> tuple[float, float]:
    return await _knet(sb, n, together=False), await _knet(sb, n, together=True)


def _run(n: int) -> list[tuple[str, float, float, float]]:
    import uvloop

    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    with tempfile.TemporaryDirectory(prefix="knet-bench-") as tmp:
        pod_dir = Path(tmp) / "pod"
        sb = PodSandbox.for_pod("bench", "bench-pod", netns=NETNS, pod_ip="10.244.1.2",
                                pod_dir=pod_dir)
        seq, par = uvloop.run(_knet_both(sb, n))
        rows = [("knet shim", seq, par, 1.0)]
        pod_dir.mkdir()
        (pod_dir / "resolv.conf").write_text(sb.resolv_conf)
        methods: dict[str, Callable[[], subprocess.Popen[bytes]]] = {
            "nsenter+unshare+sh": lambda: subprocess.Popen(_nsenter_argv(pod_dir)),
            # the anchor's point is preexec_fn: the floor that the agent must not use
            "fork+preexec_fn": lambda: subprocess.Popen(
                ["true"], preexec_fn=_enter(pod_dir)),  # noqa: PLW1509
        }
        for name, make in methods.items():
            s, p = (_popen_batch(make, n, together=t) for t in (False, True))
            rows.append((name, s, p, par / p))
    subprocess.run(["ip", "netns", "del", NETNS], check=True)
    return rows


def _table(n: int, rows: list[tuple[str, float, float, float]]) -> str:
    head = (f"{'method':<20}  {'1 at a time ms':>14}  {f'{n} at once ms':>14}  "
            f"{'knet/this':>9}")
    lines = [head, "-" * len(head)]
    lines += [f"{m:<20}  {s:>14.1f}  {p:>14.1f}  {r:>8.1f}x" for m, s, p, r in rows]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench containers", description=DESCRIPTION)
    parser.add_argument("-n", type=int, default=50, help="containers per batch")
    args = parser.parse_args(argv)
    if os.environ.get("KNET_SANDBOX") != "1":
        cmd = [sys.executable, "-m", "knet.cli.main", "sandbox", "--", sys.executable, "-m",
               "bench.containers", *argv]
        return subprocess.run(cmd, check=False).returncode
    rows = _run(args.n)
    print(f"container starts in one pod netns, ms per container (wall, {os.cpu_count()} cores);"
          " each runs `true` to its exit")
    print(_table(args.n, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
