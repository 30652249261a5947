"""Liveness, readiness and startup probes: httpGet, tcpSocket, grpc (knet.kubelet.grpcprobe)
and exec, with initialDelaySeconds, periodSeconds, timeoutSeconds, successThreshold and
failureThreshold as Kubernetes defines them. Network probes connect from the node's netns to the pod IP, like a
kubelet on the node; exec probes run the command in the container through the runtime.

A `Prober` owns one probe's loop and calls `on_change(kind, result, message)` only when the
result flips (after the thresholds), so the pod worker is woken only for real changes: a
probe that has not passed yet (readiness, startup) fails only after failureThreshold
failures in a row (a startup probe thus allows failureThreshold x periodSeconds); its first
failure before that is only reported, through `on_report(kind, message)`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from knet.dataplane.nsutil import in_netns
from knet.kubelet.grpcprobe import grpc_check

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[tuple[bool, str]]]
ExecFn = Callable[[list[str], float], Awaitable[tuple[int, bytes]]]


def resolve_port(port: Any, container: dict[str, Any]) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"probe port {port!r} names no port of container {container.get('name')}")


async def _connect(netns: str | None, host: str, port: int, timeout: float) -> socket.socket:
    if netns:
        with in_netns(netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), timeout)
    except BaseException:
        sock.close()
        raise
    return sock


def tcp_check(*, netns: str | None, host: str, port: int, timeout: float) -> Check:
    async def check() -> tuple[bool, str]:
        try:
            sock = await _connect(netns, host, port, timeout)
        except (TimeoutError, OSError) as exc:
            return False, f"dial tcp {host}:{port}: {_why(exc)}"
        sock.close()
        return True, ""
    return check


def http_check(*, netns: str | None, host: str, port: int, path: str, timeout: float,
               headers: list[dict[str, str]] | None = None, scheme: str = "HTTP") -> Check:
    extra = "".join(f"{h['name']}: {h['value']}\r\n" for h in headers or [])
    request = (f"GET {path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.32\r\n"
               f"Accept: */*\r\nConnection: close\r\n{extra}\r\n").encode()

    # Only the status line is read: the verdict depends on the code alone (200-399), as the
    # kubelet's. Not the proxy's strict parser (knet/proxy/http1.py): nothing read here is
    # forwarded anywhere, so no second interpretation of the bytes can do harm.
    async def check() -> tuple[bool, str]:
        if scheme.upper() == "HTTPS":
            return False, "HTTPS probes are not supported by knet; use HTTP or tcpSocket"
        url = f"http://{host}:{port}{path or '/'}"
        try:
            sock = await _connect(netns, host, port, timeout)
            reader, writer = await asyncio.open_connection(sock=sock)
            try:
                writer.write(request)
                line = await asyncio.wait_for(reader.readline(), timeout)
            finally:
                writer.close()
        except (TimeoutError, OSError) as exc:
            return False, f"Get \"{url}\": {_why(exc)}"
        parts = line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            return False, f"Get \"{url}\": malformed HTTP response {line[:60]!r}"
        code = int(parts[1])
        if 200 <= code < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {code}"
    return check


def exec_check(argv: list[str], run: ExecFn, timeout: float) -> Check:
    async def check() -> tuple[bool, str]:
        try:
            code, out = await run(argv, timeout)
        except TimeoutError:
            return False, f"command {argv!r} timed out after {timeout:g}s"
        except Exception as exc:  # noqa: BLE001 - a probe failure, reported as such
            return False, f"command {argv!r} failed: {exc}"
        if code == 0:
            return True, ""
        text = out.decode(errors="replace").strip()[-200:]
        return False, f"command {argv!r} exited with {code}" + (f": {text}" if text else "")
    return check


def _why(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "i/o timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connect: connection refused"
    return str(exc) or type(exc).__name__


def make_check(probe: dict[str, Any], container: dict[str, Any], *, netns: str | None,
               pod_ip: str, exec_fn: ExecFn) -> Check:
    timeout = float(probe.get("timeoutSeconds", 1))
    if "httpGet" in probe:
        h = probe["httpGet"]
        return http_check(netns=netns, host=h.get("host") or pod_ip,
                          port=resolve_port(h["port"], container), path=h.get("path", "/"),
                          timeout=timeout, headers=h.get("httpHeaders"),
                          scheme=h.get("scheme", "HTTP"))
    if "tcpSocket" in probe:
        t = probe["tcpSocket"]
        return tcp_check(netns=netns, host=t.get("host") or pod_ip,
                         port=resolve_port(t["port"], container), timeout=timeout)
    if "exec" in probe:
        return exec_check(list(probe["exec"].get("command") or []), exec_fn, timeout)
    if "grpc" in probe:
        g = probe["grpc"] or {}
        return grpc_check(netns=netns, host=pod_ip, port=int(g["port"]),
                          service=g.get("service") or "", timeout=timeout, connect=_connect)
    raise ValueError("probe has no handler: give httpGet, tcpSocket, grpc or exec")


class Prober:
    """One probe of one container. `result` starts as `initial` (False for readiness and
    startup, True for liveness) and flips after successThreshold / failureThreshold."""

    def __init__(self, kind: str, probe: dict[str, Any], check: Check, *,
                 on_change: Callable[[str, bool, str], None], initial: bool,
                 on_report: Callable[[str, str], None] | None = None) -> None:
        self.kind = kind
        self.check = check
        self.on_change = on_change
        self.on_report = on_report
        self.result = initial
        self.failed = False               # failureThreshold failures in a row, reported
        self.message = ""
        self.delay = float(probe.get("initialDelaySeconds", 0))
        self.period = max(float(probe.get("periodSeconds", 10)), 0.1)
        self.success_threshold = int(probe.get("successThreshold", 1))
        self.failure_threshold = int(probe.get("failureThreshold", 3))
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"probe-{self.kind}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _loop(self) -> None:
        await asyncio.sleep(self.delay)
        successes = failures = 0
        while True:
            ok, message = await self.check()
            if ok:
                successes, failures = successes + 1, 0
                self.failed = False
                if not self.result and successes >= self.success_threshold:
                    self._flip(True, "")
            else:
                successes, failures = 0, failures + 1
                self.message = message
                if failures >= self.failure_threshold and not self.failed:
                    self.failed = True
                    self._flip(False, message)
                elif failures == 1 and not self.result and self.on_report is not None:
                    self.on_report(self.kind, message)    # why it is not passing (yet)
            await asyncio.sleep(self.period)

    def _flip(self, result: bool, message: str) -> None:
        self.result = result
        self.message = message
        self.on_change(self.kind, result, message)
