"""The cluster DNS as pods use it: on port 53, with the resolv.conf the kubelet writes
(search path + ndots:5), queried through glibc (`getent`) and `dig +search`, in the sandbox.
Each client runs in its own mount namespace with that resolv.conf bind-mounted."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

OBJECTS = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {clusterIP: 10.96.0.20, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec: {clusterIP: None, ports: [{name: pg, port: 5432}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-1, namespace: default, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
ports: [{name: pg, port: 5432}]
endpoints:
- {addresses: [10.244.1.5], hostname: db-0, conditions: {ready: true}}
- {addresses: [10.244.2.6], hostname: db-1, conditions: {ready: true}}
- {addresses: [10.244.2.7], conditions: {ready: false}}
"""
RESOLV = ("search default.svc.cluster.local svc.cluster.local cluster.local\n"
          "nameserver 127.0.0.1\noptions ndots:5\n")


@pytest.fixture(scope="module")
def resolv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("dns")
    (tmp / "objects.yaml").write_text(OBJECTS)
    (tmp / "resolv.conf").write_text(RESOLV)
    proc = subprocess.Popen([sys.executable, "-m", "knet.dns", "--objects",
                             str(tmp / "objects.yaml"), "--listen", "127.0.0.1:53"])
    try:
        for _ in range(100):
            if run(tmp / "resolv.conf", "dig +short +time=1 +tries=1 @127.0.0.1 "
                   "web.default.svc.cluster.local").strip() == "10.96.0.20":
                break
            time.sleep(0.1)
        yield tmp / "resolv.conf"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0


def run(resolv_conf: Path, cmd: str) -> str:
    """`cmd` in a private mount namespace whose /etc/resolv.conf is `resolv_conf`."""
    res = subprocess.run(["unshare", "--mount", "sh", "-c",
                          f"mount --bind {resolv_conf} /etc/resolv.conf && {cmd}"],
                         check=False, capture_output=True, text=True, timeout=20)
    return res.stdout


@pytest.mark.parametrize("name", ["web", "web.default", "web.default.svc",
                                  "web.default.svc.cluster.local"])
def test_short_names_resolve_through_the_search_path(resolv: Path, name: str) -> None:
    # `getent hosts`, not `ahostsv4`: AI_ADDRCONFIG finds no address but lo in the sandbox
    assert run(resolv, f"getent hosts {name} | cut -d' ' -f1").split() == ["10.96.0.20"]


def test_headless_gives_ready_pods_and_hostnames(resolv: Path) -> None:
    assert sorted(run(resolv, "dig +search +short db").split()) == ["10.244.1.5", "10.244.2.6"]
    assert run(resolv, "getent hosts db-1.db | cut -d' ' -f1").split() == ["10.244.2.6"]
    assert run(resolv, "dig +short -x 10.244.1.5").split() == ["db-0.db.default.svc.cluster.local."]
    srv = run(resolv, "dig +search +short SRV _pg._tcp.db").splitlines()
    assert sorted(srv) == ["0 50 5432 db-0.db.default.svc.cluster.local.",
                           "0 50 5432 db-1.db.default.svc.cluster.local."]


def test_unknown_name_is_not_found(resolv: Path) -> None:
    res = subprocess.run(["unshare", "--mount", "sh", "-c",
                          f"mount --bind {resolv} /etc/resolv.conf && getent hosts nope"],
                         check=False, capture_output=True, text=True, timeout=20)
    assert res.returncode == 2 and res.stdout == ""
    assert "status: NXDOMAIN" in run(resolv, "dig nope.default.svc.cluster.local")
