"""exec sees the container's namespaces, and a remove leaves no process, mount or file behind
(the rest of exec, adoption and remove is in runtime_contract.py)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from runtime_contract import SLEEPER, host_pid, read_all, until_logged

from knet.runtime import records
from knet.runtime.base import ContainerSpec, Mount, PodSandbox
from knet.runtime.process import ProcessRuntime


async def test_exec_runs_in_the_containers_namespaces(rt: ProcessRuntime,
                                                     sandbox: PodSandbox) -> None:
    await rt.start(sandbox, ContainerSpec(name="app", argv=SLEEPER))
    script = "hostname; head -1 /etc/resolv.conf; tail -1 /etc/hosts; readlink /proc/self/ns/net"
    s = await rt.exec(sandbox, ["sh", "-c", script], container="app", stdin=False, tty=False)
    out, err = await read_all(s)
    assert await s.wait() == 0, err
    assert out.decode().splitlines() == [
        "web-1", "search default.svc.cluster.local svc.cluster.local cluster.local",
        "10.244.1.5\tweb-1.web.default.svc.cluster.local\tweb-1",
        f"net:[{os.stat(f'/run/netns/{sandbox.netns}').st_ino}]"]  # the pod's netns


def snapshot() -> tuple[set[int], str, set[str]]:
    pids = {int(p) for p in os.listdir("/proc") if p.isdigit()} - {os.getpid()}
    mounts = Path("/proc/self/mounts").read_text()
    return pids, mounts, set(os.listdir("/"))


async def test_remove_leaves_nothing_behind(sandbox: PodSandbox, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    pids0, mounts0, root0 = snapshot()
    rt = ProcessRuntime()
    a = await rt.start(sandbox, ContainerSpec(name="a", argv=[
        "sh", "-c", "setsid sleep 1000 & echo daemon $!; exec sleep 1000"],
        mounts=[Mount(str(vol), "/knet-rt-test-remove")]))
    b = await rt.start(sandbox, ContainerSpec(name="b", argv=SLEEPER))
    s = await rt.exec(sandbox, ["sh", "-c", "echo in; exec sleep 1000"], container="b",
                      stdin=False, tty=False)
    assert await asyncio.wait_for(s.read_stdout(), timeout=20) == b"in\n"
    daemon = host_pid(a.pid, int((await until_logged(rt, a, "daemon")).split()[1]))
    assert rt.running(a) and rt.running(b) and records.alive(daemon, records.proc_stat(daemon)[1])
    assert not Path("/knet-rt-test-remove").exists()  # made in the container's root only
    await rt.remove(sandbox)
    await asyncio.wait_for(s.wait(), timeout=10)  # the exec'd sleep died with its container
    await rt.close()
    for _ in range(50):  # the daemon that left the group is killed by its mount namespace
        if snapshot()[0] <= pids0:
            break
        await asyncio.sleep(0.05)
    pids1, mounts1, root1 = snapshot()
    assert pids1 - pids0 == set()
    assert mounts1 == mounts0
    assert root1 == root0
    assert not sandbox.pod_dir.exists()
