"""ProcessRuntime: containers as processes in a pod's namespaces, each watched by a shim.

`start` has a warm fork server (launcher.py) fork one shim per container instance (shim.py);
the shim forks the container into the pod's netns with its own mount + UTS namespaces, then
keeps its CRI log and exit record. The agent learns the start result from the shim's status
pipe and waits for exits on a pidfd, so an adopted container (after an agent restart) is
watched the same way as one it started.

Why this design (measured with `python -m bench containers` on 2 cores shared with other
work, load 4-7; ms per container from start() to the exit of `true`, one at a time / 30-100
at once): the log and the exit code must survive an agent restart, so something other than
the agent must be the container's parent and read its pipes: a shim. Exec'ing a fresh Python
shim per container cost 45-90 / 26-38 ms, even with a stdlib-only import set (ctypes.util,
`signal` and json would add ~25, 10 and 15 ms). Forking it from the warm server costs 12-32 /
10-15 ms, level with the util-linux chain `nsenter --net unshare --mount --uts sh -c ...`
(10-33 / 8-30 ms; it keeps no log and no exit code) and with fork+preexec_fn of the agent
itself (10-21 / 10-12 ms; unsafe in a threaded asyncio agent, and its children die with
it). 100 containers started at once took 0.8-1.5 s, within the 10 s budget for 100 pods;
each idle shim costs ~1 MB (PSS). `exec` uses `nsenter --target PID` (execsession.py).

Isolation: each container gets its own root (an overlay on the host's `/`, rootfs.py), a PID
namespace (its own, with a small init as pid 1, or with shareProcessNamespace the pod's, held
by a pause process, the hidden container `.pause`), the pod's IPC namespace (bind-mounted
at pod_dir/ipc by `unshare --ipc=FILE`), cgroups with its limits (cgroups.py) and Docker's
default capabilities (caps.py). This runtime builds the plan and the cgroups; the shim
carries them out (shimns.py). What it costs: the bench runs the pre-isolation runtime (git
08cd8ef) beside this one (one at a time / 50 at once, 2 cores shared with other work, load
1-9): it was 2.0-2.7x / 1.5-2.3x (medians 2.3x / 2.0x), now 1.3-2.1x / 1.6-1.9x (medians
1.7x / 1.7x); one at a time varies most, with other cgroup moves on the host. Where the time
went and what was done: the mount namespace's teardown waits for an RCU grace period (3-30
ms): the shim closes its status pipe once the exit record is written, the agent's watcher
returns on that, and only then is the namespace dropped. An overlay work dir on a journaled
disk cost 0.2-8 ms to make and a sync at unmount: roots live on a tmpfs per pod. The init
forked a copy of the interpreter for the command and relayed its start report: it now
spawns it (vfork + exec). What remains: ~30 mount calls for the root (~3 ms), moving the
container into a v1 cgroup (an RCU grace period, 6-20 ms when no move happened just before;
the shim does it while the child builds its root, so it shows only when it takes longer)
and the hops through the init.
"""

from __future__ import annotations

import asyncio
import logging
import marshal
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from knet.errors import RuntimeError_
from knet.runtime import cgroups, console, layout, records
from knet.runtime.base import (
    Attachment,
    ContainerExit,
    ContainerHandle,
    ContainerSpec,
    ContainerStartError,
    ExecSession,
    PodSandbox,
)
from knet.runtime.execsession import spawn_exec
from knet.runtime.launcher import ShimLauncher
from knet.runtime.logs import read_log
from knet.runtime.podfiles import (
    ensure_ipc_namespace,
    ensure_roots_tmpfs,
    prepare_pod_dir,
    remove_pod_files,
)
from knet.runtime.shimspec import PAUSE, ShimSpecs
from knet.runtime.watch import pid_exited, pipe_closed, read_pipe

log = logging.getLogger(__name__)


class ProcessRuntime:
    """The real runtime. One per agent; `close()` stops its watchers (not the containers)."""

    def __init__(self, *, python: str = sys.executable, start_timeout: float = 10.0,
                 namespaces: bool = True, log_max_bytes: int = 10 * 1024 * 1024,
                 hidden: Sequence[str] = (), cgroup_mounts: cgroups.Cgroups | None = None
                 ) -> None:
        """namespaces=False runs containers in the caller's namespaces (no root needed, no
        netns, hostname, DNS files, volumes, root file system or cgroups): the same runtime
        for unprivileged tests. A log past log_max_bytes is rotated to LOG.1 (kubelet:
        containerLogMaxSize). `hidden`: host paths containers must not see, besides /root,
        /home, /var/lib/knet and the state dir holding the pod dirs."""
        self._log_max_bytes = log_max_bytes
        self._launcher = ShimLauncher(python=python)
        self._start_timeout = start_timeout
        self._namespaces = namespaces
        self._watchers: dict[str, asyncio.Task[int]] = {}
        self._cgroups = cgroup_mounts or (cgroups.Cgroups.detect() if namespaces
                                          else cgroups.Cgroups(0, {}))
        self._specs = ShimSpecs(namespaces=namespaces, log_max_bytes=log_max_bytes,
                                hidden=list(hidden), cgroups=self._cgroups, python=python)
        self._pod_locks: dict[str, asyncio.Lock] = {}

    def __repr__(self) -> str:
        return f"<ProcessRuntime watching {len(self._watchers)} containers>"

    @property
    def namespaces(self) -> bool:
        """False for the unprivileged mode (containers in the caller's namespaces)."""
        return self._namespaces

    async def start(self, sandbox: PodSandbox, spec: ContainerSpec) -> ContainerHandle:
        records.mark("agent start")
        prepare_pod_dir(sandbox, spec, namespaces=self._namespaces)
        pidns = ""
        if self._namespaces:
            async with self._pod_locks.setdefault(sandbox.key, asyncio.Lock()):
                await ensure_ipc_namespace(sandbox.pod_dir)
                ensure_roots_tmpfs(sandbox.pod_dir)
                if spec.pid_target:
                    pidns = self._target_pidns(sandbox, spec)
                elif sandbox.share_pid:
                    pidns = await self._ensure_pause(sandbox)
        records.mark("agent pod ready")
        return await self._start(sandbox, spec, pidns=pidns)

    def _target_pidns(self, sandbox: PodSandbox, spec: ContainerSpec) -> str:
        """The PID namespace of the running container `spec.pid_target` (kubectl debug
        --target), or a start error naming it."""
        h = self._current(sandbox, spec.pid_target or "")
        if h is None:
            raise ContainerStartError(
                f"pod {sandbox.key}: container {spec.name!r}: its target container "
                f"{spec.pid_target!r} is not running, so there is no PID namespace to join",
                reason="CreateContainerError")
        return f"/proc/{h.pid}/ns/pid"

    async def _ensure_pause(self, sandbox: PodSandbox) -> str:
        """The pod's shared PID namespace, held by its pause process (started if needed)."""
        from knet.runtime import images

        h = self._current(sandbox, PAUSE)
        if h is None:
            spec = ContainerSpec(name=PAUSE, argv=images.resolve("registry.k8s.io/pause",
                                                                 None, None))
            prepare_pod_dir(sandbox, spec, namespaces=True)
            h = await self._start(sandbox, spec, pidns="")
        return f"/proc/{h.pid}/ns/pid"

    async def _start(self, sandbox: PodSandbox, spec: ContainerSpec, *,
                     pidns: str) -> ContainerHandle:
        if self._current(sandbox, spec.name) is not None:
            raise RuntimeError_(f"pod {sandbox.key}: container {spec.name!r} is already "
                                "running; stop it before starting it again")
        previous = layout.attempts(sandbox.pod_dir, spec.name)
        attempt = previous[-1] + 1 if previous else 0
        for n in previous[:-1]:  # about to be pruned: their cgroups go by their records
            self.cleanup_instance(layout.instance(sandbox.pod_dir, spec.name, n))
        layout.prune(sandbox.pod_dir, spec.name, keep_from=attempt - 1)
        inst = layout.instance(sandbox.pod_dir, spec.name, attempt)
        shim_spec = self._specs.build(sandbox, spec, inst, pidns=pidns)
        records.mark("agent spec+cgroups made")
        r = self._spawn_shim(shim_spec, inst)
        records.mark("agent launched")
        status = bytearray()
        try:
            if not await read_pipe(r, timeout=self._start_timeout, into=status,
                                   until=_reported):
                os.close(r)  # the shim ended (a failed start): nothing more to hear
                r = -1
        except BaseException as exc:
            os.close(r)
            if not isinstance(exc, TimeoutError):
                raise
            self._kill_shim(status)
            raise ContainerStartError(f"pod {sandbox.key}: container {spec.name!r} did not "
                                      f"start within {self._start_timeout:g} s") from None
        records.mark("agent status read")
        try:
            return self._started(sandbox, spec, inst, status.decode(errors="replace"),
                                 status_fd=r)
        except BaseException:
            if r >= 0:
                os.close(r)
            raise

    @staticmethod
    def _kill_shim(status: bytearray) -> None:
        first = status.split(b"\n", 1)[0].split(b"\t")
        if first[0] == b"pid" and len(first) == 2:
            os.kill(int(first[1]), signal.SIGKILL)

    def _started(self, sandbox: PodSandbox, spec: ContainerSpec, inst: layout.Instance,
                 status: str, *, status_fd: int) -> ContainerHandle:
        """The handle of a started container; its watcher takes over status_fd (-1: none)."""
        lines = dict(ln.split("\t", 1) for ln in status.splitlines() if "\t" in ln)
        if "err" in lines:
            code, msg = lines["err"].split("\t", 1)
            raise ContainerStartError(f"pod {sandbox.key}: container {spec.name!r}: {msg}",
                                      exit_code=int(code))
        handle = self._handle(sandbox, spec.name, inst)
        if "ok" not in lines or handle is None:
            raise ContainerStartError(f"pod {sandbox.key}: container {spec.name!r}: the shim "
                                      "failed before starting it; see the agent log")
        log.info("%s: started container %s attempt %d pid %d", sandbox.key, spec.name,
                 inst.attempt, handle.pid)
        self._watch(handle, status_fd=status_fd)
        return handle

    def _spawn_shim(self, shim_spec: dict[str, object], inst: layout.Instance) -> int:
        """Write the spec and have the fork server start its shim; the status pipe."""
        with open(inst.spec, "wb") as f:
            marshal.dump(shim_spec, f)
        return self._launcher.launch(inst.spec)

    def _handle(self, sandbox: PodSandbox, name: str,
                inst: layout.Instance) -> ContainerHandle | None:
        st = records.read_record(inst.state)
        if st is None:
            return None
        return ContainerHandle(
            id=f"{sandbox.key}/{name}/{inst.attempt}", name=name, pid=int(st["pid"]),
            started_at=float(st["started_at"]), log_path=inst.log, attempt=inst.attempt,
            pod_key=sandbox.key, pid_start=int(st["pid_start"]), shim_pid=int(st["shim_pid"]),
            shim_start=int(st["shim_start"]))

    # -- exits ---------------------------------------------------------------------------

    def _watch(self, handle: ContainerHandle, *, status_fd: int = -1) -> asyncio.Task[int]:
        task = self._watchers.get(handle.id)
        if task is not None and status_fd >= 0:
            os.close(status_fd)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._wait_exit(handle, status_fd))
            self._watchers[handle.id] = task

            def forget(t: asyncio.Task[int]) -> None:  # a later wait reads the exit record
                if self._watchers.get(handle.id) is t:
                    del self._watchers[handle.id]

            task.add_done_callback(forget)
        return task

    async def _wait_exit(self, handle: ContainerHandle, status_fd: int = -1) -> int:
        """The exit code: the shim closes its status pipe once the exit record is written
        (before it lets the container's mount namespace go, which can take a while); an
        adopted container has no pipe, so the shim's own exit tells."""
        ex = None
        if status_fd >= 0:
            try:
                await pipe_closed(status_fd)
            finally:
                os.close(status_fd)
            ex = self.last_exit(handle)
        if ex is not None:
            return ex.exit_code
        await pid_exited(handle.shim_pid, handle.shim_start)
        ex = self.last_exit(handle)
        if ex is None:  # the shim died without a record: wait for the container itself
            await pid_exited(handle.pid, handle.pid_start)
            ex = self.last_exit(handle)
        if ex is None:
            log.warning("%s: container %s attempt %d ended but its shim left no exit code; "
                        "reporting 137", handle.pod_key, handle.name, handle.attempt)
            return 137
        return ex.exit_code

    async def wait(self, handle: ContainerHandle) -> int:
        return await asyncio.shield(self._watch(handle))

    def running(self, handle: ContainerHandle) -> bool:
        return records.alive(handle.pid, handle.pid_start)

    def last_exit(self, handle: ContainerHandle) -> ContainerExit | None:
        rec = records.read_record(handle.log_path.with_suffix(".exit"))
        if rec is None:
            return None
        return ContainerExit(exit_code=int(rec["code"]), finished_at=float(rec["finished_at"]),
                             reason=rec.get("reason", "Error"), message=rec.get("message", ""))

    async def stop(self, handle: ContainerHandle, *, grace: float) -> int:
        """SIGTERM to the container's process group, SIGKILL after `grace` s; its exit code."""
        waiter = self._watch(handle)
        if self.running(handle):
            self._signal(handle, signal.SIGTERM)
            try:
                return await asyncio.wait_for(asyncio.shield(waiter), timeout=max(grace, 0))
            except TimeoutError:
                log.info("%s: container %s ignored SIGTERM for %g s; killing it",
                         handle.pod_key, handle.name, grace)
                self._signal(handle, signal.SIGKILL)
        return await asyncio.wait_for(asyncio.shield(waiter), timeout=30)

    def _signal(self, handle: ContainerHandle, sig: int) -> None:
        if self.running(handle):  # the start time check: never signal a reused pid
            try:
                os.killpg(handle.pid, sig)
            except ProcessLookupError:
                pass

    def latest(self, sandbox: PodSandbox, container_name: str) -> ContainerHandle | None:
        """The latest instance of a container, running or not (None if it never started):
        after an agent restart, `last_exit` of it tells how it ended while no one watched."""
        done = layout.attempts(sandbox.pod_dir, container_name)
        if not done:
            return None
        return self._handle(sandbox, container_name,
                            layout.instance(sandbox.pod_dir, container_name, done[-1]))

    def _current(self, sandbox: PodSandbox, name: str) -> ContainerHandle | None:
        h = self.latest(sandbox, name)
        return h if h is not None and self.running(h) else None

    def adopt(self, sandbox: PodSandbox, container_name: str) -> ContainerHandle | None:
        """The still-running latest instance of a container, from the records; else None."""
        h = self._current(sandbox, container_name)
        if h is not None and h.id not in self._watchers:
            log.info("%s: adopted container %s attempt %d pid %d", sandbox.key, container_name,
                     h.attempt, h.pid)
            self._watch(h)
        return h

    async def remove(self, sandbox: PodSandbox) -> None:
        """Kill every process of the pod's containers, then delete the files made for it."""
        waiters = []
        for name in layout.container_names(sandbox.pod_dir):
            for n in layout.attempts(sandbox.pod_dir, name):
                inst = layout.instance(sandbox.pod_dir, name, n)
                h = self._handle(sandbox, name, inst)
                if h is None:
                    continue
                if self.running(h):
                    st = records.read_record(inst.state) or {}
                    records.kill_container(h.pid, st.get("mnt_ns", ""))
                waiters.append(self._watch(h))
        if waiters:
            await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), timeout=30)
        for h_id in [k for k in self._watchers if k.startswith(sandbox.key + "/")]:
            self._watchers.pop(h_id)
        for name in layout.container_names(sandbox.pod_dir):
            for n in layout.attempts(sandbox.pod_dir, name):
                self.cleanup_instance(layout.instance(sandbox.pod_dir, name, n))
        self._pod_locks.pop(sandbox.key, None)
        self._cgroups.remove_parents()
        remove_pod_files(sandbox.pod_dir)
        log.info("%s: removed containers and files", sandbox.key)

    async def close(self) -> None:
        """Stop watching (the containers keep running, to be adopted by the next agent)."""
        for task in self._watchers.values():
            task.cancel()
        await asyncio.gather(*self._watchers.values(), return_exceptions=True)
        self._watchers.clear()
        await self._launcher.close()

    # -- logs and exec ------------------------------------------------------------------

    def read_logs(self, target: ContainerHandle | Path, *, follow: bool,
                  tail_lines: int | None = None, timestamps: bool = False,
                  previous: bool = False, since_ns: int | None = None,
                  limit_bytes: int | None = None) -> AsyncIterator[bytes]:
        """The log as `kubectl logs` prints it (knet.runtime.logs.read_log). Raises
        RuntimeError_ at once (before any iteration) when `previous` names no earlier one."""
        inst = layout.instance_of_log(target.log_path if isinstance(target, ContainerHandle)
                                      else Path(target))
        if previous:
            name = inst.log.parent.name
            if inst.attempt == 0 or not inst.log.with_name(f"{inst.attempt - 1}.log").exists():
                raise RuntimeError_(f'previous terminated container "{name}" not found')
            inst = layout.instance_of_log(inst.log.with_name(f"{inst.attempt - 1}.log"))
        st = records.read_record(inst.state) or {}
        shim = (int(st.get("shim_pid", 0)), int(st.get("shim_start", 0)))

        def done() -> bool:
            return inst.exit.exists() or not records.alive(*shim)

        return read_log(inst.log, follow=follow, tail_lines=tail_lines, timestamps=timestamps,
                        done=done, since_ns=since_ns, limit_bytes=limit_bytes)

    async def attach(self, handle: ContainerHandle) -> Attachment:
        """A client of the console the container's shim keeps (knet.runtime.console)."""
        try:
            return await console.attach(str(handle.log_path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise RuntimeError_(f"pod {handle.pod_key}: container {handle.name!r} has no "
                                "stdin or terminal to attach to; set stdin: true or tty: "
                                "true in its spec") from None

    async def exec(self, sandbox: PodSandbox, argv: Sequence[str], *, container: str,
                   stdin: bool, tty: bool, env: Mapping[str, str] | None = None) -> ExecSession:
        """Run argv in the container's namespaces (net, mount, UTS, IPC, PID), cgroups,
        user and capabilities, with its env and workdir."""
        h = self._current(sandbox, container)
        if h is None:
            raise RuntimeError_(f"pod {sandbox.key}: container {container!r} is not running; "
                                "exec needs a running container")
        spec = self._load_spec(layout.instance(sandbox.pod_dir, container, h.attempt))
        return await spawn_exec(h.pid, list(argv), env={**spec["env"], **(env or {})},
                                stdin=stdin, tty=tty, enter=self._namespaces,
                                user=(int(spec.get("uid", -1)), int(spec.get("gid", -1))),
                                caps=spec.get("caps"), cgroup_dirs=spec.get("cgroups") or ())

    def cleanup_instance(self, inst: layout.Instance) -> None:
        """Remove an ended instance's cgroups (by its record) if its shim could not."""
        try:
            spec = self._load_spec(inst)
        except (OSError, EOFError, ValueError):
            return
        left = cgroups.remove(spec.get("cgroups") or (), wait_s=0.2)
        if left:
            log.warning("cgroups %s still have processes; left in place", left)

    def usage(self, handle: ContainerHandle) -> dict[str, int]:
        """CPU (ns) and memory (bytes) a running container uses, from its cgroups."""
        spec = self._load_spec(layout.instance_of_log(handle.log_path))
        return cgroups.container_usage(spec.get("cgroups") or ())

    @staticmethod
    def _load_spec(inst: layout.Instance) -> dict[str, Any]:
        """What the instance was started with (the shim's spec: env, uid, gid, ...)."""
        with open(inst.spec, "rb") as f:
            spec: dict[str, Any] = marshal.load(f)
        return spec


def _reported(status: bytearray) -> bool:
    """The shim's status so far holds its start result (a whole `ok` or `err` line)."""
    return any(line.startswith((b"ok\t", b"err\t")) for line in status.split(b"\n")[:-1])
