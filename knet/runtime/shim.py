"""The per-container shim: starts one container instance and outlives the agent.

Forked by the fork server (`python -S -I shim.py --server`, see `serve` and launcher.py) into
a new session, stdout = a status pipe to the agent (`shim.py SPEC` runs one directly, for
debugging). It enters the container's PID namespace (a new one, or the pod's shared one)
and forks the container, which joins its cgroups, enters the pod's netns and IPC namespace,
builds its own root file system and pivots into it (shimns.py, rootfs.py), starts its own
session (so its pid is its process group), forks the command under a small init when it is
pid 1, drops capabilities and execs (that side of the fork: shimchild.py). The shim then frames the container's stdout/stderr into CRI log lines, and when
the container exits it kills what is left of it (its group and every process in its mount
namespace), writes the exit record and exits. Like containerd's shim, it is what lets a
container keep logging and have its exit code recorded while the agent restarts.
Stdlib-only and import-light, so that the server starts fast; the shims it forks share its
pages.
"""

from __future__ import annotations

import marshal
import os
import select
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from knet.runtime import cgroups, crilog, records, shimchild, shimns

TYPE_CHECKING = False  # typing itself costs the shim ~5 ms: mypy alone takes this branch
if TYPE_CHECKING:
    from typing import Any

# libc by hand (shimns.py) rather than knet.dataplane.nsutil: its ctypes.util.find_library
# pulls in subprocess and costs the shim ~25 ms at every container start.
IDLE_FLUSH_S = 0.3
DRAIN_S = 2.0


class Pump:
    """Reads the container's two pipes into CRI lines in the log file."""

    def __init__(self, log_fd: int, out_r: int, err_r: int, *, log_path: str,
                 max_bytes: int) -> None:
        self.log_fd = log_fd
        self.log_path = log_path
        self.max_bytes = max_bytes
        self.size = os.fstat(log_fd).st_size
        self.framers = {out_r: crilog.Framer(b"stdout"), err_r: crilog.Framer(b"stderr")}
        self.poller = select.poll()
        for fd in self.framers:
            os.set_blocking(fd, False)
            self.poller.register(fd, select.POLLIN)

    def step(self, timeout_s: float | None) -> bool:
        """Move what is readable (waiting at most timeout_s); False once both pipes ended."""
        ms = None if timeout_s is None else int(timeout_s * 1000)
        ready = self.poller.poll(ms)
        now = time.time_ns()
        for fd, _ in ready:
            if fd not in self.framers:
                continue
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            fr = self.framers[fd]
            if data:
                self.write(fr.feed(data, now))
            else:
                self.write(fr.flush(now, final=True))
                self.poller.unregister(fd)
                del self.framers[fd]
        if not ready:
            for fr in self.framers.values():
                self.write(fr.flush(now, final=False))
        return bool(self.framers)

    def write(self, lines: bytes) -> None:
        """Append whole CRI lines; past max_bytes, rotate to LOG.1 (as the kubelet rotates
        at containerLogMaxSize) so a chatty container cannot fill the disk."""
        if self.size + len(lines) <= self.max_bytes:
            os.write(self.log_fd, lines)
            self.size += len(lines)
            return
        for line in lines.split(b"\n")[:-1]:  # CRI lines: each ends with its newline
            if self.size and self.size + len(line) + 1 > self.max_bytes:
                os.close(self.log_fd)
                os.replace(self.log_path, self.log_path + ".1")
                self.log_fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                                      0o644)
                self.size = 0
            os.write(self.log_fd, line + b"\n")
            self.size += len(line) + 1

    def pending(self) -> bool:
        return any(fr.pending for fr in self.framers.values())


def _report(text: str) -> None:
    try:
        os.write(1, text.encode())
    except OSError:
        pass  # the agent went away; the records tell it later


def _fail(spec: dict[str, Any], log_fd: int, pid: int, report: bytes) -> int:
    if pid:
        os.waitpid(pid, 0)
    cgroups.remove(spec.get("cgroups") or ())
    code_s, msg = report.decode(errors="replace").split("\t", 1)
    line = f'knet: failed to start container "{spec["name"]}": {msg}'.encode()
    ts = crilog.format_time(time.time_ns())
    os.write(log_fd, crilog.cri_line(ts, b"stderr", False, line))
    records.write_record(spec["exit"], {
        "code": code_s, "finished_at": repr(time.time()), "reason": "StartError",
        "message": msg})
    _report(f"err\t{code_s}\t{msg}\n")
    return 0


def _supervise(spec: dict[str, Any], pid: int, log_fd: int, out_r: int, err_r: int) -> int:
    started = time.time()
    try:  # the open fd keeps the ns id from being reused while we may scan for it
        ns_fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
        mnt_ns = os.readlink(f"/proc/self/fd/{ns_fd}")
    except FileNotFoundError:  # exited already: its group is all we can still name
        ns_fd, mnt_ns = -1, ""
    st = records.proc_stat(pid)
    me = records.proc_stat(os.getpid())
    records.write_record(spec["state"], {
        "pid": str(pid), "pid_start": str(st[1] if st else 0), "shim_pid": str(os.getpid()),
        "shim_start": str(me[1] if me else 0), "started_at": repr(started), "mnt_ns": mnt_ns})
    _report(f"ok\t{started!r}\n")
    records.mark("shim reported ok")
    pump = Pump(log_fd, out_r, err_r, log_path=spec["log"], max_bytes=spec["log_max_bytes"])
    pidfd = os.pidfd_open(pid)
    pump.poller.register(pidfd, select.POLLIN)
    while True:
        pump.step(IDLE_FLUSH_S if pump.pending() else None)
        if select.select([pidfd], [], [], 0)[0]:
            break
    # while the leader is a zombie (its pid is not reused). Its own PID namespace died with
    # its init (the kernel killed the rest); a shared one did not: its mount namespace
    # then names what is left
    records.mark("shim saw exit")
    records.kill_container(pid, "" if spec.get("pid_init") else mnt_ns)
    _, status = os.waitpid(pid, 0)
    records.mark("shim reaped")
    if not spec.get("pid_ns"):  # in a PID namespace, orphans go to its init, never to us
        _kill_orphans(pid)
    records.mark("shim orphans killed")
    code = os.waitstatus_to_exitcode(status)
    code = 128 - code if code < 0 else code
    pump.poller.unregister(pidfd)
    deadline = time.monotonic() + DRAIN_S
    while pump.framers and time.monotonic() < deadline:  # output still in the pipes
        pump.step(max(0.0, deadline - time.monotonic()))
    reason = "Completed" if code == 0 else "Error"
    if code and spec.get("cgroups") and cgroups.oom_kills(spec["cgroups"]):
        reason = "OOMKilled"
    records.mark("shim drained")
    records.write_record(spec["exit"], {
        "code": str(code), "finished_at": repr(time.time()), "reason": reason, "message": ""})
    cgroups.remove(spec.get("cgroups") or ())  # its root (N.root) goes with its files
    records.mark("shim cgroups removed")
    # closing the status pipe tells the agent the exit record is there (see process.py);
    # only then drop the mount namespace: its teardown waits for an RCU grace period
    # (3-30 ms on a busy host), which the agent need not wait for
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    if ns_fd >= 0:
        os.close(ns_fd)
    return 0


def _kill_orphans(pgid: int) -> None:
    """Kill what the container left behind that reparented to us (we are a subreaper):
    daemons that left its group, without needing its mount namespace to find them.
    Reparenting happens as the killed group dies, so wait for that first (at most 1 s)."""
    for _ in range(200):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        _reap_children()
        time.sleep(0.005)
    me = str(os.getpid()).encode()
    for _ in range(20):
        kids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    raw = f.read()
            except OSError:
                continue
            if raw[raw.rindex(b")") + 2:].split()[1] == me:
                kids.append(int(entry))
        for kid in kids:
            try:
                os.kill(kid, records.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            return
        if not kids:
            return
        time.sleep(0.01)


def main(spec_path: str) -> int:
    records.mark("shim main")
    _report(f"pid\t{os.getpid()}\n")
    shimns.set_subreaper()
    with open(spec_path, "rb") as f:
        spec: dict[str, Any] = marshal.load(f)
    log_fd = os.open(spec["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    con = None
    if spec.get("stdin") or spec.get("tty"):  # imported only then: the shim stays light
        from knet.runtime import console
        con = console.prepare(spec)
        if con is not None:
            console.start(con, out_w)      # threads: before unshare(CLONE_NEWPID) forbids them
    if spec.get("pid_ns"):
        try:
            shimns.enter_pid_namespace(spec)
        except OSError as exc:
            return _fail(spec, log_fd, 0, f"128\tset up the PID namespace: {exc}".encode())
    records.mark("shim pid ns entered")
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(go_w)
        shimchild.child(spec, out_w, err_w, report_w, go_r, con)
    if con is not None:
        console.forked(con)
    for fd in (out_w, err_w, report_w, go_r):
        os.close(fd)
    if not _join_cgroups(spec, pid, go_w):
        return _fail(spec, log_fd, pid, b"128\tjoin the container's cgroups: " +
                     f"{spec.get('cgroups')}: cannot write cgroup.procs".encode())
    if con is not None and con.tty:
        console.receive_terminal(con)
    records.mark("shim joined cgroups")
    chunks = []
    while chunk := os.read(report_r, 4096):
        chunks.append(chunk)
    records.mark("shim report EOF")
    if chunks:
        return _fail(spec, log_fd, pid, b"".join(chunks))
    return _supervise(spec, pid, log_fd, out_r, err_r)


def _join_cgroups(spec: dict[str, Any], pid: int, go_w: int) -> bool:
    """Move the child into its cgroups while it builds its root, then let it go on. (A
    move into a v1 hierarchy waits for an RCU grace period, 10-20 ms: in parallel, not in
    line.) False, with the child killed, if that failed."""
    try:
        cgroups.join(spec.get("cgroups") or (), pid=pid)
    except OSError:
        os.kill(pid, records.SIGKILL)
        os.close(go_w)
        return False
    try:
        os.write(go_w, b"1")
    except BrokenPipeError:
        pass  # it failed before; its report says why
    os.close(go_w)
    return True


def _reap_children() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def _set_comm(name: str) -> None:
    """Name this process for `ps -o comm` / `top` (the kernel keeps 15 characters)."""
    with open("/proc/self/comm", "w") as f:
        f.write(name)


def _fork_shim(spec_path: str, status_fd: int, server_fd: int) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.close(server_fd)
        _set_comm("knet-shim")
        os.setsid()
        os.dup2(status_fd, 1)
        os.close(status_fd)
        null = os.open(os.devnull, os.O_RDONLY)  # lands on 0, the server's socket's number
        if null != 0:
            os.dup2(null, 0)
            os.close(null)
        code = main(spec_path)
    except BaseException:  # noqa: BLE001 - a shim must never return into the server loop
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def serve() -> int:
    """Fork-server mode: fd 0 is a SOCK_SEQPACKET socket from the agent; each message is a
    spec path with the write end of a status pipe attached (SCM_RIGHTS). Forking this warm,
    single-threaded process per container skips the interpreter start (~20-40 ms). Exits
    when the agent closes its end; the shims it forked run on in their own sessions."""
    import socket  # only here: the server pays it once

    server = socket.socket(fileno=0)
    _set_comm("knet-shim-srv")
    fd_size = socket.CMSG_SPACE(4)
    while True:
        ready = select.select([server], [], [], 0.5)[0]
        _reap_children()
        if not ready:
            continue
        msg, anc, _, _ = server.recvmsg(4096, fd_size)
        if not msg:
            return 0
        fds = [int.from_bytes(data[:4], sys.byteorder) for lvl, typ, data in anc
               if lvl == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS]
        if fds:
            _fork_shim(msg.decode(), fds[0], server.fileno())
            os.close(fds[0])


if __name__ == "__main__":
    # no interpreter teardown: the agent waits on our exit
    os._exit(serve() if sys.argv[1] == "--server" else main(sys.argv[1]))
