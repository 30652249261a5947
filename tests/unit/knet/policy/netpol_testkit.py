"""The upstream netpol e2e world as data (namespaces x, y, z x pods a, b, c, serving 80 and 81
over TCP and UDP, on two nodes), policy builders, the matrix notation of the suite, and a
tiny evaluator of the nftables JSON knet renders — so a test can check that the kernel rules
say what the model says, packet by packet."""

from __future__ import annotations

import ipaddress
from typing import Any

from knet.policy.model import NsInfo, PodInfo

NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")
PORTS = tuple((f"serve-{n}-{p}", n, p) for n in (80, 81) for p in ("tcp", "udp"))


def world() -> tuple[list[PodInfo], list[NsInfo]]:
    pods = []
    for i, ns in enumerate(NAMESPACES):
        for j, name in enumerate(PODS):
            node = "node-1" if (i * 3 + j) % 2 == 0 else "node-2"
            ip = f"10.244.{1 if node == 'node-1' else 2}.{10 + i * 3 + j}"
            pods.append(PodInfo(ns, name, ip, node, {"pod": name}, PORTS))
    nss = [NsInfo(ns, {"ns": ns}) for ns in NAMESPACES]
    return pods, nss


def policy(name: str, ns: str = "x", *, selector: dict[str, Any] | None = None,
           types: list[str] | None = None, ingress: list[dict[str, Any]] | None = None,
           egress: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": selector or {}}
    if types is not None:
        spec["policyTypes"] = types
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


def keys() -> list[str]:
    return [f"{ns}/{p}" for ns in NAMESPACES for p in PODS]


def matrix(allowed: Any) -> str:
    """The suite's table: rows are clients, columns servers, '.' reachable, 'X' not."""
    ks = keys()
    lines = ["-\t" + "\t".join(ks)]
    for src in ks:
        lines.append(src + "\t" + "\t".join("." if allowed(src, dst) else "X" for dst in ks))
    return "\n".join(lines)


def expect(default: bool, *layers: dict[str, bool], **pairs: bool) -> str:
    """A matrix that is `default` everywhere but the given "x_a__y_b" pairs (layers first,
    each overriding the one before, then the keyword pairs)."""
    exceptions: dict[str, bool] = {}
    for layer in layers:
        exceptions.update(layer)
    exceptions.update(pairs)

    def cell(src: str, dst: str) -> bool:
        return exceptions.get(f"{src.replace('/', '_')}__{dst.replace('/', '_')}", default)
    return matrix(cell)


# ---- a packet through the rendered table ---------------------------------------------

def _value(right: Any, value: Any) -> bool:
    if isinstance(right, dict) and "set" in right:
        return any(_value(item, value) for item in right["set"])
    if isinstance(right, dict) and "prefix" in right:
        net = ipaddress.ip_network(f"{right['prefix']['addr']}/{right['prefix']['len']}")
        return ipaddress.ip_address(value) in net
    if isinstance(right, dict) and "range" in right:
        return right["range"][0] <= value <= right["range"][1]
    if isinstance(right, list):
        return value in right
    return right == value


def _field(left: dict[str, Any], pkt: dict[str, Any]) -> Any:
    if "payload" in left:
        pl = left["payload"]
        if pl["protocol"] in ("tcp", "udp", "sctp"):
            return pkt["dport"] if pkt["proto"] == pl["protocol"] else None
        return pkt["src"] if pl["field"] == "saddr" else pkt["dst"]
    if "meta" in left:
        return pkt["proto"]
    if "ct" in left:
        return pkt.get("ct", "new")
    if "fib" in left:
        return "local" if pkt.get("local_src") else "unicast"
    raise AssertionError(f"unknown expression {left}")


def run_chain(table: dict[str, list[list[dict[str, Any]]]], chain: str,
              pkt: dict[str, Any]) -> str:
    """'accept', 'drop' or 'return' for `pkt` ({src, dst, proto, dport}) in `chain`."""
    for rule in table[chain]:
        verdict = None
        for expr in rule:
            if "match" in expr:
                m = expr["match"]
                got = _field(m["left"], pkt)
                ok = got is not None and _value(m["right"], got)
                if (m["op"] == "!=") == ok:
                    break
            elif "vmap" in expr:
                got = _field(expr["vmap"]["key"], pkt)
                hit = next((v for k, v in expr["vmap"]["data"]["set"] if k == got), None)
                if hit is None:
                    break
                result = run_chain(table, hit["jump"]["target"], pkt)
                if result != "return":
                    return result
                break
            elif "jump" in expr:
                result = run_chain(table, expr["jump"]["target"], pkt)
                if result != "return":
                    return result
            elif expr.keys() & {"accept", "drop", "return"}:
                verdict = next(iter(expr.keys() & {"accept", "drop", "return"}))
        else:
            if verdict is not None:
                return verdict
    return "return"


def tables(commands: list[dict[str, Any]]) -> dict[str, list[list[dict[str, Any]]]]:
    out: dict[str, list[list[dict[str, Any]]]] = {}
    for cmd in commands:
        body = cmd.get("add", {})
        if "chain" in body:
            out.setdefault(body["chain"]["name"], [])
        if "rule" in body:
            out[body["rule"]["chain"]].append(body["rule"]["expr"])
    return out


def kernel_allows(commands_by_node: dict[str, list[dict[str, Any]]], src: PodInfo,
                  dst: PodInfo, port: int, proto: str) -> bool:
    """A new connection src -> dst: forward chain of src's node, then of dst's (if another)."""
    pkt = {"src": src.ip, "dst": dst.ip, "proto": proto, "dport": port}
    for node in dict.fromkeys([src.node, dst.node]):
        if run_chain(tables(commands_by_node[node]), "forward", pkt) == "drop":
            return False
    return True
