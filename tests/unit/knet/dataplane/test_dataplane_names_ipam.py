"""Name derivation and IPAM: pure, no kernel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knet.dataplane import names
from knet.dataplane.ipam import Ipam
from knet.errors import Exhausted, UsageError


def test_names_fit_and_are_stable() -> None:
    keys = [f"ns-{i}/" + "p" * 200 + str(i) for i in range(300)]
    ifnames = {names.pod_host_ifname("node-1", k) for k in keys}
    assert len(ifnames) == 300 and all(len(n) <= 15 and n.startswith("kn") for n in ifnames)
    assert names.pod_host_ifname("node-1", "default/a") == names.pod_host_ifname("node-1",
                                                                                  "default/a")
    assert names.pod_host_ifname("node-1", "default/a") != names.pod_host_ifname("node-2",
                                                                                  "default/a")
    assert names.pod_netns("node-1", "default/a").startswith("knet-p-")
    assert names.node_netns("node-1") == "knet-node-1"
    assert len(names.node_host_ifname("a" * 63)) <= 15


@pytest.mark.parametrize("bad", ["", "Node1", "-x", "x-", "a_b", "a" * 64, "a/b", "a.b"])
def test_bad_node_names(bad: str) -> None:
    with pytest.raises(UsageError, match="invalid name"):
        names.node_netns(bad)


def test_pod_key_validation() -> None:
    assert names.validate_pod_key("kube-system/coredns-1.a") == ("kube-system", "coredns-1.a")
    for bad in ["a", "/a", "a/", "A/b", "a/B", "a/b/c", "a/b_c", "a/" + "b" * 254]:
        with pytest.raises(UsageError, match="expected 'namespace/name'"):
            names.validate_pod_key(bad)


def test_mac_from_ip() -> None:
    assert names.pod_mac("10.244.1.2") == "0a:58:0a:f4:01:02"


def test_ipam_skips_reserved_and_never_repeats(tmp_path: Path) -> None:
    ipam = Ipam(node="n", cidr="10.0.0.0/29", path=tmp_path / "n.json")
    got = [ipam.allocate(f"p{i}") for i in range(5)]
    assert got == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    assert ipam.allocate("p0") == "10.0.0.2"
    with pytest.raises(Exhausted, match=r"node n pod CIDR 10.0.0.0/29 is exhausted"):
        ipam.allocate("p5")
    ipam.release("p1")
    assert ipam.allocate("p5") == "10.0.0.3"


def test_ipam_reuses_a_freed_address_last(tmp_path: Path) -> None:
    ipam = Ipam(node="n", cidr="10.0.0.0/24", path=None)
    a = ipam.allocate("a")
    ipam.release("a")
    assert ipam.allocate("b") != a


def test_ipam_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "ipam" / "n.json"
    first = Ipam(node="n", cidr="10.0.0.0/24", path=path)
    a, b = first.allocate("a"), first.allocate("b")
    second = Ipam(node="n", cidr="10.0.0.0/24", path=path)
    assert second.held() == {"a": a, "b": b}
    c = second.allocate("c")
    assert c not in (a, b)
    assert json.loads(path.read_text())["held"] == {"a": a}       # snapshot at first write
    assert Ipam(node="n", cidr="10.0.0.0/24", path=path).held() == {"a": a, "b": b, "c": c}
    assert sorted(p.name for p in path.parent.iterdir()) == ["n.json", "n.log"]  # no temp
    with pytest.raises(UsageError, match="is for 10.0.0.0/24"):
        Ipam(node="n", cidr="10.0.1.0/24", path=path)


def test_ipam_ignores_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "n.json"
    ipam = Ipam(node="n", cidr="10.0.0.0/24", path=path)
    got = {k: ipam.allocate(k) for k in "abc"}
    with open(path.with_suffix(".log"), "a") as f:
        f.write('{"key": "d", "ip": "10.0.0.')             # the process died mid-write
    again = Ipam(node="n", cidr="10.0.0.0/24", path=path)
    assert again.held() == got
    got |= {k: again.allocate(k) for k in "de"}
    assert Ipam(node="n", cidr="10.0.0.0/24", path=path).held() == got


def test_ipam_folds_its_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("knet.dataplane.ipam.COMPACT_EVERY", 4)
    path = tmp_path / "n.json"
    ipam = Ipam(node="n", cidr="10.0.0.0/24", path=path)
    got = {k: ipam.allocate(k) for k in "abcdefgh"}
    ipam.release("a")
    del got["a"]
    assert len(path.with_suffix(".log").read_text().splitlines()) <= 4
    assert Ipam(node="n", cidr="10.0.0.0/24", path=path).held() == got
    ipam.destroy()
    assert list(tmp_path.iterdir()) == []


def test_ipam_explicit_and_bad_input() -> None:
    ipam = Ipam(node="n", cidr="10.0.0.0/24", path=None)
    assert ipam.allocate("a", ip="10.0.0.9") == "10.0.0.9"
    for bad in ["10.0.0.0", "10.0.0.1", "10.0.0.255", "10.0.1.5", "nope"]:
        with pytest.raises(UsageError):
            ipam.allocate("x", ip=bad)
    with pytest.raises(UsageError, match="too small"):
        Ipam(node="n", cidr="10.0.0.0/30", path=None)
    with pytest.raises(UsageError, match="invalid pod CIDR"):
        Ipam(node="n", cidr="10.0.0.1/24", path=None)


def test_ipam_sees_changes_made_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "n.json"
    mine, theirs = (Ipam(node="n", cidr="10.0.0.0/24", path=path) for _ in range(2))
    a = mine.allocate("a")
    theirs.refresh()
    b = theirs.allocate("b")
    mine.refresh()
    assert b != a and mine.held() == {"a": a, "b": b}
    theirs.destroy()
    mine.refresh()
    assert mine.held() == {}
