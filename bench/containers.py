"""`python -m bench containers`: ms per container start, knet's shim beside its alternatives.

Each method starts a trivial container (`true`) in one pod netns and waits for it to exit;
one after another, then N at once. knet = ProcessRuntime.start + wait with full isolation
(overlay root + pivot_root, PID namespace with knet-init, the pod's IPC namespace, cgroups).
The anchors: the same runtime as it was before isolation (commit PRE_ISOLATION, taken from
git into a temp dir: netns + mount/UTS namespaces + DNS files, the CRI log and exit record;
skipped outside a git checkout), `nsenter --net unshare --mount --uts sh -c 'mount --bind;
hostname; exec'` (util-linux, no log, no exit record surviving the agent) and a fork of the
benchmark process itself with a preexec_fn (the floor, unsafe in a threaded agent). The two
runtimes alternate over --rounds rounds (the median is shown), so load on a shared machine
hits both alike. Runs itself inside `knet sandbox`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
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
PRE_ISOLATION = "08cd8efae76e2a41499bb0ebc7267e7789984eb3"  # main just before isolation
REPO = Path(__file__).resolve().parents[1]
def _pre_isolation_tree(tmp: Path) -> Path | None:
    """The runtime before isolation, extracted from git (None outside a checkout)."""
    out = tmp / "pre-isolation"
    out.mkdir()
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", PRE_ISOLATION, "knet",
                                  "control"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out


def _pre_isolation(tree: Path, pod_dir: Path, n: int) -> tuple[float, float]:
    """_knet_both run by a child whose `knet` is the pre-isolation tree (first on its path)."""
    env = {**os.environ, "PYTHONPATH": f"{tree}:{REPO}"}
    out = subprocess.run([sys.executable, "-m", "bench.containers", "--only-runtime",
                          str(pod_dir), "-n", str(n)], env=env, cwd=tree, capture_output=True,
                         text=True, check=True).stdout
    seq, par = json.loads(out.splitlines()[-1])
    return float(seq), float(par)


async def _knet(sb: PodSandbox, n: int, *, together: bool) -> float:
    rt = ProcessRuntime()
    await rt.wait(await rt.start(sb, ContainerSpec(name="warm", argv=["true"])))
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


def _sandbox(pod_dir: Path) -> PodSandbox:
    return PodSandbox.for_pod("bench", "bench-pod", netns=NETNS, pod_ip="10.244.1.2",
                              pod_dir=pod_dir)


Row = tuple[str, float, float, float, float]


def _run(n: int, rounds: int) -> list[Row]:
    import uvloop

    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    with tempfile.TemporaryDirectory(prefix="knet-bench-") as tmp:
        pod_dir = Path(tmp) / "pod"
        sb = _sandbox(pod_dir)
        tree = _pre_isolation_tree(Path(tmp))
        ours: list[tuple[float, float]] = []
        pre: list[tuple[float, float]] = []
        for _ in range(rounds):  # alternating: a load spike hits both
            ours.append(uvloop.run(_knet_both(sb, n)))
            if tree is not None:
                pre.append(_pre_isolation(tree, Path(tmp) / "pre-pod", n))
        print("rounds (1 at a time, N at once): isolated", [f"{a:.1f}/{b:.1f}" for a, b in ours],
              "pre-isolation", [f"{a:.1f}/{b:.1f}" for a, b in pre])
        seq, par = (statistics.median(x[i] for x in ours) for i in (0, 1))
        rows: list[Row] = [("knet shim (isolated)", seq, par, 1.0, 1.0)]
        if pre:
            ps, pp = (statistics.median(x[i] for x in pre) for i in (0, 1))
            rows.append((f"shim pre-isolation {PRE_ISOLATION[:7]}", ps, pp, seq / ps, par / pp))
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
            rows.append((name, s, p, seq / s, par / p))
    subprocess.run(["ip", "netns", "del", NETNS], check=True)
    return rows


def _table(n: int, rows: list[Row]) -> str:
    head = (f"{'method':<27}  {'1 at a time ms':>14}  {f'{n} at once ms':>14}  "
            f"{'knet/this 1':>11}  {f'knet/this {n}':>12}")
    lines = [head, "-" * len(head)]
    lines += [f"{m:<27}  {s:>14.1f}  {p:>14.1f}  {r1:>10.2f}x  {r2:>11.2f}x"
              for m, s, p, r1, r2 in rows]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench containers", description=DESCRIPTION)
    parser.add_argument("-n", type=int, default=50, help="containers per batch")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of knet vs pre-isolation, alternating (median shown)")
    parser.add_argument("--only-runtime", metavar="POD_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only_runtime:  # the pre-isolation anchor's child (see _pre_isolation)
        import uvloop

        print(json.dumps(uvloop.run(_knet_both(_sandbox(Path(args.only_runtime)), args.n))))
        return 0
    if os.environ.get("KNET_SANDBOX") != "1":
        cmd = [sys.executable, "-m", "knet.cli.main", "sandbox", "--", sys.executable, "-m",
               "bench.containers", *argv]
        return subprocess.run(cmd, check=False).returncode
    rows = _run(args.n, args.rounds)
    print(f"container starts in one pod netns, ms per container (wall, {os.cpu_count()} cores,"
          f" load {os.getloadavg()[0]:.1f}); each runs `true` to its exit;"
          f" knet rows: median of {args.rounds} rounds")
    print(_table(args.n, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
