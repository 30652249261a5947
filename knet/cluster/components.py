"""The processes of a cluster and how each is (re)started: one control plane (`knet control`),
and per node a kubelet agent (`knet agent`, as system:node:NODE) and a kube-proxy (`knet proxy`,
as system:kube-proxy), separate as in Kubernetes so that a dead kubelet never stops the node's
Service traffic or DNS.

Every start is recorded in cluster.json at once (pid + start time), so `knet down` stops it
and `knet up` can tell which recorded component is dead and restart exactly that one. A
`knet control` started by hand on the state dir (it writes DIR/control.pid) is adopted into
the record rather than left running unseen.
"""

from __future__ import annotations

import sys
from pathlib import Path

from control.addresses import API_PORT, HOST_IP
from knet.cluster import credentials, procs
from knet.cluster.state import ClusterRecord, proxy_role, proxy_socket
from knet.dataplane.base import NodeSpec


def knet_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "knet.cli.main", "-v", *args]


def expected_roles(rec: ClusterRecord) -> list[str]:
    """Every process a healthy cluster of this record runs, control plane first."""
    out = ["control"]
    for name in rec.node_names():
        out += [name, proxy_role(name)]
    return out


def describe(role: str) -> str:
    if role == "control":
        return "control plane (knet control)"
    if role.startswith("kube-proxy-"):
        return f"kube-proxy of {role.removeprefix('kube-proxy-')} (knet proxy)"
    return f"agent of {role} (knet agent)"


def start_control(rec: ClusterRecord) -> None:
    rec.procs["control"] = procs.spawn("control", knet_argv(
        "control", "--state-dir", str(rec.state_dir), "--listen", f"{HOST_IP}:{API_PORT}",
        "--store", rec.store), log=rec.log("control"),
        env={"KNET_LB_POOL": rec.options.lb_pool} if rec.options.lb_pool else None)
    rec.save()


def adopt_control(rec: ClusterRecord) -> bool:
    """Record a live `knet control` serving this state dir that the record does not know
    (started by hand); True if there was one."""
    try:
        pid = int((rec.state_dir / "control.pid").read_text().strip())
    except (OSError, ValueError):
        return False
    found = procs.adopt("control", pid, log=rec.log("control"), argv_has=("control",))
    if found is None:
        return False
    rec.procs["control"] = found
    rec.save()
    return True


def start_agent(rec: ClusterRecord, name: str) -> None:
    rec.procs[name] = procs.spawn(name, knet_argv(
        "agent", "--node", name, "--index", str(rec.node_index(name)), "--state-dir",
        str(rec.state_dir), "--kubeconfig", str(credentials.node_kubeconfig(rec.state_dir, name)),
        "--backend", rec.options.backend, "--cni", rec.options.cni),
        log=rec.log(f"agent-{name}"))
    rec.save()


def proxy_argv(rec: ClusterRecord, name: str, *, kubeconfig: Path | None = None) -> list[str]:
    ip = NodeSpec.default(rec.node_index(name), name=name).underlay_ip
    opts = rec.options
    return knet_argv("proxy", "--node", name, "--kubeconfig", str(kubeconfig or rec.kubeconfig),
                     "--state-dir", str(rec.state_dir), "--node-ip", ip,
                     "--flows-socket", str(proxy_socket(rec.state_dir, name)),
                     *(["--algorithm", opts.proxy_algorithm] if opts.proxy_algorithm else []),
                     *([] if opts.preserve_source_ip else ["--no-preserve-source-ip"]),
                     *(["--proxy-mode", opts.proxy_mode] if opts.proxy_mode != "userspace" else []))


def start_proxy(rec: ClusterRecord, name: str) -> None:
    role = proxy_role(name)
    proxy_socket(rec.state_dir, name).unlink(missing_ok=True)  # a killed proxy's: not a sign
    kubeconfig = credentials.proxy_kubeconfig(rec.state_dir)       # system:kube-proxy
    rec.procs[role] = procs.spawn(role, proxy_argv(rec, name, kubeconfig=kubeconfig),
                                  log=rec.log(role))
    rec.save()


def start(rec: ClusterRecord, role: str) -> None:
    """(Re)start one recorded component by its role."""
    if role == "control":
        start_control(rec)
    elif role.startswith("kube-proxy-"):
        start_proxy(rec, role.removeprefix("kube-proxy-"))
    else:
        start_agent(rec, role)
