"""`knet netpol probe`: every selected pod connects to every other for real, and the answers
make the reachability truth table of the upstream netpol e2e suite (and Cyclonus).

Each connection is made from a socket opened inside the client pod's netns (thread-local
setns, as `knet trace` does), so it leaves through the pod's eth0 with the pod's address,
exactly like a process in the pod — without a `kubectl exec` per pair. Pairs run in parallel
on a thread pool with a short timeout: a dropped SYN costs one timeout, not a retry ladder.
TCP is reachable when the handshake completes; UDP when the server answers a datagram
(agnhost serve-hostname answers with its name).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from knet.dataplane.nsutil import in_netns

__all__ = ["Endpoint", "connect", "probe_all", "truth_table"]


@dataclass(frozen=True)
class Endpoint:
    key: str            # namespace/name
    ip: str
    netns: str


def connect(netns: str, ip: str, port: int, protocol: str = "tcp", timeout: float = 1.0) -> bool:
    """One real attempt from inside `netns`: True when the other side answered."""
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    with in_netns(netns):
        sock = socket.socket(socket.AF_INET, kind)
    sock.settimeout(timeout)
    try:
        sock.connect((ip, port))
        if protocol == "udp":
            sock.send(b"hostname")
            return bool(sock.recv(512))
        return True
    except OSError:        # refused, timed out, unreachable: not connected
        return False
    finally:
        sock.close()


Prober = Callable[[str, str, int, str, float], bool]


def probe_all(pods: Sequence[Endpoint], port: int, protocol: str = "tcp", *,
              timeout: float = 1.0, workers: int = 32,
              prober: Prober = connect) -> dict[tuple[str, str], bool]:
    """(from, to) -> reachable, for every ordered pair (a pod to itself included)."""
    pairs = [(a, b) for a in pods for b in pods]
    with ThreadPoolExecutor(max(1, min(workers, len(pairs)))) as pool:
        results = list(pool.map(lambda ab: prober(ab[0].netns, ab[1].ip, port, protocol,
                                                  timeout), pairs))
    return {(a.key, b.key): ok for (a, b), ok in zip(pairs, results, strict=True)}


def truth_table(keys: Sequence[str], reachable: Callable[[str, str], bool]) -> str:
    """The e2e suite's table: a row per client, a column per server, '.' = connected,
    'X' = not; first line '-' and the server names, tab separated."""
    lines = ["-\t" + "\t".join(keys)]
    for src in keys:
        lines.append(src + "\t" + "\t".join("." if reachable(src, dst) else "X" for dst in keys))
    return "\n".join(lines) + "\n"
