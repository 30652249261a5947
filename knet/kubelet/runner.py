"""One container of one pod, for its whole life: build its spec, start it (or adopt the one
still running after an agent restart), run its probes, wait for it to exit, and restart it
as restartPolicy says with CrashLoopBackOff (10 s doubling to 5 min, reset after 10 min of
running). Every change of state is written to its `ContainerView` and announced with
`changed()`, so the pod worker publishes the status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from knet.kubelet import containers as cspec
from knet.kubelet import hooks
from knet.kubelet.context import NodeContext
from knet.kubelet.probes import Prober, make_check
from knet.kubelet.status import ContainerView, rfc3339
from knet.runtime.base import ContainerHandle, ContainerStartError, PodSandbox

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class ContainerRunner:
    def __init__(self, ctx: NodeContext, pod: Obj, container: Obj, sandbox: PodSandbox, *,
                 pod_ip: str, volumes: dict[str, Any], view: ContainerView,
                 changed: Callable[[], None], is_init: bool = False,
                 is_ephemeral: bool = False) -> None:
        self.ctx = ctx
        self.pod = pod
        self.c = container
        self.sandbox = sandbox
        self.pod_ip = pod_ip
        self.volumes = volumes
        self.view = view
        self.changed = changed
        self.is_init = is_init
        self.is_ephemeral = is_ephemeral       # never restarted, may join a target's PIDs
        self.handle: ContainerHandle | None = None
        self.stopping = False
        self.probers: dict[str, Prober] = {}
        self._backoff = 0.0
        self._killing: asyncio.Task[int] | None = None
        self._redefined = False           # killed for a changed spec: restart at once

    @property
    def key(self) -> str:
        return f"{self.sandbox.key}/{self.c['name']}"

    def _policy_restarts(self, code: int) -> bool:
        if self.is_ephemeral:
            return False
        if self.is_init:
            return code != 0 and self.pod["spec"].get("restartPolicy", "Always") != "Never"
        policy = self.pod["spec"].get("restartPolicy", "Always")
        return policy == "Always" or (policy == "OnFailure" and code != 0)

    async def run(self, *, adopt: bool) -> int:
        """Run until the container is done for good (returns its last exit code) or
        the runner is stopped."""
        code = 0
        first = True
        while not self.stopping:
            handle = self.ctx.runtime.adopt(self.sandbox, self.c["name"]) if adopt and first else None
            first = False
            started_at = time.time()
            if handle is None:
                try:
                    handle = await self._start()
                except cspec.ConfigError:
                    await self._config_backoff()  # nothing ran: no restart is counted
                    continue
                if handle is None:
                    code = int(self.view.last_state.get("terminated", {}).get("exitCode", 128))
                    if not await self._after_exit(code, started_at):
                        return code
                    continue
                self.handle = handle
                await self._post_start(handle)
            else:
                started_at = handle.started_at
                log.info("%s: adopted running container pid %d", self.key, handle.pid)
            self.handle = handle
            self.view.container_id = handle.id
            self.view.state = {"running": {"startedAt": rfc3339(handle.started_at)}}
            self.view.will_restart = True
            self._start_probes()
            self.changed()
            code = await self.ctx.runtime.wait(handle)
            await self._stop_probes()
            exit_info = self.ctx.runtime.last_exit(handle)
            reason = exit_info.reason if exit_info else ("Completed" if code == 0 else "Error")
            self.view.state = {"terminated": {
                "exitCode": code, "reason": reason, "startedAt": rfc3339(started_at),
                "finishedAt": rfc3339(time.time()), "containerID": f"knet://{handle.id}",
                **({"message": exit_info.message} if exit_info and exit_info.message else {})}}
            self.view.ready = False
            self.view.started = False
            if self.stopping or not await self._after_exit(code, started_at):
                self.view.will_restart = False
                self.changed()
                return code
        return code

    async def _start(self) -> ContainerHandle | None:
        name = self.c["name"]
        try:
            spec = await cspec.container_spec(
                self.pod, self.c, lookup=self.ctx.lookup, node_name=self.ctx.node_name,
                pod_ip=self.pod_ip, host_ip=self.ctx.host_ip,
                service_env=self.ctx.service_env(self.pod["metadata"]["namespace"]),
                volumes=self.volumes,  # image files are mounts: only with namespaces
                pod_dir=Path(self.sandbox.pod_dir)
                if getattr(self.ctx.runtime, "namespaces", False) else None)
        except cspec.ConfigError as exc:
            self.view.state = {"waiting": {"reason": exc.reason, "message": exc.message}}
            self.ctx.event(self.pod, "Warning", "Failed", f"Error: {exc.message}")
            self.changed()
            raise
        self.ctx.event(self.pod, "Normal", "Pulled",
                       f'Container image "{self.c.get("image", "")}" already present on machine')
        try:
            handle = await self.ctx.runtime.start(self.sandbox, spec)
        except ContainerStartError as exc:
            now = rfc3339(time.time())
            self.view.last_state = {"terminated": {
                "exitCode": exc.exit_code, "reason": "StartError", "message": str(exc),
                "startedAt": now, "finishedAt": now}}
            self.view.state = {"waiting": {"reason": exc.reason, "message": str(exc)}}
            self.ctx.event(self.pod, "Warning", "Failed", f"Error: {exc}")
            self.changed()
            return None
        self.ctx.event(self.pod, "Normal", "Created", f"Created container {name}")
        self.ctx.event(self.pod, "Normal", "Started", f"Started container {name}")
        return handle

    async def _config_backoff(self) -> None:
        """The container could not even be made (image not in the catalog, a missing
        ConfigMap): retry with back-off, as ImagePullBackOff / CreateContainerConfigError."""
        delay = self._backoff = min(max(self._backoff * 2, self.ctx.options.backoff_initial),
                                    self.ctx.options.backoff_max)
        await asyncio.sleep(delay)

    async def _after_exit(self, code: int, started_at: float) -> bool:
        """Decide on a restart; sleep the back-off. False if the container is done."""
        if self._redefined:       # the kubelet restarts a changed container at once, any policy
            self._redefined = False
            self._count_restart()
            return not self.stopping
        if self.stopping or not self._policy_restarts(code):
            return False
        opts = self.ctx.options
        if time.time() - started_at >= opts.backoff_reset:
            self._backoff = 0.0
        delay = self._backoff
        self._backoff = opts.backoff_initial if not self._backoff else min(
            self._backoff * 2, opts.backoff_max)
        self._count_restart()
        if delay > 0:
            msg = (f"back-off {delay:g}s restarting failed container={self.c['name']} "
                   f"pod={self.pod['metadata']['name']}_{self.pod['metadata']['namespace']}"
                   f"({self.pod['metadata'].get('uid', '')})")
            self.view.state = {"waiting": {"reason": "CrashLoopBackOff", "message": msg}}
            self.ctx.event(self.pod, "Warning", "BackOff", "Back-off restarting failed container "
                           f"{self.c['name']} in pod {self.pod['metadata']['name']}")
            self.changed()
            await asyncio.sleep(delay)
        return not self.stopping

    def _count_restart(self) -> None:
        if "terminated" in self.view.state:
            self.view.last_state = {"terminated": self.view.state["terminated"]}
        self.view.restart_count += 1
        self.view.will_restart = True

    # -- lifecycle: postStart, a changed definition ---------------------------------------
    async def _post_start(self, handle: ContainerHandle) -> None:
        """Run the postStart hook (the container still shows ContainerCreating); on failure
        the kubelet's FailedPostStartHook event, then the container is killed."""
        hook = (self.c.get("lifecycle") or {}).get("postStart")
        if not hook:
            return
        message = await hooks.run_post_start(hook, self.pod, self.c, netns=self.ctx.node_netns,
                                             pod_ip=self.pod_ip, exec_fn=self._exec)
        if message is None:
            return
        self.ctx.event(self.pod, "Warning", "FailedPostStartHook", message)
        self.ctx.event(self.pod, "Normal", "Killing", "FailedPostStartHook")
        await self.ctx.runtime.stop(handle, grace=self._grace())

    def redefine(self, container: Obj) -> None:
        """The pod's spec of this container changed (`kubectl set image`): as the kubelet
        does, kill it and start the new definition at once, restartCount + 1."""
        if container == self.c:
            return
        self.c = container
        self.view.image = container.get("image", "")
        if self.handle is None or self.stopping or not self.ctx.runtime.running(self.handle):
            return
        self._redefined = True
        self.ctx.event(self.pod, "Normal", "Killing", f"Container {self.c['name']} definition "
                       "changed, will be restarted")
        self._killing = asyncio.create_task(
            self.ctx.runtime.stop(self.handle, grace=self._grace()))

    # -- probes -------------------------------------------------------------------------
    def _start_probes(self) -> None:
        has_startup = bool(self.c.get("startupProbe"))
        self.view.started = not has_startup
        if not self.c.get("readinessProbe"):
            self.view.ready = not has_startup
        if has_startup:
            self._add_probe("startup", initial=False)
        else:
            self._start_after_startup()

    def _start_after_startup(self) -> None:
        if self.c.get("readinessProbe"):
            self._add_probe("readiness", initial=False)
        else:
            self.view.ready = True
        if self.c.get("livenessProbe"):
            self._add_probe("liveness", initial=True)

    def _add_probe(self, kind: str, *, initial: bool) -> None:
        probe = self.c[f"{kind}Probe"]
        try:
            check = make_check(probe, self.c, netns=self.ctx.node_netns, pod_ip=self.pod_ip,
                               exec_fn=self._exec)
        except ValueError as exc:
            self.ctx.event(self.pod, "Warning", "Unhealthy", f"{kind.capitalize()} probe: {exc}")
            return
        p = Prober(kind, probe, check, on_change=self._probe_changed, initial=initial,
                   on_report=self._probe_failing)
        self.probers[kind] = p
        p.start()

    def _probe_failing(self, kind: str, message: str) -> None:
        """A probe that has not passed yet failed once: an event, nothing killed."""
        self.ctx.event(self.pod, "Warning", "Unhealthy",
                       f"{kind.capitalize()} probe failed: {message}")
        self.changed()

    def _probe_changed(self, kind: str, ok: bool, message: str) -> None:
        if not ok and message:
            self.ctx.event(self.pod, "Warning", "Unhealthy",
                           f"{kind.capitalize()} probe failed: {message}")
        if kind == "readiness":
            self.view.ready = ok
        elif kind == "startup" and ok:
            self.view.started = True
            self.probers.pop("startup", None)
            self._start_after_startup()
        elif (kind == "liveness" or kind == "startup") and not ok and self.handle:
            self.ctx.event(self.pod, "Normal", "Killing", f"Container {self.c['name']} failed "
                           f"{kind} probe, will be restarted")
            self._killing = asyncio.create_task(
                self.ctx.runtime.stop(self.handle, grace=self._grace()))
        self.changed()

    async def _stop_probes(self) -> None:
        probers, self.probers = list(self.probers.values()), {}
        for p in probers:
            await p.stop()

    async def _exec(self, argv: list[str], timeout: float) -> tuple[int, bytes]:
        session = await self.ctx.runtime.exec(self.sandbox, argv, container=self.c["name"],
                                              stdin=False, tty=False)
        try:
            async def drain(read: Any) -> bytes:
                out = b""
                while chunk := await read():
                    out += chunk[:65536 - len(out)] if len(out) < 65536 else b""
                return out

            async def collect() -> tuple[int, bytes]:
                out, err = await asyncio.gather(drain(session.read_stdout),
                                                drain(session.read_stderr))
                return await session.wait(), out + err
            return await asyncio.wait_for(collect(), timeout)
        except TimeoutError:
            await session.kill()
            raise

    def _grace(self) -> float:
        return float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

    async def stop(self, *, grace: float) -> None:
        """Stop for good (pod deletion): no restart after this. As the kubelet does, the
        preStop hook runs first, and the grace period covers hook and SIGTERM together."""
        self.stopping = True
        await self._stop_probes()
        if self.handle and self.ctx.runtime.running(self.handle):
            self.ctx.event(self.pod, "Normal", "Killing", f"Stopping container {self.c['name']}")
            started = time.monotonic()
            await self._pre_stop(grace)
            left = max(grace - (time.monotonic() - started), 0.0)
            await self.ctx.runtime.stop(self.handle, grace=left)

    async def _pre_stop(self, grace: float) -> None:
        hook = (self.c.get("lifecycle") or {}).get("preStop")
        if not hook:
            return
        try:
            if "sleep" in hook:
                await asyncio.sleep(min(float(hook["sleep"].get("seconds", 0)), grace))
                return
            check = make_check({**hook, "timeoutSeconds": grace}, self.c,
                               netns=self.ctx.node_netns, pod_ip=self.pod_ip,
                               exec_fn=self._exec)
            ok, message = await asyncio.wait_for(check(), grace)
        except (TimeoutError, ValueError) as exc:
            ok, message = False, str(exc) or f"did not finish within {grace:g}s"
        if not ok:
            self.ctx.event(self.pod, "Warning", "FailedPreStopHook",
                           f"PreStopHook failed: {message}")
