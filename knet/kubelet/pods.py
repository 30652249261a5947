"""The pod worker: one asyncio task per pod bound to this node, level-triggered on the
latest pod object. It makes the sandbox (dataplane netns + veth + IP, then the runtime's
pod directory with resolv.conf/hosts and volumes), runs init containers in order, then the
containers (one `ContainerRunner` each), publishes status on every change (debounced), and on
deletion stops the containers within the grace period, removes the sandbox and finishes the
deletion in the API (grace 0). Created in a crash or restart, it adopts what still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from control.addresses import CLUSTER_DNS_IP
from control.errors import ApiError, Conflict, NotFound
from knet.errors import KnetError
from knet.kubelet import containers as cspec
from knet.kubelet.context import NodeContext
from knet.kubelet.ephemeral import EphemeralContainers
from knet.kubelet.runner import ContainerRunner
from knet.kubelet.satoken import ProjectedVolumes
from knet.kubelet.status import ContainerView, pod_status
from knet.kubelet.volumes import VolumeNotReady, unmount_pod_volumes
from knet.runtime.base import PodSandbox

log = logging.getLogger(__name__)
Obj = dict[str, Any]


def pod_dir(root: Path, pod: Obj) -> Path:
    m = pod["metadata"]
    return root / f"{m['namespace']}_{m['name']}_{m.get('uid', 'nouid')}"


class PodWorker:
    def __init__(self, ctx: NodeContext, pod: Obj) -> None:
        self.ctx = ctx
        self.pod = pod
        m = pod["metadata"]
        self.key = f"{m['namespace']}/{m['name']}"
        self.uid = m.get("uid", "")
        self.dir = pod_dir(ctx.pods_root, pod)
        self.pod_ip = (pod.get("status") or {}).get("podIP", "")
        self.sandbox: PodSandbox | None = None
        self.runners: list[ContainerRunner] = []
        self.init_views: list[ContainerView] = []
        # while init containers run, the app containers wait as PodInitializing (kubelet)
        waiting = {"waiting": {"reason": "PodInitializing" if pod["spec"].get("initContainers")
                               else "ContainerCreating"}}
        self.views = [ContainerView(name=c["name"], image=c.get("image", ""),
                                    state=dict(waiting))
                      for c in pod["spec"].get("containers") or []]
        self.initialized = not pod["spec"].get("initContainers")
        self.start_time = time.time()
        self._dirty = asyncio.Event()
        self._wake = asyncio.Event()
        self._gone = False          # the API object is gone (force-deleted)
        self._task: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self.ephemeral = EphemeralContainers(self.key, self._ephemeral_runner, self._mark)
        self._app_started = False     # ephemeral containers join a pod that runs
        self._restore_counts()

    def __repr__(self) -> str:
        return f"<PodWorker {self.key} {self.pod_ip or '-'} {self.ctx.node_name}>"

    def _restore_counts(self) -> None:
        """After an agent restart, carry restartCount and lastState on from the API."""
        old = {s["name"]: s for s in (self.pod.get("status") or {}).get("containerStatuses") or []}
        for v in self.views:
            if v.name in old:
                v.restart_count = int(old[v.name].get("restartCount", 0))
                v.last_state = old[v.name].get("lastState") or {}

    # -- lifecycle driven by the informer -------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pod {self.key}")
        self._publisher = asyncio.create_task(self._publish_loop(), name=f"status {self.key}")

    def update(self, pod: Obj) -> None:
        self.pod = pod
        if self._app_started and not self._deleting():
            self.ephemeral.sync(pod)
            for c in pod["spec"].get("containers") or []:   # `kubectl set image`
                runner = self.find_runner(c["name"])
                if runner is not None and not runner.is_ephemeral:
                    runner.redefine(c)
        self._wake.set()

    def gone(self) -> None:
        """The pod object was deleted without us (force delete): stop and clean up."""
        self._gone = True
        self._wake.set()

    async def shutdown(self) -> None:
        """Agent stopping: leave containers running (they are adopted on restart)."""
        await self.ephemeral.cancel()
        for task in (self._task, self._publisher, self._refresher):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    def _deleting(self) -> bool:
        return self._gone or bool(self.pod["metadata"].get("deletionTimestamp"))

    # -- the work ------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            if not self._deleting():
                main = asyncio.create_task(self._bring_up())
                while not main.done() and not self._deleting():
                    woken = asyncio.create_task(self._wake.wait())
                    await asyncio.wait({main, woken}, return_when=asyncio.FIRST_COMPLETED)
                    woken.cancel()
                    self._wake.clear()
                if not main.done():
                    main.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await main
                elif main.exception():
                    log.error("%s: %s", self.key, main.exception())
                while not self._deleting():  # finished (Succeeded/Failed): wait for deletion
                    await self._wake.wait()
                    self._wake.clear()
            await self._tear_down()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: pod worker failed", self.key)

    async def _bring_up(self) -> None:
        delay, mount_delay = 1.0, 0.25
        while True:
            try:
                await self._make_sandbox()
                break
            except VolumeNotReady as exc:         # e.g. its claim is being bound: soon
                self.ctx.event(self.pod, "Warning", "FailedMount", str(exc))
                await asyncio.sleep(mount_delay)
                mount_delay = min(mount_delay * 2, 8.0)
                continue
            except (KnetError, OSError) as exc:
                self.ctx.event(self.pod, "Warning", "FailedCreatePodSandBox",
                               f"Failed to create pod sandbox: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
        self._mark()
        if not await self._run_init_containers():
            return
        self.initialized = True
        adopt = bool(self.pod.get("status", {}).get("containerStatuses"))
        apps = [self._runner(c, view) for c, view in
                zip(self.pod["spec"]["containers"], self.views)]
        self.runners = list(apps)
        self._app_started = True
        self.ephemeral.sync(self.pod)       # their runners join self.runners, not `apps`
        await asyncio.gather(*(r.run(adopt=adopt) for r in apps))
        self._mark()

    @property
    def host_network(self) -> bool:
        """hostNetwork: the pod runs in its node's netns (knet's node is a netns: its
        addresses, routes and the proxy's listeners), with the node's IP and name."""
        return self.pod["spec"].get("hostNetwork") is True

    async def _make_sandbox(self) -> None:
        spec, meta = self.pod["spec"], self.pod["metadata"]
        if self.host_network:
            netns, self.pod_ip = self.ctx.node_netns, self.ctx.host_ip
        else:
            net = await self.ctx.dataplane.ensure_pod(self.ctx.node_name, self.key)
            netns, self.pod_ip = net.netns, net.ip
        nameserver = CLUSTER_DNS_IP
        # as the kubelet: ClusterFirst on the host network falls back to the node's resolver
        if spec.get("dnsPolicy") == "Default" or (
                self.host_network and spec.get("dnsPolicy", "ClusterFirst") == "ClusterFirst"):
            nameserver = _host_nameserver()
        hostname = self.ctx.node_name if self.host_network else spec.get("hostname") or None
        self.sandbox = PodSandbox.for_pod(
            meta["namespace"], meta["name"], netns=netns, pod_ip=self.pod_ip, pod_dir=self.dir,
            hostname=hostname, subdomain=spec.get("subdomain") or None,
            nameserver=nameserver, share_pid=bool(spec.get("shareProcessNamespace")),
            host_aliases=[(a["ip"], a.get("hostnames") or []) for a in spec.get("hostAliases") or []])
        self.dir.mkdir(parents=True, exist_ok=True)
        self.volumes = await cspec.materialize_volumes(self.pod, self.dir, lookup=self.ctx.lookup)
        projected = ProjectedVolumes(self.pod, self.dir, client=self.ctx.client,
                                     lookup=self.ctx.lookup, access=self.ctx.api_access,
                                     clock=self.ctx.clock)
        await projected.write()
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.create_task(projected.keep_fresh(
                on_error=lambda msg: self.ctx.event(self.pod, "Warning", "FailedMount", msg)),
                name=f"tokens {self.key}")

    def _runner(self, c: Obj, view: ContainerView, *, is_init: bool = False,
                ephemeral: bool = False) -> ContainerRunner:
        assert self.sandbox is not None
        return ContainerRunner(self.ctx, self.pod, c, self.sandbox, pod_ip=self.pod_ip,
                               volumes=self.volumes, view=view, changed=self._mark,
                               is_init=is_init, is_ephemeral=ephemeral)

    def _ephemeral_runner(self, c: Obj, view: ContainerView) -> ContainerRunner:
        """One more runner of the running pod: logs, attach, exec and deletion find it."""
        runner = self._runner(c, view, ephemeral=True)
        self.runners.append(runner)
        return runner

    def find_runner(self, name: str) -> ContainerRunner | None:
        """The runner of the container (app, init or ephemeral) called `name`."""
        return next((r for r in self.runners if r.c["name"] == name), None)

    async def _run_init_containers(self) -> bool:
        inits = self.pod["spec"].get("initContainers") or []
        self.init_views = [ContainerView(name=c["name"], image=c.get("image", ""))
                           for c in inits]
        done = {s["name"] for s in self.pod.get("status", {}).get("initContainerStatuses") or []
                if (s.get("state", {}).get("terminated") or {}).get("exitCode") == 0}
        for c, view in zip(inits, self.init_views):
            if c["name"] in done:
                view.state = {"terminated": {"exitCode": 0, "reason": "Completed"}}
                continue
            runner = self._runner(c, view, is_init=True)
            self.runners = [runner]
            code = await runner.run(adopt=False)
            if code != 0:
                return False
            view.ready = False
        return True

    async def _tear_down(self) -> None:
        grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
        if grace is None:
            grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        await asyncio.gather(*(r.stop(grace=float(grace)) for r in self.runners))
        await self.ephemeral.cancel()
        sandbox = self.sandbox or PodSandbox.for_pod(
            self.pod["metadata"]["namespace"], self.pod["metadata"]["name"], netns="",
            pod_ip=self.pod_ip, pod_dir=self.dir)
        await self.ctx.runtime.remove(sandbox)
        with contextlib.suppress(OSError):
            unmount_pod_volumes(self.dir)                       # emptyDir medium Memory
        for made in ("volumes", "images"):   # what the kubelet wrote (containers.image_mounts)
            shutil.rmtree(self.dir / made, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.dir.rmdir()
        if not self.host_network:                     # the node's netns is not the pod's
            await self.ctx.dataplane.delete_pod(self.ctx.node_name, self.key)
        if self._publisher:
            self._publisher.cancel()
        if self._refresher:
            self._refresher.cancel()
        if not self._gone:
            with contextlib.suppress(NotFound, Conflict):
                await self.ctx.client.delete("pods", self.pod["metadata"]["name"],
                                             namespace=self.pod["metadata"]["namespace"],
                                             grace_period=0, preconditions_uid=self.uid)
        log.info("%s: removed", self.key)

    # -- status --------------------------------------------------------------------------
    def _take(self, answer: Obj) -> None:
        """The pod as the status patch left it, unless the informer already gave a newer one:
        the patch's answer can arrive after the watch event of a later change (a deletion
        above all, which an older copy would hide: the pod would stay Terminating)."""
        if _revision(answer) >= _revision(self.pod):
            self.pod = answer

    def _mark(self) -> None:
        self._dirty.set()

    async def _publish_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.ctx.options.status_debounce)
            self._dirty.clear()
            if self._gone:
                return
            status = pod_status(old=self.pod.get("status") or {}, containers=self.views,
                                init=self.init_views, initialized=self.initialized,
                                pod_ip=self.pod_ip, host_ip=self.ctx.host_ip,
                                start_time=self.start_time, now=time.time(),
                                ephemeral=self.ephemeral.statuses())
            try:
                self._take(await self.ctx.client.patch(
                    "pods", self.pod["metadata"]["name"], {"status": status},
                    namespace=self.pod["metadata"]["namespace"], subresource="status"))
            except NotFound:
                return
            except ApiError as exc:
                log.warning("%s: status update failed: %s", self.key, exc)
                await asyncio.sleep(0.5)
                self._dirty.set()


def _revision(obj: Obj) -> int:
    """The object's resourceVersion as a number (knet's are the store's revisions); -1 when
    it has none, so that any answer replaces it."""
    try:
        return int(obj["metadata"].get("resourceVersion", -1))
    except (TypeError, ValueError):
        return -1


def _host_nameserver() -> str:
    try:
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                return parts[1]
    except OSError:
        pass
    return "127.0.0.53"


__all__ = ["PodWorker", "pod_dir"]
