"""The pod's /etc/resolv.conf and /etc/hosts, byte for byte as the kubelet writes them."""

from __future__ import annotations

from pathlib import Path

from knet.runtime.base import PodSandbox, build_hosts, build_resolv_conf


def test_resolv_conf_is_cluster_first() -> None:
    assert build_resolv_conf("shop") == (
        "search shop.svc.cluster.local svc.cluster.local cluster.local\n"
        "nameserver 10.96.0.10\n"
        "options ndots:5\n")


def test_resolv_conf_options() -> None:
    text = build_resolv_conf("a", nameserver="10.0.0.53", cluster_domain="corp.local", ndots=2)
    assert text.splitlines() == ["search a.svc.corp.local svc.corp.local corp.local",
                                 "nameserver 10.0.0.53", "options ndots:2"]


def test_hosts_without_subdomain() -> None:
    lines = build_hosts("10.244.1.5", "web-1", namespace="default").splitlines()
    assert lines[0] == "# Kubernetes-managed hosts file."
    assert "127.0.0.1\tlocalhost" in lines
    assert "::1\tlocalhost ip6-localhost ip6-loopback" in lines
    assert lines[-1] == "10.244.1.5\tweb-1"


def test_hosts_with_subdomain_has_fqdn_first() -> None:
    text = build_hosts("10.244.2.7", "db-0", namespace="prod", subdomain="db")
    assert text.endswith("10.244.2.7\tdb-0.db.prod.svc.cluster.local\tdb-0\n")


def test_hosts_aliases_come_before_the_pod_line() -> None:
    text = build_hosts("10.244.1.5", "web-1", namespace="default",
                       host_aliases=[("1.2.3.4", ["foo.local", "bar.local"])])
    lines = text.splitlines()
    i = lines.index("# Entries added by HostAliases.")
    assert lines[i + 1] == "1.2.3.4\tfoo.local\tbar.local"
    assert lines[-1] == "10.244.1.5\tweb-1"


def test_sandbox_for_pod(tmp_path: Path) -> None:
    sb = PodSandbox.for_pod("default", "web-1", netns="knet-p-1", pod_ip="10.244.1.5",
                            pod_dir=tmp_path, hostname="h", subdomain="s")
    assert sb.key == "default/web-1"
    assert sb.hostname == "h"
    assert "search default.svc.cluster.local" in sb.resolv_conf
    assert sb.hosts.endswith("10.244.1.5\th.s.default.svc.cluster.local\th\n")
