"""The per-container shim: starts one container instance and outlives the agent.

Forked by the fork server (`python -S -I shim.py --server`, see `serve` and launcher.py) into
a new session, stdout = a status pipe to the agent (`shim.py SPEC` runs one directly, for
debugging). It forks the container, which enters the pod's netns, unshares mount + UTS
namespaces, makes / private, bind-mounts the pod's resolv.conf, hosts, hostname and the volumes, sets
the hostname, starts its own session (so its pid is its process group) and execs the
command. The shim then frames the container's stdout/stderr into CRI log lines, and when
the container exits it kills what is left of it (its group and every process in its mount
namespace), writes the exit record and exits. Like containerd's shim, it is what lets a
container keep logging and have its exit code recorded while the agent restarts.
Stdlib-only and import-light, so that the server starts fast; the shims it forks share its
pages.
"""

from __future__ import annotations

import _signal as signal  # type: ignore[import-not-found]  # `signal` imports enum: +10 ms
import ctypes
import errno
import marshal
import os
import select
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from knet.runtime import crilog, records

TYPE_CHECKING = False  # typing itself costs the shim ~5 ms: mypy alone takes this branch
if TYPE_CHECKING:
    from typing import Any

# libc by hand rather than knet.dataplane.nsutil: its ctypes.util.find_library pulls in
# subprocess and costs the shim ~25 ms at every container start.
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWNET = 0x00020000, 0x04000000, 0x40000000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


def _call(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str, dst: str, flags: int) -> None:
    _call(_libc.mount(src.encode(), dst.encode(), None, ctypes.c_ulong(flags), None),
          f"mount {src} on {dst}")

IDLE_FLUSH_S = 0.3
DRAIN_S = 2.0


def _bind(src: str, dst: str, *, read_only: bool) -> None:
    _mount(src, dst, MS_BIND | MS_REC)
    if read_only:
        _mount("none", dst, MS_REMOUNT | MS_BIND | MS_RDONLY)


def _exec_message(argv0: str, exc: OSError) -> tuple[int, str]:
    if exc.errno == errno.ENOENT and "/" not in argv0:
        return 127, f'exec: "{argv0}": executable file not found in $PATH'
    if exc.errno == errno.ENOENT:
        return 127, f'exec: "{argv0}": stat {argv0}: no such file or directory'
    if exc.errno == errno.EACCES:
        return 126, f'exec: "{argv0}": permission denied'
    return 128, f'exec: "{argv0}": {os.strerror(exc.errno or 0)}'


def _enter(spec: dict[str, Any]) -> None:
    if not spec["namespaces"]:
        return  # an unprivileged runtime: the caller's namespaces as they are
    fd = os.open(f"/run/netns/{spec['netns']}", os.O_RDONLY)
    _call(_libc.setns(fd, CLONE_NEWNET), f"setns {spec['netns']}")
    os.close(fd)
    _call(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare mount+uts")
    _mount("none", "/", MS_REC | MS_PRIVATE)
    _bind(spec["resolv"], "/etc/resolv.conf", read_only=False)
    _bind(spec["hosts"], "/etc/hosts", read_only=False)
    if os.path.exists("/etc/hostname"):
        _bind(spec["hostname_file"], "/etc/hostname", read_only=False)
    for src, dst, ro in spec["mounts"]:
        _bind(src, dst, read_only=ro)
    name = spec["hostname"].encode()
    _call(_libc.sethostname(name, ctypes.c_size_t(len(name))), f"sethostname {spec['hostname']}")


def _execvpe(argv: list[str], env: dict[str, str]) -> None:
    """execvp(3) by hand: os.execvpe imports `warnings` on the way, which fails once we
    run as a user who cannot read the interpreter's library directory."""
    if "/" in argv[0]:
        os.execve(argv[0], argv, env)
    denied: OSError | None = None
    for d in env.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(":"):
        try:
            os.execve(os.path.join(d or ".", argv[0]), argv, env)
        except PermissionError as exc:
            denied = exc
        except (FileNotFoundError, NotADirectoryError):
            pass
    raise denied or FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv[0])


def _child(spec: dict[str, Any], out_w: int, err_w: int, report_w: int,
           con: Any = None) -> None:
    """In the forked child: become the container. Never returns."""
    stage = "setup"
    try:
        stage = f"set up the namespaces of pod {spec['key']} (netns {spec['netns']})"
        _enter(spec)
        os.setsid()
        if spec["uid"] >= 0 or spec["gid"] >= 0:
            stage = f"switch to user {spec['uid']} group {spec['gid']}"
            os.setgroups([])
            if spec["gid"] >= 0:
                os.setgid(spec["gid"])
            if spec["uid"] >= 0:
                os.setuid(spec["uid"])
        if spec["workdir"]:
            stage = f"chdir to workingDir {spec['workdir']}"
            os.chdir(spec["workdir"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        if con is not None:  # stdin: true / tty: true (knet.runtime.console)
            sys.modules["knet.runtime.console"].child(con)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        stage = "exec"
        _execvpe(spec["argv"], spec["env"])
    except OSError as exc:
        code, msg = (_exec_message(spec["argv"][0], exc) if stage == "exec"
                     else (128, f"{stage}: {exc.strerror or exc}"
                                + (f" ({exc.filename})" if exc.filename else "")))
        os.write(report_w, f"{code}\t{msg}".encode())
        os._exit(code)
    except BaseException as exc:  # noqa: BLE001 - never return into the shim's code
        os.write(report_w, f"128\t{stage}: {exc!r}".encode())
    finally:
        os._exit(128)


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
    os.waitpid(pid, 0)
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
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    pump = Pump(log_fd, out_r, err_r, log_path=spec["log"], max_bytes=spec["log_max_bytes"])
    pidfd = os.pidfd_open(pid)
    pump.poller.register(pidfd, select.POLLIN)
    while True:
        pump.step(IDLE_FLUSH_S if pump.pending() else None)
        if select.select([pidfd], [], [], 0)[0]:
            break
    records.kill_container(pid, mnt_ns)  # while the leader is a zombie: its pid is not reused
    _, status = os.waitpid(pid, 0)
    _kill_orphans(pid)
    code = os.waitstatus_to_exitcode(status)
    code = 128 - code if code < 0 else code
    if ns_fd >= 0:
        os.close(ns_fd)
    pump.poller.unregister(pidfd)
    deadline = time.monotonic() + DRAIN_S
    while pump.framers and time.monotonic() < deadline:  # output still in the pipes
        pump.step(max(0.0, deadline - time.monotonic()))
    records.write_record(spec["exit"], {
        "code": str(code), "finished_at": repr(time.time()),
        "reason": "Completed" if code == 0 else "Error", "message": ""})
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
    _report(f"pid\t{os.getpid()}\n")
    _call(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")
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
    pid = os.fork()
    if pid == 0:
        _child(spec, out_w, err_w, report_w, con)
    if con is not None:
        console.start(con, out_w)
    for fd in (out_w, err_w, report_w):
        os.close(fd)
    chunks = []
    while chunk := os.read(report_r, 4096):
        chunks.append(chunk)
    if chunks:
        return _fail(spec, log_fd, pid, b"".join(chunks))
    return _supervise(spec, pid, log_fd, out_r, err_r)


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
        null = os.open(os.devnull, os.O_RDONLY)
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
