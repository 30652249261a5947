"""Simulated nodes for control-plane tests: a tiny kubelet stand-in over HTTP.

`SimNodes(kubeconfig, nodes=("node-1", "node-2"))` registers Nodes (Ready, allocatable,
InternalIP) and their Leases in kube-node-lease, renews the Leases, marks every pod bound to
one of its nodes Running and Ready with a pod IP (10.244.<i>.<n>), and finishes graceful
deletions (grace-0 delete), as a kubelet would. It runs its own event loop in a thread so
synchronous tests (subprocess kubectl) can use it:

    with SimNodes(state / "kubeconfig") as nodes:
        ...                      # kubectl apply / rollout status / ...
        nodes.stop_renewing("node-1")   # simulate a dead kubelet

`start_control(state_dir)` runs `knet control` on a free loopback port until the block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from control.client import HttpClient
from control.errors import AlreadyExists, ApiError, NotFound
from control.informer import Informer

__all__ = ["SimNodes", "free_port", "start_control"]

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def start_control(state: Path, *, extra_args: tuple[str, ...] = (),
                  env: dict[str, str] | None = None, port: int | None = None) -> Iterator[Path]:
    """`knet control --state-dir state --listen 127.0.0.1:<port or a free one>`; yields the
    kubeconfig. `env` adds environment variables (e.g. KNET_NODE_MONITOR_GRACE)."""
    port = port or free_port()
    out = open(state / "control.log", "a")
    proc = subprocess.Popen([sys.executable, "-m", "knet.cli.main", "-v", "control",
                             "--state-dir", str(state), "--listen", f"127.0.0.1:{port}",
                             *extra_args], stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})
    kubeconfig = state / "kubeconfig"
    deadline = time.monotonic() + 30
    try:
        while not (kubeconfig.exists() and _listening(port)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("knet control did not start:\n"
                                     + (state / "control.log").read_text())
            time.sleep(0.1)
        yield kubeconfig
        assert proc.poll() is None, "knet control died:\n" + (state / "control.log").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
            # a clean SIGTERM shutdown exits 0 (checked only when the block itself succeeded)
            if sys.exc_info()[0] is None:
                assert code == 0, f"knet control exited {code}:\n" + (state / "control.log").read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _now(micro: bool = False) -> str:
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.now(UTC).strftime(fmt)


class SimNodes:
    def __init__(self, kubeconfig: Path, *, nodes: tuple[str, ...] = ("node-1", "node-2"),
                 renew_every: float = 2.0, cpu: str = "4", memory: str = "8Gi") -> None:
        self.kubeconfig = kubeconfig
        self.nodes = nodes
        self.renew_every = renew_every
        self.cpu, self.memory = cpu, memory
        self._silent: set[str] = set()
        self._next_ip: dict[str, int] = {n: 2 for n in nodes}
        self._started: set[str] = set()          # pod uids already marked Running
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<SimNodes {','.join(self.nodes)} silent={sorted(self._silent)}>"

    # ---- thread control --------------------------------------------------------------------

    def __enter__(self) -> SimNodes:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 20.0) -> None:
        self._thread = threading.Thread(target=self._thread_main, name="simnodes", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise AssertionError(f"simulated nodes not registered after {timeout}s")
        if self._error is not None:
            raise AssertionError(f"simulated nodes failed: {self._error!r}")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=15)

    def stop_renewing(self, node: str) -> None:
        """The node's kubelet 'dies': no more Lease renewals, no more pod updates."""
        self._silent.add(node)

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:   # noqa: BLE001 - reported to the test thread
            self._error = exc
            self._ready.set()

    # ---- the agent -------------------------------------------------------------------------

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        client = HttpClient.from_kubeconfig(self.kubeconfig, timeout=10)
        pods = Informer(client, "pods")
        pods.add_handler(on_add=lambda p: self._pod(client, p),
                         on_update=lambda old, new: self._pod(client, new))
        try:
            for i, name in enumerate(self.nodes, start=1):
                await self._register(client, name, i)
            pods.start()
            await pods.wait_synced(20)
            self._ready.set()
            while not self._stop.is_set():
                for name in self.nodes:
                    if name not in self._silent:
                        await self._renew(client, name)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.renew_every)
        finally:
            await pods.stop()
            await client.close()

    async def _register(self, client: HttpClient, name: str, index: int) -> None:
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                      "kubernetes.io/os": "linux"}},
                "spec": {"podCIDR": f"10.244.{index}.0/24"}}
        with contextlib.suppress(AlreadyExists):
            await client.create("nodes", node)
        await self._post_status(client, name, index)
        with contextlib.suppress(AlreadyExists):
            await client.create("leases", {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                         "renewTime": _now(micro=True)}}, namespace="kube-node-lease")

    async def _post_status(self, client: HttpClient, name: str, index: int) -> None:
        res = {"cpu": self.cpu, "memory": self.memory, "pods": "110"}
        await client.patch("nodes", name, {"status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "simulated kubelet is posting ready status",
                            "lastHeartbeatTime": _now(), "lastTransitionTime": _now()}],
            "addresses": [{"type": "InternalIP", "address": f"172.18.0.{index + 1}"},
                          {"type": "Hostname", "address": name}],
            "capacity": res, "allocatable": res,
            "nodeInfo": {"kubeletVersion": "v1.32.0-knet-sim", "osImage": "knet simulated",
                         "containerRuntimeVersion": "knet://sim", "architecture": "amd64",
                         "operatingSystem": "linux", "kernelVersion": "", "kubeProxyVersion": "",
                         "machineID": "", "systemUUID": "", "bootID": ""}}},
            subresource="status")

    async def _renew(self, client: HttpClient, name: str) -> None:
        try:
            await client.patch("leases", name, {"spec": {"renewTime": _now(micro=True)}},
                               namespace="kube-node-lease")
        except ApiError as exc:
            log.warning("%s: lease renewal failed: %s", name, exc)

    async def _pod(self, client: HttpClient, pod: dict[str, Any]) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if node not in self.nodes or node in self._silent:
            return
        md = pod["metadata"]
        try:
            if md.get("deletionTimestamp"):
                await client.delete("pods", md["name"], namespace=md["namespace"],
                                    grace_period=0, preconditions_uid=md.get("uid"))
            elif ((pod.get("status") or {}).get("phase") != "Running"
                  and md.get("uid") not in self._started):
                self._started.add(md.get("uid", ""))
                await self._run_pod(client, pod, node)
        except (NotFound, AlreadyExists):
            pass
        except ApiError as exc:
            log.warning("%s/%s: simulated kubelet: %s", md["namespace"], md["name"], exc)

    async def _run_pod(self, client: HttpClient, pod: dict[str, Any], node: str) -> None:
        md = pod["metadata"]
        index = self.nodes.index(node) + 1
        ip = f"10.244.{index}.{self._next_ip[node]}"
        self._next_ip[node] += 1
        now = _now()
        conds = [{"type": t, "status": "True", "lastTransitionTime": now}
                 for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
        containers = [{"name": c["name"], "image": c.get("image", ""), "ready": True,
                       "started": True, "restartCount": 0, "imageID": "",
                       "containerID": f"knet://{md['name']}-{c['name']}",
                       "state": {"running": {"startedAt": now}}}
                      for c in (pod.get("spec") or {}).get("containers") or []]
        await client.patch("pods", md["name"], {"status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "hostIP": f"172.18.0.{index + 1}", "startTime": now, "conditions": conds,
            "containerStatuses": containers}}, namespace=md["namespace"], subresource="status")
