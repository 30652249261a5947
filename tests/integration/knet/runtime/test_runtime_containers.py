"""Containers as a user sees them: in the pod's network, with the pod's hostname and DNS
files, their output in the log with timestamps, exit codes, env, workdir and volumes."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest
from runtime_contract import logs, run, until_logged

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


async def test_volume_mounts(rt: ProcessRuntime, sandbox: PodSandbox,
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
    # the mount points were made in the container's own root, never on the host
    assert not target.exists() and not Path("/knet-rt-test-ro").exists()
    await rt.remove(sandbox)
    assert not target.exists() and not Path("/knet-rt-test-ro").exists()


async def test_missing_netns_is_a_create_error(rt: ProcessRuntime, tmp_path: Path) -> None:
    gone = PodSandbox.for_pod("default", "x", netns="kntest-missing", pod_ip="10.244.1.9",
                              pod_dir=tmp_path / "x")
    with pytest.raises(ContainerStartError, match="netns kntest-missing does not exist") as info:
        await rt.start(gone, ContainerSpec(name="app", argv=["true"]))
    assert info.value.reason == "CreateContainerError"
    assert not (tmp_path / "x").exists()  # nothing half-made


async def test_run_as_user_and_etc_hostname(rt: ProcessRuntime, sandbox: PodSandbox) -> None:
    before = Path("/etc/hostname").read_text()
    h = await rt.start(sandbox, ContainerSpec(
        name="app", argv=["sh", "-c", "id -u; id -g; cat /etc/hostname; exec sleep 300"],
        run_as_user=65534, run_as_group=65534, workdir="/tmp"))
    assert (await until_logged(rt, h, "web-1")).splitlines() == ["65534", "65534", "web-1"]
    s = await rt.exec(sandbox, ["id", "-u"], container="app", stdin=False, tty=False)
    assert await s.read_stdout() == b"65534\n"  # exec runs as the container's user
    assert await s.wait() == 0
    assert Path("/etc/hostname").read_text() == before
