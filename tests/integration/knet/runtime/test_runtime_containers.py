"""Containers as a user sees them: in the pod's network, with the pod's hostname and DNS
files, their output in the log with timestamps, exit codes, env, workdir and volumes."""

from __future__ import annotations

import asyncio
import re
import socket
import sys
import time
from pathlib import Path

import pytest

from knet.runtime.base import ContainerSpec, ContainerStartError, Mount, PodSandbox
from knet.runtime.process import ProcessRuntime

PY = sys.executable
SERVER = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8080))
s.listen()
print("listening", flush=True)
c, _ = s.accept()
c.sendall(b"hello from " + socket.gethostname().encode() + b"\\n")
c.close()
"""
CLIENT = """
import socket, time
for _ in range(200):
    try:
        c = socket.create_connection(("127.0.0.1", 8080), timeout=2)
        break
    except OSError:
        time.sleep(0.05)
print("client got:", c.recv(100).decode().strip(), flush=True)
"""


async def logs(rt: ProcessRuntime, h: object, **kw: object) -> str:
    chunks = [c async for c in rt.read_logs(h, follow=False, **kw)]  # type: ignore[arg-type]
    return b"".join(chunks).decode()


async def run(rt: ProcessRuntime, sb: PodSandbox, name: str, argv: list[str],
              **kw: object) -> tuple[int, str]:
    h = await rt.start(sb, ContainerSpec(name=name, argv=argv, **kw))  # type: ignore[arg-type]
    code = await asyncio.wait_for(rt.wait(h), timeout=20)
    return code, await logs(rt, h)


async def test_two_containers_of_a_pod_talk_over_localhost(rt: ProcessRuntime,
                                                           sandbox: PodSandbox) -> None:
    server = await rt.start(sandbox, ContainerSpec(name="server", argv=[PY, "-c", SERVER]))
    client = await rt.start(sandbox, ContainerSpec(name="client", argv=[PY, "-c", CLIENT]))
    assert await asyncio.wait_for(rt.wait(client), timeout=20) == 0
    assert await asyncio.wait_for(rt.wait(server), timeout=20) == 0
    assert "client got: hello from web-1" in await logs(rt, client)
    # the port was in the pod's netns, not the host's: nothing listens here
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 8080), timeout=1).close()


async def test_hostname_and_dns_files_are_the_pods_and_the_hosts_are_untouched(
        rt: ProcessRuntime, sandbox: PodSandbox) -> None:
    before = (Path("/etc/resolv.conf").read_text(), Path("/etc/hosts").read_text(),
              socket.gethostname())
    code, out = await run(rt, sandbox, "app", [
        "sh", "-c", "hostname; echo ---; cat /etc/resolv.conf; echo ---; cat /etc/hosts"])
    assert code == 0
    host, resolv, hosts = out.split("---\n")
    assert host.strip() == "web-1"
    assert resolv == sandbox.resolv_conf
    assert resolv.startswith("search default.svc.cluster.local svc.cluster.local cluster.local")
    assert hosts == sandbox.hosts
    assert "10.244.1.5\tweb-1.web.default.svc.cluster.local\tweb-1" in hosts
    after = (Path("/etc/resolv.conf").read_text(), Path("/etc/hosts").read_text(),
             socket.gethostname())
    assert after == before


async def test_stdout_and_stderr_land_in_the_log_with_timestamps(
        rt: ProcessRuntime, sandbox: PodSandbox) -> None:
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
    assert (await logs(rt, h, timestamps=True)).splitlines()[0].split(" ", 1)[1] in (
        "to-out", "to-err")


async def test_exit_codes_and_reasons(rt: ProcessRuntime, sandbox: PodSandbox) -> None:
    assert (await run(rt, sandbox, "ok", ["true"]))[0] == 0
    assert (await run(rt, sandbox, "three", ["sh", "-c", "exit 3"]))[0] == 3
    h = await rt.start(sandbox, ContainerSpec(name="killed", argv=["sh", "-c", "kill -9 $$"]))
    assert await asyncio.wait_for(rt.wait(h), timeout=20) == 137
    ex = rt.last_exit(h)
    assert ex is not None and ex.exit_code == 137 and ex.reason == "Error"
    assert not rt.running(h)


async def test_stop_term_then_kill(rt: ProcessRuntime, sandbox: PodSandbox) -> None:
    polite = await rt.start(sandbox, ContainerSpec(name="polite", argv=[
        "sh", "-c", ("trap 'echo got TERM; exit 0' TERM; echo ready; "
                    "while :; do sleep 0.1; done")]))
    stubborn = await rt.start(sandbox, ContainerSpec(name="stubborn", argv=[
        "sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"]))
    await asyncio.sleep(0.3)
    t = time.monotonic()
    assert await rt.stop(polite, grace=10) == 0
    assert time.monotonic() - t < 5  # it left on SIGTERM, not at the end of the grace
    assert "got TERM" in await logs(rt, polite)
    t = time.monotonic()
    assert await rt.stop(stubborn, grace=1) == 137
    assert time.monotonic() - t >= 1  # it had its grace period before SIGKILL
    assert not rt.running(stubborn)


async def test_env_workdir_and_mounts(rt: ProcessRuntime, sandbox: PodSandbox,
                                      tmp_path: Path) -> None:
    data, ro = tmp_path / "data", tmp_path / "ro"
    data.mkdir()
    ro.mkdir()
    (data / "in.txt").write_text("from the host\n")
    target = Path("/knet-rt-test-volume")
    assert not target.exists()
    code, out = await run(rt, sandbox, "app", [
        "sh", "-c", ("echo $GREETING; pwd; cat /knet-rt-test-volume/in.txt; "
                    "echo written > /knet-rt-test-volume/out.txt; "
                    "(echo x > /knet-rt-test-ro/f) 2>/dev/null || echo read-only")],
        env={"GREETING": "hi there"}, workdir="/usr",
        mounts=[Mount(str(data), str(target)), Mount(str(ro), "/knet-rt-test-ro", read_only=True)])
    assert code == 0, out
    assert out.splitlines() == ["hi there", "/usr", "from the host", "read-only"]
    assert (data / "out.txt").read_text() == "written\n"
    assert target.is_dir() and not (target / "in.txt").exists()  # made, but not mounted here
    await rt.remove(sandbox)
    assert not target.exists() and not Path("/knet-rt-test-ro").exists()


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


async def test_bad_workdir_and_missing_netns(rt: ProcessRuntime, sandbox: PodSandbox,
                                             tmp_path: Path) -> None:
    with pytest.raises(ContainerStartError, match="chdir to workingDir /no/such/dir"):
        await rt.start(sandbox, ContainerSpec(name="app", argv=["true"], workdir="/no/such/dir"))
    gone = PodSandbox.for_pod("default", "x", netns="kntest-missing", pod_ip="10.244.1.9",
                              pod_dir=tmp_path / "x")
    with pytest.raises(ContainerStartError, match="netns kntest-missing does not exist"):
        await rt.start(gone, ContainerSpec(name="app", argv=["true"]))


async def test_restart_keeps_the_previous_log(rt: ProcessRuntime, sandbox: PodSandbox) -> None:
    first = await rt.start(sandbox, ContainerSpec(name="app", argv=["echo", "run one"]))
    assert await rt.wait(first) == 0
    second = await rt.start(sandbox, ContainerSpec(name="app", argv=["echo", "run two"]))
    assert await rt.wait(second) == 0
    assert (first.attempt, second.attempt) == (0, 1)
    assert await logs(rt, second) == "run two\n"
    assert await logs(rt, second, previous=True) == "run one\n"
