"""`knet trace FROM TO`: one real request from a pod, captured on every interface of its
path, explained hop by hop.

The plan is data: from the cluster view, the interfaces a request from FROM to TO can cross
(client eth0, its node's cni0, each endpoint node's underlay eth0 and cni0, each endpoint's
eth0) are captured at once (raw sockets in their netns, one BPF filter); then the request is
sent from the client's netns; then the proxy's flow record for the client's ip:port says
which endpoint was picked and why. Packets are assigned to hops by connection: the client's
4-tuple before the proxy, the proxy's new connection to the endpoint after it (the flow
record's source_ip:port, what the endpoint saw; else its SYN found on the wire). The first
hop with nothing on it, or the proxy's verdict, says where a broken path breaks. A meshed
client's path (in-pod redirect, HBONE to the endpoint's 15008) is assembled by
`_assemble_mesh` with knet/flows/meshtrace.py.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from knet.dataplane.overlay import VXLAN_PORT
from knet.flows.bpf import compile_filter
from knet.flows.capture import Frame, RawCapture
from knet.flows.cluster import (
    ClusterView,
    Iface,
    PodView,
    ServiceView,
    TargetError,
    proxy_flows,
)
from knet.flows.decode import Packet, dissect
from knet.flows.meshtrace import (
    HBONE_PORT,
    OUTBOUND_PORT,
    inbound_note,
    is_meshed,
    mesh_leg,
    outbound_note,
)
from knet.flows.pcap import PcapWriter
from knet.flows.probe import (
    Answer,
    DnsAnswer,
    dns_lookup,
    dns_query_wire,
    tcp_request,
    udp_request,
)

log = logging.getLogger(__name__)

__all__ = ["Hop", "Target", "Trace", "resolve_target", "run_trace"]

SETTLE = 0.3          # seconds to keep capturing after the answer (FIN/ACKs)
FLOW_WAIT = 3.0       # seconds to wait for the proxy's flow record


@dataclass
class Target:
    text: str
    ip: str
    port: int
    protocol: str                      # tcp | udp
    service: ServiceView | None = None
    pod: PodView | None = None
    dns: DnsAnswer | None = None
    host: str = ""                     # the Host header to send


@dataclass
class Hop:
    label: str
    kind: str                          # iface | proxy | dns
    iface: Iface | None = None
    packets: list[Packet] = field(default_factory=list)
    note: str = ""


@dataclass
class Trace:
    client: PodView
    target: Target
    hops: list[Hop]
    answer: Answer | None = None
    flow: dict[str, object] | None = None
    broken: str = ""                   # where and why the path broke; "" if it did not
    pcaps: list[Path] = field(default_factory=list)
    drops: int = 0


_TARGET = re.compile(r"^(?:(svc|service|pod)/)?([a-z0-9.\-/]+?)(?::(\d+)(?:/(tcp|udp))?)?$")


def resolve_target(view: ClusterView, text: str, client: PodView) -> Target:
    """`svc/NAME[:PORT[/udp]]`, `pod/NAME[:PORT]` (NS/NAME too), or a DNS name[:PORT]."""
    m = _TARGET.match(text.strip().lower())
    if not m:
        raise TargetError(f"trace target {text!r}: give svc/NAME:PORT, pod/NAME:PORT or a "
                          "DNS name like web.default.svc.cluster.local:80")
    kind, name, port = m.group(1), m.group(2), int(m.group(3)) if m.group(3) else 0
    proto, ns = m.group(4) or "", client.key.split("/")[0]
    if kind in ("svc", "service"):
        return _service_target(text, view.service(name, namespace=ns), port, name, proto)
    if kind == "pod":
        pod = view.pod(name, namespace=ns)
        return Target(text, pod.ip, port or 80, "tcp", pod=pod, host=pod.ip)
    answer = dns_lookup(client.netns, name, namespace=ns)
    if not answer.addresses:
        return Target(text, "", port, "tcp", dns=answer, host=name)
    ip = answer.addresses[0]
    svc = next((s for s in view.services.values() if s.cluster_ip == ip), None)
    backend = next((p for p in view.pods.values() if p.ip == ip and p.netns), None)
    if svc is not None:
        t = _service_target(text, svc, port, name, proto)
        t.dns = answer
        return t
    return Target(text, ip, port or 80, "tcp", pod=backend, dns=answer, host=name)


def _service_target(text: str, svc: ServiceView, port: int, host: str,
                    proto: str = "") -> Target:
    if not svc.cluster_ip or svc.cluster_ip == "None":
        raise TargetError(f"service {svc.key} is headless (no ClusterIP); trace a pod or its "
                          "DNS name instead")
    ports = [(int(str(p.get("port"))), str(p.get("protocol", "TCP")).lower()) for p in svc.ports]
    fits = [pp for pp in ports if (not port or pp[0] == port) and (not proto or pp[1] == proto)]
    if not fits:
        have = ", ".join(f"{p}/{pr}" for p, pr in ports) or "none"
        raise TargetError(f"service {svc.key} has no port {port or ''}{'/' + proto if proto else ''}"
                          f"; ports: {have}")
    port, proto = fits[0]
    return Target(text, svc.cluster_ip, port, proto, service=svc, host=host.split("/")[-1])


# --- the plan: interfaces to capture on ---------------------------------------------------
def _ifaces(view: ClusterView, client: PodView, target: Target) -> dict[str, Iface]:
    out: dict[str, Iface] = {"client": Iface(client.netns, "eth0", f"{client.key} eth0")}
    nodes = {client.node}
    backends: list[PodView] = []
    if target.service is not None:
        backends = [view.pods[p] for _ip, p, _n in target.service.endpoints
                    if p in view.pods and view.pods[p].netns]
    elif target.pod is not None:
        backends = [target.pod]
    for b in backends:
        out[f"pod:{b.key}"] = Iface(b.netns, "eth0", f"{b.key} eth0")
        nodes.add(b.node)
    for name in sorted(n for n in nodes if n in view.nodes):
        node = view.nodes[name]
        out[f"{name}:cni0"] = Iface(node.netns, "cni0", f"{name} cni0")
        if len(nodes) > 1:
            out[f"{name}:eth0"] = Iface(node.netns, "eth0", f"{name} eth0 (underlay)")
    return out


def _bpf(client: PodView, target: Target, view: ClusterView) -> str:
    hosts = {client.ip, target.ip}
    if target.service is not None:
        hosts |= {ip for ip, _p, _n in target.service.endpoints}
    # the overlay's packets carry node addresses outside: take every VXLAN packet, and let
    # the connection match (on the inner packet, decode.dissect) assign it to its hop
    return ("ip and (" + " or ".join(f"host {h}" for h in sorted(hosts) if h)
            + f" or udp port {VXLAN_PORT})")


# --- running ------------------------------------------------------------------------------
def run_trace(view: ClusterView, client_ref: str, target_ref: str, *, namespace: str = "default",
              http: bool = True, pcap_dir: Path | None = None) -> Trace:
    client = view.pod(client_ref, namespace=namespace)
    target = resolve_target(view, target_ref, client)
    if not target.ip:
        dns_hop = Hop("dns", "dns", note=_dns_note(target.dns))
        return Trace(client, target, [dns_hop], broken=f"DNS: {target.text} did not resolve "
                     f"({target.dns.rcode if target.dns else 'no answer'}) from {client.key}")
    ifaces = _ifaces(view, client, target)
    caps = _start(ifaces, _bpf(client, target, view))
    frames = {k: c.frames for k, c in caps.items()}
    try:
        time.sleep(0.05)
        if target.protocol == "udp":
            answer = udp_request(client.netns, target.ip, target.port,
                                 payload=dns_query_wire() if target.port == 53 else None)
        else:
            answer = tcp_request(client.netns, target.ip, target.port,
                                 http_host=target.host if http else "")
        flow = _flow_record(view, client, answer) if target.service is not None or \
            _redirected(frames["client"], client, answer, target) else None
        time.sleep(SETTLE)
    finally:
        for c in caps.values():
            c.cap.stop()
    trace = _assemble(view, client, target, ifaces, frames, answer, flow)
    trace.drops = sum(c.cap.stats.dropped for c in caps.values())
    if pcap_dir is not None:
        trace.pcaps = _write_pcaps(pcap_dir, ifaces, frames)
    return trace


@dataclass
class _Cap:
    cap: RawCapture
    frames: list[Frame] = field(default_factory=list)


def _start(ifaces: dict[str, Iface], bpf: str) -> dict[str, _Cap]:
    program = compile_filter(bpf)
    caps: dict[str, _Cap] = {}
    try:
        for key, iface in ifaces.items():
            c = _Cap(RawCapture(iface, program=program))
            c.cap.open()
            caps[key] = c
        for c in caps.values():
            c.cap.start(c.frames.append)
    except BaseException:
        for c in caps.values():
            c.cap.stop()
        raise
    return caps


def _redirected(frames: list[Frame], client: PodView, answer: Answer, target: Target) -> bool:
    """A TCP connection to a pod that never showed on the client's eth0 as sent: a meshed
    client's in-pod proxy took it (knet/flows/meshtrace.py)."""
    if target.protocol != "tcp" or not answer.local[1]:
        return False
    leg1 = (client.ip, answer.local[1], target.ip, target.port)
    return not any(dissect(f).conn == leg1 for f in frames)


def _flow_record(view: ClusterView, client: PodView, answer: Answer) -> dict[str, object] | None:
    node = view.nodes.get(client.node)
    if node is None or not node.flows_socket:
        return None
    since = answer.started_ns / 1e9 - 1
    deadline = time.monotonic() + FLOW_WAIT
    while time.monotonic() < deadline:
        try:
            rows = proxy_flows(node, since=since, timeout=2)
        except (OSError, ValueError) as exc:
            log.warning("%s: kube-proxy flow records unreachable at %s: %s", node.name,
                        node.flows_socket, exc)
            return None
        for r in rows:
            if r.get("client_ip") == client.ip and r.get("client_port") == answer.local[1]:
                return dict(r)
        time.sleep(0.1)
    return None


def _write_pcaps(pcap_dir: Path, ifaces: dict[str, Iface],
                 frames: dict[str, list[Frame]]) -> list[Path]:
    pcap_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (key, iface) in enumerate(ifaces.items(), 1):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", iface.label).strip("_")
        w = PcapWriter(pcap_dir / f"{i:02d}-{name}.pcap")
        for f in frames[key]:
            w.write(f.ts_ns, f.data)
        out.append(w.commit())
    return out


# --- assembling hops ----------------------------------------------------------------------
Conn = tuple[str, int, str, int]


def _pick(packets: list[Packet], conn: Conn | None) -> list[Packet]:
    if conn is None:
        return []
    back = (conn[2], conn[3], conn[0], conn[1])
    return [p for p in packets if p.conn in (conn, back)]


def _second_leg(decoded: dict[str, list[Packet]], ip: str, port: int, after_ns: int,
                proto: str) -> Conn | None:
    """The proxy's connection to the endpoint: the first SYN (or datagram) to ip:port."""
    first: Packet | None = None
    for packets in decoded.values():
        for p in packets:
            opens = p.proto == proto and (proto != "TCP" or p.flags == "S")
            if (p.dst, p.dport) == (ip, port) and p.ts_ns >= after_ns and opens \
                    and (first is None or p.ts_ns < first.ts_ns):
                first = p
    return first.conn if first else None


def _assemble(view: ClusterView, client: PodView, target: Target, ifaces: dict[str, Iface],
              frames: dict[str, list[Frame]], answer: Answer,
              flow: dict[str, object] | None) -> Trace:
    decoded = {k: sorted((dissect(f) for f in fs), key=lambda p: p.ts_ns)
               for k, fs in frames.items()}
    leg1: Conn = (client.ip, answer.local[1], target.ip, target.port)
    proto = target.protocol.upper()
    hops: list[Hop] = []
    if target.dns is not None:
        hops.append(Hop("dns", "dns", note=_dns_note(target.dns)))
    if is_meshed(flow) and flow is not None:
        return _assemble_mesh(view, client, target, ifaces, decoded, answer, flow, hops)

    def add(key: str, conn: Conn | None, label: str = "") -> None:
        if key in ifaces:
            hops.append(Hop(label or ifaces[key].label, "iface", ifaces[key],
                            _pick(decoded[key], conn)))

    add("client", leg1)
    add(f"{client.node}:cni0", leg1)
    backend: PodView | None = target.pod
    leg2: Conn | None = leg1
    if target.service is not None:
        hops.append(_proxy_hop(client, target, flow))
        ep = (str(flow.get("endpoint_ip") or ""), int(str(flow.get("endpoint_port") or 0))) \
            if flow else ("", 0)
        backend = view.pods.get(str(flow.get("endpoint_pod") or "")) if flow else None
        src = (str(flow.get("source_ip") or ""), int(str(flow.get("source_port") or 0))) \
            if flow else ("", 0)
        if ep[0] and src[0] and src[1]:   # the flow says what the endpoint saw: that very leg
            leg2 = (src[0], src[1], ep[0], ep[1])
        else:
            leg2 = _second_leg(decoded, ep[0], ep[1], answer.started_ns, proto) if ep[0] \
                else None
    if backend is not None:
        if backend.node != client.node:
            add(f"{client.node}:eth0", leg2)
            add(f"{backend.node}:eth0", leg2)
            add(f"{backend.node}:cni0", leg2)
        elif target.service is not None:
            add(f"{client.node}:cni0", leg2, f"{client.node} cni0 (to the endpoint)")
        add(f"pod:{backend.key}", leg2, f"{backend.key} eth0 (backend)")
    if flow and str(flow.get("reason") or "").startswith("nftables"):
        _kernel_dnat_hops(hops, decoded, ifaces, leg1, leg2)
    trace = Trace(client, target, hops, answer, flow)
    trace.broken = _broken(trace)
    return trace


def _assemble_mesh(view: ClusterView, client: PodView, target: Target, ifaces: dict[str, Iface],
                   decoded: dict[str, list[Packet]], answer: Answer, flow: dict[str, object],
                   hops: list[Hop]) -> Trace:
    """A meshed client's path: outbound 15001 in its netns, HBONE to the endpoint's 15008."""
    what = f"svc {target.service.key}:{target.port}" if target.service is not None else \
        f"pod {target.ip}:{target.port}"
    hops.append(Hop(f"{client.key} outbound :{OUTBOUND_PORT} (in-pod, {client.node}'s proxy)",
                    "proxy", note=outbound_note(flow, what)))
    ep_ip, ep_port = str(flow.get("endpoint_ip") or ""), int(str(flow.get("endpoint_port") or 0))
    mtls = bool(flow.get("mtls"))
    backend = view.pods.get(str(flow.get("endpoint_pod") or "")) or target.pod
    leg = mesh_leg(decoded, client.ip, ep_ip, answer.started_ns, mtls, ep_port) \
        if ep_ip else None
    tag = f" (HBONE :{HBONE_PORT}, mTLS)" if mtls else ""

    def add(key: str, label: str = "") -> None:
        if key in ifaces:
            hops.append(Hop((label or ifaces[key].label) + tag, "iface", ifaces[key],
                            _pick(decoded[key], leg)))

    add("client")
    add(f"{client.node}:cni0")
    if backend is not None:
        if backend.node != client.node:
            add(f"{client.node}:eth0")
            add(f"{backend.node}:eth0")
            add(f"{backend.node}:cni0")
        add(f"pod:{backend.key}", f"{backend.key} eth0 (backend)")
        if mtls:
            hops.append(Hop(f"{backend.key} inbound :{HBONE_PORT} ({backend.node}'s proxy)",
                            "mesh", note=inbound_note(view, backend, leg,
                                                      answer.started_ns / 1e9 - 1)))
    trace = Trace(client, target, hops, answer, flow)
    trace.broken = _broken(trace)
    return trace


BRIDGED = ("bridged port to port after the DNAT (br_netfilter NATs on the bridge): the "
           "bridge device itself sees no frame of it")


def _kernel_dnat_hops(hops: list[Hop], decoded: dict[str, list[Packet]],
                      ifaces: dict[str, Iface], leg1: Conn, leg2: Conn | None) -> None:
    """nftables mode: there is no proxy socket, the node DNATs the first packet, so a cni0 hop
    shows the connection before or after the DNAT; to a backend on the same node the frames
    are bridged port to port and cni0 sees none, which is no break."""
    by_iface = {id(i): k for k, i in ifaces.items()}
    for hop in hops:
        key = by_iface.get(id(hop.iface)) if hop.iface is not None else None
        if hop.kind != "iface" or key is None or not key.endswith(":cni0"):
            continue
        seen = {id(p): p for p in _pick(decoded[key], leg1) + _pick(decoded[key], leg2)}
        hop.packets = sorted(seen.values(), key=lambda p: p.ts_ns)
        if not hop.packets:
            hop.note = BRIDGED


def _dns_note(d: DnsAnswer | None) -> str:
    if d is None:
        return ""
    got = ", ".join(d.addresses) or "no address"
    return f"{d.qname} A -> {got} ({d.rcode} from {d.server}, {d.seconds * 1000:.1f}ms)"


def _proxy_hop(client: PodView, target: Target, flow: dict[str, object] | None) -> Hop:
    svc = target.service
    assert svc is not None
    label = f"proxy {client.node}"
    if flow is None:
        return Hop(label, "proxy", note=f"svc {svc.key}:{target.port}: no flow record for "
                   f"{client.ip}:{target.port}")
    ep = flow.get("endpoint_pod") or flow.get("endpoint_ip") or "none"
    if str(flow.get("reason") or "").startswith("nftables"):
        label = f"DNAT {client.node} (kube-proxy nftables)"
    note = (f"svc {svc.key}:{target.port} -> {ep} ({flow.get('endpoint_ip')}:"
            f"{flow.get('endpoint_port')}) {flow.get('reason') or ''} {flow.get('verdict')}")
    if flow.get("error"):
        note += f" ({flow['error']})"
    return Hop(label, "proxy", note=" ".join(note.split()))


def _broken(t: Trace) -> str:
    for hop in t.hops:
        if hop.kind == "proxy":
            f = t.flow
            if f is None:
                return (f"at {hop.label}: no flow record for this connection "
                        f"({t.answer.error if t.answer and t.answer.error else 'not proxied'})")
            if f.get("verdict") != "FORWARDED":
                why = "the service has no ready endpoints" if f.get("verdict") == "REFUSED" \
                    else str(f.get("error") or "the endpoint did not answer")
                return f"at {hop.label}: {f.get('verdict')} ({why})"
        elif hop.kind == "iface" and not hop.packets and hop.note != BRIDGED:
            return f"at {hop.label}: no packets of this connection seen there"
    if t.answer is not None and not t.answer.ok:
        return f"the client got {t.answer.error}"
    return ""
