"""NetworkPolicy semantics, case by case as the upstream netpol e2e suite states them: each test
gives policies and the expected reachability matrix over x,y,z x a,b,c; the matrix is computed
twice — from the model (`decide`, what `knet netpol explain` says) and by running each packet
through the nftables rules rendered for both nodes — and both must equal the expectation."""

from __future__ import annotations

from typing import Any

import pytest
from netpol_testkit import expect, kernel_allows, keys, matrix, policy, world

from knet.policy.explain import decide
from knet.policy.model import NsInfo, PodInfo, compile_model, namespace_info, pod_info
from knet.policy.nftrules import render


def _both(policies: list[dict[str, Any]], port: int = 80, proto: str = "tcp",
          pods: list[PodInfo] | None = None, nss: list[NsInfo] | None = None) -> tuple[str, str]:
    wp, wn = world()
    pods, nss = pods or wp, nss or wn
    model = compile_model(policies, pods, nss)
    by_key = {p.key: p for p in pods}
    cmds = {n: render(model, n) for n in ("node-1", "node-2")}
    return (matrix(lambda s, d: decide(model, by_key[s].ip, by_key[d].ip, port, proto).allowed),
            matrix(lambda s, d: kernel_allows(cmds, by_key[s], by_key[d], port, proto)))


def _check(policies: list[dict[str, Any]], want: str, **kw: Any) -> None:
    model_view, kernel_view = _both(policies, **kw)
    assert model_view == want
    assert kernel_view == want


def _to(dst: str, ok: bool) -> dict[str, bool]:
    return {f"{s.replace('/', '_')}__{dst.replace('/', '_')}": ok for s in keys()}


def _from(src: str, ok: bool) -> dict[str, bool]:
    return {f"{src.replace('/', '_')}__{d.replace('/', '_')}": ok for d in keys()}


def test_no_policy_everything_reaches_everything() -> None:
    _check([], expect(True))


def test_default_deny_ingress_isolates_only_the_namespace() -> None:
    deny = policy("deny-ingress", types=["Ingress"])
    # all of x is unreachable, even from x
    want = expect(True, *(_to(d, False) for d in ("x/a", "x/b", "x/c")))
    _check([deny], want)


def test_default_deny_egress() -> None:
    deny = policy("deny-egress", types=["Egress"])
    want = expect(True, *(_from(s, False) for s in ("x/a", "x/b", "x/c")))
    _check([deny], want)


def test_allow_from_namespace_by_metadata_name_label() -> None:
    allow = policy("allow-y", selector={"matchLabels": {"pod": "a"}}, ingress=[{"from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}]}])
    want = expect(True, _to("x/a", False), y_a__x_a=True, y_b__x_a=True, y_c__x_a=True)
    _check([allow], want)


def test_and_inside_one_peer_versus_or_across_two_peers() -> None:
    ns_y = {"matchLabels": {"ns": "y"}}
    pod_b = {"matchLabels": {"pod": "b"}}
    both = policy("and", selector={"matchLabels": {"pod": "a"}}, ingress=[{"from": [
        {"namespaceSelector": ns_y, "podSelector": pod_b}]}])
    _check([both], expect(True, _to("x/a", False), y_b__x_a=True))
    either = policy("or", selector={"matchLabels": {"pod": "a"}}, ingress=[{"from": [
        {"namespaceSelector": ns_y}, {"podSelector": pod_b}]}])
    # OR: all of y, and b of x (podSelector alone = the policy's namespace)
    _check([either], expect(True, _to("x/a", False), y_a__x_a=True, y_b__x_a=True,
                            y_c__x_a=True, x_b__x_a=True))


def test_policies_are_additive() -> None:
    a = policy("from-b", selector={"matchLabels": {"pod": "a"}}, ingress=[{"from": [
        {"podSelector": {"matchLabels": {"pod": "b"}}}]}])
    c = policy("from-c", selector={"matchLabels": {"pod": "a"}}, ingress=[{"from": [
        {"podSelector": {"matchLabels": {"pod": "c"}}}]}])
    _check([a, c], expect(True, _to("x/a", False), x_b__x_a=True, x_c__x_a=True))


@pytest.mark.parametrize(("port", "proto", "open_"), [(80, "tcp", True), (81, "tcp", False),
                                                      (80, "udp", False), (81, "udp", True)])
def test_named_ports_resolve_on_the_destination(port: int, proto: str, open_: bool) -> None:
    allow = policy("named", selector={"matchLabels": {"pod": "a"}}, ingress=[
        {"ports": [{"port": "serve-80-tcp"}, {"port": "serve-81-udp", "protocol": "UDP"}]}])
    _check([allow], expect(True, _to("x/a", open_)), port=port, proto=proto)


def test_a_named_port_no_container_has_allows_nothing() -> None:
    allow = policy("nobody", selector={"matchLabels": {"pod": "a"}}, ingress=[
        {"ports": [{"port": "serve-99-tcp"}]}])
    _check([allow], expect(True, _to("x/a", False)))
    egress = policy("nobody-out", selector={"matchLabels": {"pod": "a"}}, types=["Egress"],
                    egress=[{"ports": [{"port": "serve-99-tcp"}]}])
    _check([egress], expect(True, _from("x/a", False)))


def test_egress_named_port_resolves_on_each_destination() -> None:
    pods, nss = world()
    # y/b serves "serve-80-tcp" on 81 instead: an egress rule for the name follows each pod
    pods = [PodInfo(p.namespace, p.name, p.ip, p.node, p.labels, (("serve-80-tcp", 81, "tcp"),))
            if p.key == "y/b" else p for p in pods]
    out = policy("named-out", selector={"matchLabels": {"pod": "a"}}, types=["Egress"],
                 egress=[{"ports": [{"port": "serve-80-tcp"}]}])
    _check([out], expect(True, x_a__y_b=False), pods=pods, nss=nss, port=80)
    _check([out], expect(True, _from("x/a", False), x_a__y_b=True), pods=pods, nss=nss,
           port=81)


@pytest.mark.parametrize(("port", "open_"), [(80, True), (81, True), (82, False)])
def test_port_ranges(port: int, open_: bool) -> None:
    allow = policy("range", selector={"matchLabels": {"pod": "a"}}, ingress=[
        {"ports": [{"port": 80, "endPort": 81, "protocol": "TCP"}]}])
    _check([allow], expect(True, _to("x/a", open_)), port=port)


def test_ipblock_with_except() -> None:
    pods, _ = world()
    ip = {p.key: p.ip for p in pods}
    # everything of node-2's pods but y/a
    allow = policy("cidr", selector={"matchLabels": {"pod": "a"}}, ingress=[{"from": [
        {"ipBlock": {"cidr": "10.244.2.0/24", "except": [f"{ip['y/a']}/32"]}}]}])
    node2 = [p.key for p in pods if p.node == "node-2" and p.key != "y/a"]
    want = expect(True, _to("x/a", False),
                  {f"{k.replace('/', '_')}__x_a": True for k in node2})
    _check([allow], want)


def test_egress_allowing_only_dns_to_kube_system() -> None:
    pods, nss = world()
    dns = PodInfo("kube-system", "coredns", "10.244.1.53", "node-1", {"k8s-app": "kube-dns"},
                  (("dns", 53, "udp"),))
    out = policy("dns-only", types=["Egress"], egress=[{
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name":
                                                      "kube-system"}}}],
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}])
    model = compile_model([out], [*pods, dns], [*nss, NsInfo("kube-system")])
    xa = next(p for p in pods if p.key == "x/a")
    assert decide(model, xa.ip, dns.ip, 53, "udp").allowed
    assert not decide(model, xa.ip, dns.ip, 80, "tcp").allowed
    assert not decide(model, xa.ip, pods[3].ip, 80, "tcp").allowed


def test_an_empty_from_allows_all_and_an_empty_ingress_list_allows_none() -> None:
    allow_all = policy("all", ingress=[{}])
    _check([allow_all], expect(True))
    _check([policy("none", ingress=[])], expect(True, *(_to(d, False)
                                                        for d in ("x/a", "x/b", "x/c"))))


def test_explain_names_the_policies_and_the_rule() -> None:
    pods, nss = world()
    ip = {p.key: p.ip for p in pods}
    model = compile_model([policy("deny"), policy("from-y-b", selector={
        "matchLabels": {"pod": "a"}}, ingress=[{"from": [{"namespaceSelector": {
            "matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}]}])],
        pods, nss)
    ok = decide(model, ip["y/b"], ip["x/a"], 80)
    assert ok.allowed and ok.ingress.allowed_by == ("x/from-y-b rule 0",)
    assert ok.ingress.policies == ("x/deny", "x/from-y-b")
    no = decide(model, ip["y/c"], ip["x/a"], 80)
    assert not no.allowed
    assert "isolated by x/deny, x/from-y-b; no rule matches: DROPPED (default deny)" in \
        no.lines()[2]
    assert "egress: y/c is selected by no policy" in no.lines()[1]


def test_pods_without_ip_or_on_host_network_take_no_part() -> None:
    base = {"metadata": {"namespace": "x", "name": "p", "labels": {"a": "b"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080}]}]},
            "status": {"podIP": "10.244.1.9", "phase": "Running"}}
    info = pod_info(base)
    assert info is not None and info.named_port("http", "tcp") == 8080
    assert pod_info({**base, "status": {"phase": "Pending"}}) is None
    assert pod_info({**base, "spec": {**base["spec"], "hostNetwork": True}}) is None
    ns = namespace_info({"metadata": {"name": "x", "labels": {"team": "t"}}})
    assert ns.labels == {"team": "t", "kubernetes.io/metadata.name": "x"}
