"""Pure parts of container isolation: the rootfs mount plan, capabilities, cgroup detection
and the exec command line (the integration tests run them for real)."""

from __future__ import annotations

from pathlib import Path

import pytest

from knet.runtime import caps, cgroups, rootfs
from knet.runtime.base import ContainerSpec, Mount, PodSandbox
from knet.runtime.execsession import enter_command


def _sandbox(tmp_path: Path) -> PodSandbox:
    return PodSandbox.for_pod("default", "web", netns="n", pod_ip="10.244.1.5",
                              pod_dir=tmp_path / "state" / "pods" / "node-1" / "uid1")


def _plan(tmp_path: Path, **kw: object) -> list[tuple[object, ...]]:
    sb = _sandbox(tmp_path)
    spec = ContainerSpec(name="app", argv=["sh"], **kw)  # type: ignore[arg-type]
    return rootfs.plan(sb, spec, root=tmp_path / "0.root", hidden=rootfs.hidden_paths(sb),
                       needed=["/root/.pyenv/versions/3.11", "/usr/lib/python3"])


def _targets(plan: list[tuple[object, ...]], op: str) -> list[object]:
    return [s[2] if op == "mount" else s[1] for s in plan if s[0] == op]


def test_the_root_is_an_overlay_on_the_hosts_and_ends_in_a_pivot(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    root = tmp_path / "0.root"
    assert plan[0][:4] == ("overlay", str(root / "merged"), str(root / "upper"),
                          str(root / "work"))
    assert plan[-1] == ("pivot", str(root / "merged"))
    mounts = _targets(plan, "mount")
    for path in ("/tmp", "/run", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm",
                 "/etc/resolv.conf", "/etc/hosts", "/etc/hostname"):
        assert path in mounts, path
    assert mounts.index("/proc") < mounts.index("/dev")


def test_state_dirs_and_root_are_masked_what_is_needed_is_bound_back(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    masked = dict(plan[0][4])       # emptied in the overlay's upper layer before it mounts
    state = str((tmp_path / "state").resolve())
    assert {"/root", "/home", "/var/lib/knet", state} <= set(masked)
    assert masked["/root"] == "711"  # the interpreter under it stays reachable, ls shows none
    binds = [s for s in plan if s[0] == "mount" and s[1] == "/root/.pyenv/versions/3.11"]
    assert binds and ("ro", "/root/.pyenv/versions/3.11") in plan
    assert not any(s[1] == "/usr/lib/python3" for s in plan if s[0] == "mount")


def test_volumes_honour_read_only_and_the_root_can_be_read_only(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    plan = _plan(tmp_path, mounts=[Mount(str(tmp_path / "cfg"), "/etc/config", True),
                                   Mount(str(tmp_path / "cfg"), "/data/")],
                 read_only_root=True)
    assert ("ro", "/etc/config") in plan and ("ro", "/data") not in plan
    assert [s[6] for s in plan if s[0] == "mount" and s[2] == "/data"] == ["d"]
    assert plan[-2] == ("ro", "/")
    assert ("ro", "/") not in _plan(tmp_path)


def test_a_volume_holding_hidden_paths_is_bound_alone_with_them_emptied(tmp_path: Path) -> None:
    """hostPath `/` at /host (kubectl debug node/NAME): no recursive bind (the host's /proc,
    /run/netns and a tmpfs state dir would come along) and every hidden path under it masked:
    the state dir with the cluster's keys never shows through /host."""
    plan = _plan(tmp_path, mounts=[Mount("/", "/host", False)])
    (host,) = [s for s in plan if s[0] == "mount" and s[2] == "/host"]
    assert host[1] == "/" and host[4] == rootfs.MS_BIND          # not MS_REC
    masked = {s[1] for s in plan if s[0] == "mask"}
    state = str((tmp_path / "state").resolve())
    assert {"/host/root", "/host/home", "/host/var/lib/knet", "/host" + state} <= masked
    assert plan.index(host) < min(plan.index(s) for s in plan if s[0] == "mask"
                                  and str(s[1]).startswith("/host"))
    (tmp_path / "data").mkdir()
    other = _plan(tmp_path, mounts=[Mount(str(tmp_path / "data"), "/data", False),
                                    Mount(str(tmp_path), "/above", False)])
    assert [s[4] for s in other if s[0] == "mount" and s[2] == "/data"] == [
        rootfs.MS_BIND | rootfs.MS_REC]        # holds no hidden path: bound as before
    # tmp_path holds the state dir: bound alone with it emptied
    assert "/above/state" in {s[1] for s in other if s[0] == "mask"}


def test_privileged_gets_the_hosts_dev_and_a_writable_proc_and_sys(tmp_path: Path) -> None:
    plain, priv = _plan(tmp_path), _plan(tmp_path, privileged=True)
    assert ("ro", "/proc/sys") in plain and ("ro", "/proc/sys") not in priv
    assert ("mask", "/proc/kcore", 0, "755") in plain
    assert [s for s in priv if s[0] == "mount" and s[2] == "/dev"][0][1] == "/dev"
    sysfs = {p is priv: s[4] for p in (plain, priv) for s in p
             if s[0] == "mount" and s[2] == "/sys"}
    assert sysfs[False] & rootfs.MS_RDONLY and not sysfs[True] & rootfs.MS_RDONLY


def test_hidden_paths_keep_only_the_outermost(tmp_path: Path) -> None:
    sb = _sandbox(tmp_path)
    hidden = rootfs.hidden_paths(sb, ["/var/lib/knet/x", "/srv/knet"])
    assert "/var/lib/knet/x" not in hidden and "/srv/knet" in hidden


def test_capabilities_default_add_drop_all_and_privileged() -> None:
    default = {caps.NAMES[i] for i in caps.bounding_set()}
    assert default == set(caps.DEFAULT) and "NET_ADMIN" not in default
    got = {caps.NAMES[i] for i in caps.bounding_set(add=["NET_ADMIN", "CAP_SYS_TIME"],
                                                    drop=["net_raw"])}
    assert got == set(caps.DEFAULT) - {"NET_RAW"} | {"NET_ADMIN", "SYS_TIME"}
    assert caps.bounding_set(drop=["ALL"]) == []
    assert caps.bounding_set(drop=["ALL"], add=["NET_BIND_SERVICE"]) == [10]
    assert len(caps.bounding_set(privileged=True)) == len(caps.NAMES)
    with pytest.raises(caps.UnknownCapability, match="NET_ADMN"):
        caps.bounding_set(add=["NET_ADMN"])
    assert caps.setpriv_arg([]) == "-all"
    assert caps.setpriv_arg([10, 0]) == "-all,+chown,+net_bind_service"


MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def test_cgroup_v1_hierarchies_are_found_and_cpu_joined_only_for_a_limit() -> None:
    cg = cgroups.Cgroups.detect(MOUNTINFO)
    assert cg.version == 1
    assert cg.leaf_dirs("x", cpu=False) == ["/sys/fs/cgroup/cpuacct/knet/x",
                                            "/sys/fs/cgroup/memory/knet/x"]
    assert "/sys/fs/cgroup/cpu/knet/x" in cg.leaf_dirs("x", cpu=True)
    comounted = MOUNTINFO.replace("rw,cpu\n", "rw,cpu,cpuacct\n").replace(
        "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n", "")
    assert cgroups.Cgroups.detect(comounted).leaf_dirs("x", cpu=False) == [
        "/sys/fs/cgroup/cpu/knet/x", "/sys/fs/cgroup/memory/knet/x"]
    assert cgroups.Cgroups.detect("").version == 0


def test_usage_and_oom_kills_read_v1_and_v2_files(tmp_path: Path) -> None:
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    v1.mkdir()
    v2.mkdir()
    (v1 / "cpuacct.usage").write_text("12345\n")
    (v1 / "memory.usage_in_bytes").write_text("4096\n")
    (v1 / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    (v2 / "cpu.stat").write_text("usage_usec 7\nuser_usec 5\n")
    (v2 / "memory.current").write_text("8192\n")
    (v2 / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n")
    assert cgroups.container_usage([str(v1)]) == {"cpu_ns": 12345, "memory_bytes": 4096}
    assert cgroups.container_usage([str(v2)]) == {"cpu_ns": 7000, "memory_bytes": 8192}
    assert cgroups.oom_kills([str(v1)]) == 1 and cgroups.oom_kills([str(v2)]) == 0


def test_exec_enters_every_namespace_with_the_containers_user_caps_and_cgroups() -> None:
    cmd = enter_command(42, ["id"], user=(1000, 2000), caps=[0, 10],
                        cgroup_dirs=["/sys/fs/cgroup/memory/knet/x"])
    assert cmd[:3] == ["sh", "-c", "echo 0 > /sys/fs/cgroup/memory/knet/x/cgroup.procs && "
                                   'exec "$@"']
    ns = cmd[4:cmd.index("setpriv")]
    assert ns == ["nsenter", "--target=42", "--net", "--mount", "--uts", "--ipc", "--pid",
                  "--wd", "--"]
    assert cmd[cmd.index("setpriv"):] == [
        "setpriv", "--pdeathsig=KILL", "--bounding-set=-all,+chown,+net_bind_service",
        "--regid=2000", "--reuid=1000", "--clear-groups", "--", "id"]
    assert "--bounding-set" not in " ".join(enter_command(42, ["id"]))
