"""The Runtime contract: what the kubelet relies on, run on every runtime.

Imported (`from runtime_contract import *`) by test_runtime_unprivileged.py (namespaces=False,
no root) and by tests/integration/knet/runtime (real namespaces, in the sandbox). The module
that imports it provides the fixtures `rt` (a runtime, closed and the pod removed after the
test), `make_rt` (a new runtime object: an agent restart) and `sandbox` (a PodSandbox).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from knet.errors import RuntimeError_
from knet.runtime import records
from knet.runtime.base import ContainerSpec, ContainerStartError, ExecSession, PodSandbox
from knet.runtime.process import ProcessRuntime

__all__ = [
    "test_a_chatty_log_is_rotated",
    "test_adopt_after_agent_restart",
    "test_adopt_after_the_agent_was_killed",
    "test_adopt_refuses_a_reused_pid",
    "test_command_not_found_is_reported_clearly",
    "test_env_and_workdir",
    "test_exec_missing_command_and_stopped_container",
    "test_exec_output_and_exit_code",
    "test_exec_with_a_tty",
    "test_exec_with_stdin",
    "test_exit_codes_and_reasons",
    "test_fork_server_comes_back_and_goes_with_close",
    "test_remove_after_the_shim_died",
    "test_remove_kills_everything_and_deletes_its_files",
    "test_restart_keeps_the_previous_log",
    "test_stdout_and_stderr_land_in_the_log",
    "test_stop_term_then_kill",
]

SLEEPER = ["sh", "-c", "echo started; exec sleep 300"]
MakeRt = Callable[[], ProcessRuntime]


async def logs(rt: ProcessRuntime, h: object, **kw: object) -> str:
    chunks = [c async for c in rt.read_logs(h, follow=False, **kw)]  # type: ignore[arg-type]
    return b"".join(chunks).decode()


async def run(rt: ProcessRuntime, sb: PodSandbox, name: str, argv: list[str],
              **kw: object) -> tuple[int, str]:
    h = await rt.start(sb, ContainerSpec(name=name, argv=argv, **kw))  # type: ignore[arg-type]
    code = await asyncio.wait_for(rt.wait(h), timeout=20)
    return code, await logs(rt, h)


async def read_all(s: ExecSession) -> tuple[bytes, bytes]:
    out, err = [], []
    while chunk := await asyncio.wait_for(s.read_stdout(), timeout=20):
        out.append(chunk)
    while chunk := await asyncio.wait_for(s.read_stderr(), timeout=20):
        err.append(chunk)
    return b"".join(out), b"".join(err)


def host_pid(container_pid: int, nspid: int) -> int:
    """The host's pid of process `nspid` as seen in the PID namespace of `container_pid`
    (a host pid); nspid itself when that container shares the caller's PID namespace."""
    ns = os.readlink(f"/proc/{container_pid}/ns/pid")
    if ns == os.readlink("/proc/self/ns/pid"):
        return nspid
    for entry in os.listdir("/proc"):
        try:
            if not entry.isdigit() or os.readlink(f"/proc/{entry}/ns/pid") != ns:
                continue
            with open(f"/proc/{entry}/status") as f:
                line = next(ln for ln in f if ln.startswith("NSpid:"))
        except (OSError, StopIteration):
            continue
        if int(line.split()[-1]) == nspid:
            return int(entry)
    raise AssertionError(f"no process {nspid} in the PID namespace of {container_pid}")


def gone(pid: int) -> bool:
    st = records.proc_stat(pid)
    return st is None or st[0] == "Z"


async def until_logged(rt: ProcessRuntime, h: object, text: str) -> str:
    for _ in range(250):
        out = await logs(rt, h)
        if text in out:
            return out
        await asyncio.sleep(0.02)
    raise AssertionError(f"{text!r} never showed in the log: {out!r}")


async def until_gone(pids: list[int]) -> list[int]:
    for _ in range(250):
        if all(gone(p) for p in pids):
            break
        await asyncio.sleep(0.02)
    return [p for p in pids if not gone(p)]


def processes_named(comm: str, *, parent: int | None = None) -> set[int]:
    out = set()
    for p in os.listdir("/proc"):
        try:
            if not p.isdigit() or Path(f"/proc/{p}/comm").read_text().strip() != comm:
                continue
            stat = Path(f"/proc/{p}/stat").read_text()
            if parent is None or int(stat[stat.rindex(")") + 2:].split()[1]) == parent:
                out.add(int(p))
        except OSError:
            continue
    return out


def our_servers() -> set[int]:
    """Shim fork servers started by this test process (other runtimes may run beside)."""
    return processes_named("knet-shim-srv", parent=os.getpid())


async def test_stdout_and_stderr_land_in_the_log(rt: ProcessRuntime, sandbox: PodSandbox) -> None:
    t0 = time.time()
    h = await rt.start(sandbox, ContainerSpec(
        name="app", argv=["sh", "-c", "echo to-out; echo to-err >&2; printf 'no newline'"]))
    assert await asyncio.wait_for(rt.wait(h), timeout=20) == 0
    raw = h.log_path.read_text().splitlines()
    parsed = [re.fullmatch(r"(\S+) (stdout|stderr) ([FP]) (.*)", ln) for ln in raw]
    assert all(parsed), raw
    got = {(m.group(2), m.group(4)) for m in parsed if m}
    assert got == {("stdout", "to-out"), ("stderr", "to-err"), ("stdout", "no newline")}
    for m in parsed:
        assert m is not None
        ts = time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        assert t0 - 2 <= ts <= time.time() + 1
    first = (await logs(rt, h, timestamps=True)).splitlines()[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (to-out|to-err)", first)


async def test_a_chatty_log_is_rotated(rt: ProcessRuntime, sandbox: PodSandbox) -> None:
    small = ProcessRuntime(namespaces=rt.namespaces, log_max_bytes=4096)
    try:
        h = await small.start(sandbox, ContainerSpec(name="chatty", argv=[
            "sh", "-c", "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done"]))
        assert await asyncio.wait_for(small.wait(h), timeout=20) == 0
    finally:
        await small.close()
    assert h.log_path.stat().st_size <= 4096
    rotated = h.log_path.with_name(h.log_path.name + ".1")
    assert 0 < rotated.stat().st_size <= 4096
    text = await logs(rt, h)
    assert text.endswith("line 299\n") and "line 0\n" not in text


async def test_exit_codes_and_reasons(rt: ProcessRuntime, sandbox: PodSandbox) -> None:
    assert (await run(rt, sandbox, "ok", ["true"]))[0] == 0
    assert (await run(rt, sandbox, "three", ["sh", "-c", "exit 3"]))[0] == 3
    h = await rt.start(sandbox, ContainerSpec(name="killed", argv=["sh", "-c", "kill -9 $$"]))
    assert await asyncio.wait_for(rt.wait(h), timeout=20) == 137
    ex = rt.last_exit(h)
    assert ex is not None and ex.exit_code == 137 and ex.reason == "Error"
    assert not rt.running(h)
    assert await rt.wait(h) == 137  # asking again gives the same answer


async def test_stop_term_then_kill(rt: ProcessRuntime, sandbox: PodSandbox) -> None:
    polite = await rt.start(sandbox, ContainerSpec(name="polite", argv=[
        "sh", "-c", ("trap 'echo got TERM; exit 0' TERM; echo ready; "
                     "while :; do sleep 0.1; done")]))
    stubborn = await rt.start(sandbox, ContainerSpec(name="stubborn", argv=[
        "sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"]))
    await until_logged(rt, polite, "ready")  # the traps are set
    await until_logged(rt, stubborn, "ready")
    t = time.monotonic()
    assert await rt.stop(polite, grace=10) == 0
    assert time.monotonic() - t < 5  # it left on SIGTERM, not at the end of the grace
    assert "got TERM" in await logs(rt, polite)
    t = time.monotonic()
    assert await rt.stop(stubborn, grace=1) == 137
    assert time.monotonic() - t >= 1  # it had its grace period before SIGKILL
    assert not rt.running(stubborn)


async def test_env_and_workdir(rt: ProcessRuntime, sandbox: PodSandbox) -> None:
    code, out = await run(rt, sandbox, "app", ["sh", "-c", "echo $GREETING; pwd; echo $PATH"],
                          env={"GREETING": "hi there"}, workdir="/usr")
    assert code == 0
    assert out.splitlines()[:2] == ["hi there", "/usr"]
    assert "/usr/bin" in out.splitlines()[2]  # a default PATH, as a runtime gives


async def test_command_not_found_is_reported_clearly(rt: ProcessRuntime,
                                                     sandbox: PodSandbox) -> None:
    with pytest.raises(ContainerStartError) as info:
        await rt.start(sandbox, ContainerSpec(name="app", argv=["no-such-command-knet"]))
    err = info.value
    assert err.exit_code == 127 and err.reason == "RunContainerError"
    assert 'exec: "no-such-command-knet": executable file not found in $PATH' in str(err)
    assert "default/web-1" in str(err)
    log_text = (sandbox.pod_dir / "containers" / "app" / "0.log").read_text()
    assert "executable file not found in $PATH" in log_text
    h = rt.latest(sandbox, "app")
    assert h is None  # it never ran: no instance to adopt or wait for
    with pytest.raises(ContainerStartError, match="chdir to workingDir /no/such/dir"):
        await rt.start(sandbox, ContainerSpec(name="wd", argv=["true"], workdir="/no/such/dir"))


async def test_restart_keeps_the_previous_log(rt: ProcessRuntime, sandbox: PodSandbox) -> None:
    first = await rt.start(sandbox, ContainerSpec(name="app", argv=["echo", "run one"]))
    assert await rt.wait(first) == 0
    second = await rt.start(sandbox, ContainerSpec(name="app", argv=["echo", "run two"]))
    assert await rt.wait(second) == 0
    assert (first.attempt, second.attempt) == (0, 1)
    assert await logs(rt, second) == "run two\n"
    assert await logs(rt, second, previous=True) == "run one\n"
    with pytest.raises(RuntimeError_, match="already running"):
        sleeper = await rt.start(sandbox, ContainerSpec(name="s", argv=SLEEPER))
        await rt.start(sandbox, ContainerSpec(name="s", argv=SLEEPER))
    await rt.stop(sleeper, grace=5)


async def test_exec_output_and_exit_code(rt: ProcessRuntime, sandbox: PodSandbox) -> None:
    await rt.start(sandbox, ContainerSpec(name="app", argv=SLEEPER, env={"FOO": "bar"},
                                          workdir="/usr"))
    s = await rt.exec(sandbox, ["sh", "-c", "echo $FOO; pwd; echo oops >&2; exit 5"],
                      container="app", stdin=False, tty=False)
    out, err = await read_all(s)
    assert await s.wait() == 5
    assert out.decode().splitlines() == ["bar", "/usr"]  # the container's env and workdir
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


async def test_adopt_after_agent_restart(make_rt: MakeRt, sandbox: PodSandbox,
                                         tmp_path: Path) -> None:
    flag = tmp_path / "go"
    first = make_rt()
    h = await first.start(sandbox, ContainerSpec(name="app", argv=[  # the flag: in its own /tmp
        "sh", "-c", f"mkdir -p {tmp_path}; echo one; while [ ! -e {flag} ]; do sleep 0.05; "
        "done; echo two; exit 7"]))
    worker = await first.start(sandbox, ContainerSpec(name="worker", argv=SLEEPER))
    await first.close()  # the agent goes away; the containers do not
    assert first.running(h)

    second = make_rt()
    try:
        adopted = second.adopt(sandbox, "app")
        assert adopted is not None and adopted.pid == h.pid and adopted.attempt == 0
        assert second.adopt(sandbox, "nope") is None
        touch = await second.exec(sandbox, ["touch", str(flag)], container="app", stdin=False,
                                  tty=False)
        assert await asyncio.wait_for(touch.wait(), timeout=20) == 0
        assert await asyncio.wait_for(second.wait(adopted), timeout=20) == 7  # real exit code
        log = b"".join([c async for c in second.read_logs(adopted, follow=True)])
        assert log == b"one\ntwo\n"  # logged across the restart, follow ends at the exit
        assert second.adopt(sandbox, "app") is None  # exited: nothing to adopt
        latest = second.latest(sandbox, "app")  # ... but how it ended is known
        assert latest is not None and second.last_exit(latest) is not None
        assert second.last_exit(latest).exit_code == 7  # type: ignore[union-attr]
        w = second.adopt(sandbox, "worker")
        assert w is not None and w.pid == worker.pid
        assert await second.stop(w, grace=5) == 143  # sleep dies of SIGTERM
    finally:
        await second.remove(sandbox)
        await second.close()


async def test_adopt_refuses_a_reused_pid(rt: ProcessRuntime, make_rt: MakeRt,
                                          sandbox: PodSandbox) -> None:
    h = await rt.start(sandbox, ContainerSpec(name="app", argv=SLEEPER))
    state = sandbox.pod_dir / "containers" / "app" / "0.state"
    rec = records.read_record(state)
    assert rec is not None
    records.write_record(state, {**rec, "pid_start": str(int(rec["pid_start"]) + 1)})
    other = make_rt()
    assert other.adopt(sandbox, "app") is None  # same pid, another start time: not ours
    await other.close()
    records.write_record(state, rec)
    assert await rt.stop(h, grace=5) == 143


async def test_remove_kills_everything_and_deletes_its_files(make_rt: MakeRt,
                                                             sandbox: PodSandbox) -> None:
    rt = make_rt()
    a = await rt.start(sandbox, ContainerSpec(name="a", argv=[
        "sh", "-c", "setsid sleep 1000 & echo daemon $!; exec sleep 1000"]))
    b = await rt.start(sandbox, ContainerSpec(name="b", argv=SLEEPER))
    daemon = host_pid(a.pid, int((await until_logged(rt, a, "daemon")).split()[1]))
    assert not gone(daemon)  # it left the container's process group
    pids = [a.pid, b.pid, a.shim_pid, b.shim_pid, daemon]
    await rt.remove(sandbox)
    await rt.close()
    assert await until_gone(pids) == []
    assert not sandbox.pod_dir.exists()
    await make_rt().remove(sandbox)  # again: nothing to do, no error


async def test_fork_server_comes_back_and_goes_with_close(make_rt: MakeRt,
                                                          sandbox: PodSandbox) -> None:
    rt = make_rt()
    first = await rt.start(sandbox, ContainerSpec(name="a", argv=SLEEPER))
    servers = our_servers()
    assert len(servers) == 1
    (server,) = servers
    assert first.shim_pid in processes_named("knet-shim")  # named for ps
    os.kill(server, 9)
    assert await until_gone([server]) == []
    assert rt.running(first)  # containers do not depend on the server
    second = await rt.start(sandbox, ContainerSpec(name="b", argv=["sh", "-c", "exit 9"]))
    assert await asyncio.wait_for(rt.wait(second), timeout=20) == 9
    assert len(our_servers() - {server}) == 1
    assert await rt.stop(first, grace=5) == 143
    await rt.remove(sandbox)
    await rt.close()
    assert our_servers() == set()


AGENT = """
import asyncio, sys
from pathlib import Path
from knet.runtime.base import ContainerSpec, PodSandbox
from knet.runtime.process import ProcessRuntime

async def main():
    sb = PodSandbox(key="default/web-1", netns=sys.argv[1], hostname="web-1",
                    pod_dir=Path(sys.argv[2]), resolv_conf="", hosts="")
    rt = ProcessRuntime(namespaces=sys.argv[3] == "1")
    h = await rt.start(sb, ContainerSpec(name="app", argv=[
        "sh", "-c", "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.05; done"]))
    print(h.pid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_adopt_after_the_agent_was_killed(make_rt: MakeRt, sandbox: PodSandbox) -> None:
    rt = make_rt()
    namespaces = "1" if rt.namespaces else "0"
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", AGENT, sandbox.netns, str(sandbox.pod_dir), namespaces,
        stdout=asyncio.subprocess.PIPE)
    assert agent.stdout is not None
    pid = int(await asyncio.wait_for(agent.stdout.readline(), timeout=30))
    agent.kill()  # SIGKILL: no clean-up of any kind
    await agent.wait()
    h = rt.adopt(sandbox, "app")
    assert h is not None and h.pid == pid and rt.running(h)
    before = (await until_logged(rt, h, "tick")).count("tick")
    await until_logged(rt, h, f"tick {before + 2}")  # still running, still logged
    assert await rt.stop(h, grace=5) == 143
    await rt.remove(sandbox)
    await rt.close()


async def test_remove_after_the_shim_died(rt: ProcessRuntime, sandbox: PodSandbox) -> None:
    h = await rt.start(sandbox, ContainerSpec(name="app", argv=SLEEPER))
    await until_logged(rt, h, "started")  # a later write would die of SIGPIPE: no reader
    os.kill(h.shim_pid, 9)
    assert await until_gone([h.shim_pid]) == []
    assert rt.running(h)
    await rt.remove(sandbox)
    assert await until_gone([h.pid]) == []
    assert not sandbox.pod_dir.exists()
