"""exec into a running container, adoption after an agent restart, and a remove that leaves
no process, mount or file behind."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from knet.errors import RuntimeError_
from knet.runtime import records
from knet.runtime.base import ContainerSpec, ExecSession, Mount, PodSandbox
from knet.runtime.process import ProcessRuntime

SLEEPER = ["sh", "-c", "echo started; exec sleep 300"]


async def read_all(s: ExecSession) -> tuple[bytes, bytes]:
    out, err = [], []
    while chunk := await asyncio.wait_for(s.read_stdout(), timeout=20):
        out.append(chunk)
    while chunk := await asyncio.wait_for(s.read_stderr(), timeout=20):
        err.append(chunk)
    return b"".join(out), b"".join(err)


async def test_exec_output_exit_code_env_and_namespaces(rt: ProcessRuntime,
                                                        sandbox: PodSandbox) -> None:
    await rt.start(sandbox, ContainerSpec(name="app", argv=SLEEPER, env={"FOO": "bar"},
                                          workdir="/usr"))
    s = await rt.exec(sandbox, ["sh", "-c", ("hostname; echo $FOO; pwd; head -1 /etc/resolv.conf;"
                                " echo oops >&2; exit 5")], container="app", stdin=False, tty=False)
    out, err = await read_all(s)
    assert await s.wait() == 5
    assert out.decode().splitlines() == [
        "web-1", "bar", "/usr", "search default.svc.cluster.local svc.cluster.local cluster.local"]
    assert err == b"oops\n"


async def test_exec_with_stdin(rt: ProcessRuntime, sandbox: PodSandbox) -> None:
    await rt.start(sandbox, ContainerSpec(name="app", argv=SLEEPER))
    s = await rt.exec(sandbox, ["sh", "-c", "tr a-z A-Z; exit 2"], container="app",
                      stdin=True, tty=False)
    await s.write_stdin(b"hello ")
    await s.write_stdin(b"world\n")
    await s.close_stdin()
    out, _ = await read_all(s)
    assert out == b"HELLO WORLD\n"
    assert await s.wait() == 2


async def test_exec_with_a_tty(rt: ProcessRuntime, sandbox: PodSandbox) -> None:
    await rt.start(sandbox, ContainerSpec(name="app", argv=SLEEPER))
    s = await rt.exec(sandbox, ["sh", "-c", ("test -t 0 && echo on-a-tty; read x; stty size; "
                                "echo got $x; exit 4")], container="app", stdin=True, tty=True)
    await s.resize(cols=123, rows=45)
    await s.write_stdin(b"typed\n")
    out, err = await read_all(s)
    assert await s.wait() == 4
    text = out.decode().replace("\r\n", "\n")
    assert "on-a-tty" in text and "45 123" in text and "got typed" in text
    assert err == b""


async def test_exec_missing_command_and_stopped_container(rt: ProcessRuntime,
                                                          sandbox: PodSandbox) -> None:
    h = await rt.start(sandbox, ContainerSpec(name="app", argv=SLEEPER))
    s = await rt.exec(sandbox, ["no-such-command-knet"], container="app", stdin=False,
                      tty=False)
    _, err = await read_all(s)
    assert await s.wait() == 127
    assert b"no-such-command-knet" in err
    await rt.stop(h, grace=5)
    with pytest.raises(RuntimeError_, match="container 'app' is not running"):
        await rt.exec(sandbox, ["true"], container="app", stdin=False, tty=False)


async def test_adopt_after_agent_restart(sandbox: PodSandbox, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    first = ProcessRuntime()
    h = await first.start(sandbox, ContainerSpec(name="app", argv=[
        "sh", "-c", f"echo one; while [ ! -e {flag} ]; do sleep 0.05; done; echo two; exit 7"]))
    worker = await first.start(sandbox, ContainerSpec(name="worker", argv=SLEEPER))
    await first.close()  # the agent goes away; the containers do not
    assert first.running(h)

    second = ProcessRuntime()
    try:
        adopted = second.adopt(sandbox, "app")
        assert adopted is not None and adopted.pid == h.pid and adopted.attempt == 0
        assert second.adopt(sandbox, "nope") is None
        flag.touch()
        assert await asyncio.wait_for(second.wait(adopted), timeout=20) == 7  # real exit code
        log = b"".join([c async for c in second.read_logs(adopted, follow=True)])
        assert log == b"one\ntwo\n"  # logged across the restart, follow ends at the exit
        assert second.adopt(sandbox, "app") is None  # exited: nothing to adopt
        w = second.adopt(sandbox, "worker")
        assert w is not None and w.pid == worker.pid
        assert await second.stop(w, grace=5) == 143  # sleep dies of SIGTERM
    finally:
        await second.remove(sandbox)
        await second.close()


async def test_adopt_refuses_a_reused_pid(rt: ProcessRuntime, sandbox: PodSandbox) -> None:
    h = await rt.start(sandbox, ContainerSpec(name="app", argv=SLEEPER))
    state = sandbox.pod_dir / "containers" / "app" / "0.state"
    rec = records.read_record(state)
    assert rec is not None
    records.write_record(state, {**rec, "pid_start": str(int(rec["pid_start"]) + 1)})
    assert ProcessRuntime().adopt(sandbox, "app") is None  # same pid, another start time
    records.write_record(state, rec)
    assert await rt.stop(h, grace=5) == 143


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
        "sh", "-c", "setsid sleep 1000 & sleep 1000"],
        mounts=[Mount(str(vol), "/knet-rt-test-remove")]))
    b = await rt.start(sandbox, ContainerSpec(name="b", argv=SLEEPER))
    s = await rt.exec(sandbox, ["sleep", "1000"], container="b", stdin=False, tty=False)
    await asyncio.sleep(0.3)
    assert rt.running(a) and rt.running(b)
    assert len({int(p) for p in os.listdir("/proc") if p.isdigit()} - pids0) >= 7
    assert Path("/knet-rt-test-remove").is_dir()
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


def processes_named(comm: str) -> set[int]:
    out = set()
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and Path(f"/proc/{p}/comm").read_text().strip() == comm:
                out.add(int(p))
        except OSError:
            continue
    return out


def fork_servers() -> set[int]:
    return processes_named("knet-shim-srv")


async def test_fork_server_comes_back_and_goes_with_close(sandbox: PodSandbox) -> None:
    rt = ProcessRuntime()
    first = await rt.start(sandbox, ContainerSpec(name="a", argv=SLEEPER))
    (server,) = fork_servers()
    assert len(processes_named("knet-shim")) == 1  # one shim per container, named for ps
    os.kill(server, 9)
    for _ in range(100):
        st = records.proc_stat(server)
        if st is None or st[0] == "Z":
            break
        await asyncio.sleep(0.02)
    assert rt.running(first)  # containers do not depend on the server
    second = await rt.start(sandbox, ContainerSpec(name="b", argv=["sh", "-c", "exit 9"]))
    assert await asyncio.wait_for(rt.wait(second), timeout=20) == 9
    assert fork_servers() - {server} != set()
    assert await rt.stop(first, grace=5) == 143
    await rt.remove(sandbox)
    await rt.close()
    assert fork_servers() == set()
