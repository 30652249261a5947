"""The runtime's own records in a pod's directory, shared by the agent and the shim.

    pod_dir/resolv.conf, pod_dir/hosts     bind-mounted over /etc/* in every container
    pod_dir/mountpoints                    mount points the runtime had to create (removed)
    pod_dir/containers/NAME/N.spec         what instance N runs (marshal; written by the agent)
    pod_dir/containers/NAME/N.state        pid, its /proc start time, shim pid (by the shim)
    pod_dir/containers/NAME/N.exit         exit code, time, reason, message (by the shim)
    pod_dir/containers/NAME/N.log          CRI log lines (by the shim)

Records are `key=value` lines written atomically (temp file + rename): the shim imports
this module at start-up, so it stays stdlib-only and cheap. A pid is only trusted together
with its start time (field 22 of /proc/PID/stat), which a reused pid does not repeat.
"""

from __future__ import annotations

import os
import time

SIGKILL = 9  # Linux; not `signal.SIGKILL`: importing signal (enum) costs the shim ~10 ms
TRACE_ENV = "KNET_SHIM_TRACE"  # a file: each start phase appends "ns pid label" (profiling)
_trace_path = os.environ.get(TRACE_ENV, "")
_trace_fd = [-1]  # opened at the first mark, kept across forks


def mark(label: str) -> None:
    """Note the time of a start phase when profiling (KNET_SHIM_TRACE=FILE); else a no-op.
    CLOCK_MONOTONIC is the same in every process (and PID namespace) of the host; the fd
    stays valid after pivot_root and closes at the container's exec."""
    if not _trace_path:
        return
    if _trace_fd[0] < 0:
        _trace_fd[0] = os.open(_trace_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                               0o600)
    os.write(_trace_fd[0], f"{time.monotonic_ns()} {os.getpid()} {label}\n".encode())


def write_record(path: str | os.PathLike[str], fields: dict[str, str]) -> None:
    tmp = f"{os.fspath(path)}.tmp"
    body = "".join(f"{k}={v.replace(chr(10), ' ')}\n" for k, v in fields.items())
    with open(tmp, "w") as f:
        f.write(body)
    os.replace(tmp, path)


def read_record(path: str | os.PathLike[str]) -> dict[str, str] | None:
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of a process, None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(b")") + 2:].split()
    return fields[0].decode(), int(fields[19])


def alive(pid: int, start: int) -> bool:
    """True if `pid` is still the process that started at `start` and has not exited."""
    st = proc_stat(pid) if pid > 0 else None
    return st is not None and st[1] == start and st[0] not in ("Z", "X")


def kill_container(pid: int, mnt_ns: str) -> None:
    """Kill the rest of the container: its process group and, more surely, every process
    in its mount namespace (exec'd commands and daemons that left the group included)."""
    try:
        os.killpg(pid, SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if not mnt_ns.startswith("mnt:[") or mnt_ns == os.readlink("/proc/self/ns/mnt"):
        return  # never scan for the caller's own namespace (the host's)
    for _ in range(5):
        found = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/mnt") != mnt_ns:
                    continue
                os.kill(int(entry), SIGKILL)
                found = True
            except OSError:
                continue
        if not found:
            return
        time.sleep(0.01)
