"""`knet capture TARGET`: packets on a pod's eth0, a node's interface, or NETNS:IFACE."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from knet.cluster.state import DEFAULT_STATE_DIR
from knet.errors import UsageError


class _Intermixed(argparse.ArgumentParser):
    """Options may sit between TARGET and the filter words (`capture web-1 -c 5 tcp port 80`),
    as with tcpdump: parse_known_args is the intermixed variant (guarded: that one calls
    parse_known_args itself)."""
    _inside = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        if self._inside:
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("capture", help="capture packets on a pod, a node or any interface",
                       description="Capture inside the target's network namespace: a pod "
                       "(NAME or NS/NAME: its eth0), a node (node-1: cni0 unless -i), or "
                       "NETNS:IFACE (host:IFACE for this namespace). One line per packet with "
                       "pod and service names, or -w FILE.pcap for Wireshark/tshark.")
    p.add_argument("target")
    p.add_argument("filter", nargs="*", help="a BPF filter expression, as tcpdump takes it")
    p.add_argument("-i", "--interface", default=None, help="interface (nodes: default cni0)")
    p.add_argument("-n", "--namespace", default="default", help="namespace of a pod target")
    p.add_argument("-c", "--count", type=int, default=0, help="stop after N packets")
    p.add_argument("--duration", type=float, default=0.0, help="stop after SECONDS")
    p.add_argument("-w", "--write", type=Path, default=None, help="write a pcap file")
    p.add_argument("--print", dest="show", action="store_true",
                   help="with -w, also print a line per packet")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    p.set_defaults(func=_run)
    p.__class__ = _Intermixed


def _run(args: argparse.Namespace) -> int:
    from knet.flows.cluster import ClusterView, Iface
    from knet.flows.decode import summary
    from knet.flows.session import capture

    if args.count < 0 or args.duration < 0:
        raise UsageError("-c and --duration must not be negative")
    if ":" in args.target and args.target.split(":", 1)[0] in ("", "host"):
        view = None
        iface = Iface(None, args.target.split(":", 1)[1], args.target)
    else:
        view = asyncio.run(ClusterView.load(args.state_dir))
        iface = view.iface_of(args.target, iface=args.interface, namespace=args.namespace)
    names = view.name_of if view is not None else (lambda ip: "")
    show = None
    if args.write is None or args.show:
        def show(frame):  # type: ignore[no-untyped-def]
            print(summary(frame, names), flush=True)
    res = capture(iface, bpf=" ".join(args.filter), count=args.count, duration=args.duration,
                  write=args.write,  show=show,
                  on_start=lambda: print(f"capturing on {iface} ({iface.netns or 'host'})"
                                         + (f" -> {args.write}" if args.write else "")
                                         + "; Ctrl-C stops", file=sys.stderr, flush=True))
    out = f"{res.received} packets captured, {res.dropped} dropped by the kernel"
    if res.unread:
        out += f", {res.unread} left unread (the capture fell behind)"
    if res.written:
        out += f", written to {res.written}"
    print(out, file=sys.stderr)
    return 0
