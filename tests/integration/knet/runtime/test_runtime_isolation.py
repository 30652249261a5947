"""Container isolation as a user sees it from inside a container: its own root file system
(no knet state, no /root, a private /tmp), its own processes, the pod's interfaces in /sys,
memory limits (OOMKilled 137), users, read-only roots, capabilities and a shared PID namespace.
Each test checks a finding reproduced on the old runtime, where containers shared the host's
file system and PID namespace."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from runtime_contract import logs, read_all, run

from knet.runtime import cgroups
from knet.runtime.base import ContainerSpec, Mount, PodSandbox
from knet.runtime.process import ProcessRuntime


@pytest.fixture
def secret_state(tmp_path: Path) -> Path:
    """A knet state dir outside /tmp holding an admin token, as `knet up` makes one."""
    d = Path("/var/lib/knet")  # a tmpfs of the sandbox
    (d / "token").write_text("admin-token\n")
    return d


async def test_the_state_dir_is_not_visible(rt: ProcessRuntime, sandbox: PodSandbox,
                                            secret_state: Path) -> None:
    code, out = await run(rt, sandbox, "app", [
        "sh", "-c", f"cat /var/lib/knet/token; ls /var/lib/knet; ls -d {sandbox.pod_dir}"])
    assert code != 0 and "admin-token" not in out
    assert out.splitlines() == [
        "cat: /var/lib/knet/token: No such file or directory",
        f"ls: cannot access '{sandbox.pod_dir}': No such file or directory"]


async def test_root_home_lists_empty(rt: ProcessRuntime, sandbox: PodSandbox) -> None:
    code, out = await run(rt, sandbox, "app", ["ls", "/root"])
    assert code == 0 and out == ""
    assert os.listdir("/root")  # ... while the host's has files


async def test_tmp_is_private_and_root_writes_stay_in_the_container(
        rt: ProcessRuntime, sandbox: PodSandbox) -> None:
    name = f"knet-iso-{os.getpid()}"
    code, out = await run(rt, sandbox, "app", [
        "sh", "-c", f"echo in-pod > /tmp/{name}; echo etc > /etc/{name}; cat /tmp/{name}; "
                    "ls /tmp | wc -l"])
    assert code == 0 and out.splitlines() == ["in-pod", "1"]
    assert not Path(f"/tmp/{name}").exists() and not Path(f"/etc/{name}").exists()


async def test_ps_shows_only_the_containers_processes(rt: ProcessRuntime,
                                                      sandbox: PodSandbox) -> None:
    code, out = await run(rt, sandbox, "app", ["ps", "-e", "-o", "pid=,args="])
    procs = [line.split(None, 1) for line in out.splitlines()]
    assert code == 0 and [pid for pid, _ in procs] == ["1", "2"], out  # its init, then ps
    assert procs[1][1] == "ps -e -o pid=,args="
    assert "pytest" not in out and any("pytest" in cmd for cmd in _host_cmdlines())


def _host_cmdlines() -> list[str]:
    out = []
    for p in os.listdir("/proc"):
        try:
            out.append(Path(f"/proc/{p}/cmdline").read_text() if p.isdigit() else "")
        except OSError:
            pass
    return out


async def test_sys_class_net_lists_the_pods_interfaces(rt: ProcessRuntime,
                                                       sandbox: PodSandbox) -> None:
    subprocess.run(["ip", "link", "add", "kniso-host0", "type", "veth", "peer", "name",
                    "kniso-pod0", "netns", sandbox.netns], check=True)
    try:
        code, out = await run(rt, sandbox, "app", ["ls", "/sys/class/net"])
    finally:
        subprocess.run(["ip", "link", "del", "kniso-host0"], check=False)
    assert code == 0 and sorted(out.split()) == ["kniso-pod0", "lo"]


async def test_exec_sees_the_containers_files_and_processes(rt: ProcessRuntime,
                                                            sandbox: PodSandbox) -> None:
    h = await rt.start(sandbox, ContainerSpec(name="app", argv=[
        "sh", "-c", "echo secret-of-app > /tmp/mine; exec sleep 1000"]))
    for _ in range(100):
        s = await rt.exec(sandbox, ["sh", "-c", "cat /tmp/mine; ps -e -o comm="],
                          container="app", stdin=False, tty=False)
        out, _ = await read_all(s)
        if b"secret-of-app" in out:
            break
        await asyncio.sleep(0.05)
    assert out.splitlines()[0] == b"secret-of-app"
    assert b"sleep" in out and len(out.splitlines()) <= 6, out
    await rt.stop(h, grace=5)


@pytest.mark.skipif(cgroups.Cgroups.detect().version == 0, reason="no cgroup controllers")
async def test_memory_hog_over_its_limit_is_oom_killed(rt: ProcessRuntime,
                                                       sandbox: PodSandbox) -> None:
    h = await rt.start(sandbox, ContainerSpec(
        name="hog", memory_limit=32 * 2**20,
        argv=["python3", "-c", "x = []\nwhile True: x.append(bytearray(1 << 20))"]))
    assert await asyncio.wait_for(rt.wait(h), timeout=30) == 137
    ex = rt.last_exit(h)
    assert ex is not None and ex.reason == "OOMKilled"
    spec = rt._load_spec(rt_instance(h))
    assert spec["cgroups"] and not any(os.path.exists(d) for d in spec["cgroups"])


def rt_instance(h: object) -> object:
    from knet.runtime import layout

    return layout.instance_of_log(h.log_path)  # type: ignore[attr-defined]


@pytest.mark.skipif(cgroups.Cgroups.detect().version == 0, reason="no cgroup controllers")
async def test_cpu_quota_and_usage_are_in_its_cgroup(rt: ProcessRuntime,
                                                     sandbox: PodSandbox) -> None:
    h = await rt.start(sandbox, ContainerSpec(name="busy", cpu_limit_millis=200, argv=[
        "sh", "-c", "while :; do :; done"]))
    await asyncio.sleep(0.5)
    use = rt.usage(h)
    spec = rt._load_spec(rt_instance(h))
    quota = [Path(d, "cpu.cfs_quota_us").read_text().strip() for d in spec["cgroups"]
             if Path(d, "cpu.cfs_quota_us").exists()]
    await rt.stop(h, grace=5)
    assert quota == ["20000"]
    assert 0 < use["cpu_ns"] < 0.5e9 and use["memory_bytes"] > 0


async def test_run_as_user_and_read_only_root(rt: ProcessRuntime, sandbox: PodSandbox,
                                              tmp_path: Path) -> None:
    code, out = await run(rt, sandbox, "app", ["sh", "-c", "id -u; id -g"])
    assert out.split() == ["0", "0"]
    h = await rt.start(sandbox, ContainerSpec(name="u", run_as_user=1000, run_as_group=3000,
                                              argv=["sh", "-c", "id -u; id -g"]))
    assert await asyncio.wait_for(rt.wait(h), timeout=20) == 0
    assert (await logs(rt, h)).split() == ["1000", "3000"]
    vol = tmp_path / "vol"
    vol.mkdir()
    h = await rt.start(sandbox, ContainerSpec(
        name="ro", read_only_root=True, mounts=[Mount(str(vol), "/data")],
        argv=["sh", "-c", "touch /etc/x 2>&1; touch /tmp/ok && touch /data/ok && echo fine"]))
    assert await asyncio.wait_for(rt.wait(h), timeout=20) == 0
    out = await logs(rt, h)
    assert "Read-only file system" in out and "fine" in out
    assert (vol / "ok").exists()


async def test_capabilities_are_dockers_defaults_unless_added(rt: ProcessRuntime,
                                                             sandbox: PodSandbox) -> None:
    cmd = ["sh", "-c", "ip link add kniso-d0 type bridge 2>&1 && echo made; "
                       "mount -t tmpfs x /mnt 2>&1 || echo no-mount"]
    code, out = await run(rt, sandbox, "plain", cmd)
    assert "made" not in out and "no-mount" in out
    h = await rt.start(sandbox, ContainerSpec(name="netadmin", argv=cmd, cap_add=("NET_ADMIN",)))
    await rt.wait(h)
    out = await logs(rt, h)
    assert "made" in out and "no-mount" in out
    h = await rt.start(sandbox, ContainerSpec(name="priv", argv=cmd[:2] + [
        "mount -t tmpfs x /mnt && echo mounted"], privileged=True))
    await rt.wait(h)
    assert "mounted" in await logs(rt, h)


async def test_share_process_namespace(tmp_path: Path, netns: str) -> None:
    sb = PodSandbox.for_pod("default", "shared", netns=netns, pod_ip="10.244.1.6",
                            pod_dir=tmp_path / "shared", share_pid=True)
    rt = ProcessRuntime()
    try:
        a = await rt.start(sb, ContainerSpec(name="a", argv=["sleep", "1000"]))
        b = await rt.start(sb, ContainerSpec(name="b", argv=[
            "sh", "-c", "sleep 0.3; ps -e -o pid=,args="]))
        assert await asyncio.wait_for(rt.wait(b), timeout=20) == 0
        procs = [line.split(None, 1) for line in (await logs(rt, b)).splitlines()]
        assert procs[0][0] == "1" and procs[0][1].endswith("launch.py pause")  # the pod's init
        assert sorted(args for _, args in procs[1:]) == [
            "ps -e -o pid=,args=", "sh -c sleep 0.3; ps -e -o pid=,args=", "sleep 1000"]
        assert await rt.stop(a, grace=5) == 143
    finally:
        await rt.remove(sb)
        await rt.close()


async def test_exec_tty_is_a_pty_of_the_containers_devpts(rt: ProcessRuntime,
                                                          sandbox: PodSandbox) -> None:
    await rt.start(sandbox, ContainerSpec(name="app", argv=["sleep", "1000"]))
    s = await rt.exec(sandbox, ["sh", "-c", "tty; ls /dev/pts"], container="app", stdin=False,
                      tty=True)
    out, _ = await read_all(s)
    lines = out.decode().replace("\r\n", "\n").split()
    assert await s.wait() == 0
    assert lines[0].startswith("/dev/pts/") and lines[0][len("/dev/pts/"):] in lines[1:]


@pytest.fixture
def overlay_pod_dir(tmp_path: Path) -> Iterator[Path]:
    """A pod dir on an overlayfs: where the state dir is when knet runs inside a Docker or
    Podman container (whose root is an overlay)."""
    base = tmp_path / "ovl"
    for d in ("lower", "upper", "work", "merged"):
        (base / d).mkdir(parents=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={base / 'lower'},upperdir={base / 'upper'},"
                    f"workdir={base / 'work'}", str(base / "merged")], check=True)
    try:
        yield base / "merged" / "pod"
    finally:
        subprocess.run(["umount", "-l", str(base / "merged")], check=False)


async def test_a_container_starts_when_the_state_dir_is_on_an_overlayfs(
        netns: str, overlay_pod_dir: Path) -> None:
    """An overlay's upper dir cannot be on an overlayfs: inside the lab container every pod
    failed with 'mount overlay on .../merged: Invalid argument' (kube-dns never Ready)."""
    sandbox = PodSandbox.for_pod("default", "ovl-1", netns=netns, pod_ip="10.244.1.6",
                                 pod_dir=overlay_pod_dir)
    runtime = ProcessRuntime()
    try:
        code, out = await run(runtime, sandbox, "app", [
            "sh", "-c", "echo written > /etc/knet-ovl; cat /etc/knet-ovl"])
        assert (code, out) == (0, "written\n"), out
        assert not Path("/etc/knet-ovl").exists()
    finally:
        await runtime.remove(sandbox)
        await runtime.close()
