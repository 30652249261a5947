"""Seeing the packets: flow records, packet capture, hop-by-hop trace, topology.

- `cluster.ClusterView.load(state_dir)`: one snapshot of nodes, pods, services, endpoints and
  their netns/interfaces; names for addresses; targets resolved with helpful errors.
- `records.snapshot/follow`: every agent's proxy flows + the DNS query log, merged, filtered;
  `records.format_flow` is the one-line form.
- `session.capture(iface, bpf=, count=, duration=, write=, show=)`: `knet capture`, over
  `capture.RawCapture` (AF_PACKET in the netns, kernel BPF, raw frames, drops counted) and
  `pcap.PcapWriter` (atomic file). `decode` dissects with scapy only what is shown.
- `trace.run_trace(view, FROM, TO)` + `traceview.render`: `knet trace`.
- `topo.tree/dot/svg`: `knet topo`.

This is the only package that imports scapy (and only in decode, lazily).
"""
