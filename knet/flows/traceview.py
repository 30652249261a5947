"""A `Trace` as text: one block per hop, its packets with times relative to the first
packet of the trace, and the outcome (who answered, or where and why the path broke)."""

from __future__ import annotations

from collections.abc import Callable

from knet.flows.decode import clock_ns, describe
from knet.flows.trace import Trace

__all__ = ["render"]

MAX_PACKETS = 12


def render(t: Trace, names: Callable[[str], str]) -> str:
    tgt = t.target
    what = f"svc {tgt.service.key}" if tgt.service else (tgt.pod.key if tgt.pod else tgt.text)
    lines = [f"trace {t.client.key} ({t.client.ip}, {t.client.node}) -> {tgt.text}"
             + (f" = {what} {tgt.ip}:{tgt.port}/{tgt.protocol}" if tgt.ip else "")]
    starts = [p.ts_ns for h in t.hops for p in h.packets]
    t0 = min(starts) if starts else 0
    for i, hop in enumerate(t.hops, 1):
        lines.append(f"{i:>2}. {hop.label}" + (f"  {hop.note}" if hop.note else ""))
        if hop.kind != "iface":
            continue
        if not hop.packets:
            lines.append("      (no packets of this connection)")
        for p in hop.packets[:MAX_PACKETS]:
            lines.append(f"      {clock_ns(p.ts_ns)} +{(p.ts_ns - t0) / 1e6:7.3f}ms  "
                         f"{describe(p, names)}")
        if len(hop.packets) > MAX_PACKETS:
            lines.append(f"      ... {len(hop.packets) - MAX_PACKETS} more")
    a = t.answer
    if t.broken:
        lines.append(f"BROKEN {t.broken}")
    elif a is not None:
        by = a.upstream or (t.flow or {}).get("endpoint_pod") or "?"
        status = f"HTTP {a.status}, " if a.status else ""
        lines.append(f"answered by {by} ({status}{a.received} bytes in {a.seconds * 1000:.1f}ms)")
    if t.drops:
        lines.append(f"warning: the kernel dropped {t.drops} packets during the capture")
    for path in t.pcaps:
        lines.append(f"pcap: {path}")
    return "\n".join(lines)
