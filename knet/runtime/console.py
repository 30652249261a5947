"""A container's stdin (`stdin: true`) or terminal (`tty: true`), kept by its shim for attach.

The shim makes a pipe (or a pty) before forking the container and keeps the writing end (or
the master), so `sh` with `stdin: true` waits for input instead of exiting on /dev/null. It
listens on a unix socket next to the instance's log (`N.attach`, 0600, root only), where each
attach client sends frames: a type byte (0 stdin, 4 resize as JSON {"Width","Height"}, 255
close stdin), a 4-byte length, the payload. With `stdinOnce` the stdin closes when the first
client closes it or leaves, as the kubelet does; without, it stays open for the next client. A terminal's output is copied into the stdout pipe the
shim already frames into the CRI log; attach clients read it from the log.

The terminal is a pty of the container's own devpts (mounted in its root, rootfs.py), so
`tty` inside prints a /dev/pts/N that its /dev shows: the container's process opens it once
its root is built (`open_terminal`: the master from /dev/ptmx, the slave by TIOCGPTPEER) and
hands the master to the shim over a socketpair (SCM_RIGHTS); the shim's threads, started
before it entered the PID namespace, wait for it.

Shim side (`prepare`, `open_terminal`, `child`, `start`, `forked`) uses the stdlib only,
threads via `_thread`, to keep the shim light; `attach` is the agent's side (the runtime's
`attach`, ProcessRuntime).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DATA, RESIZE, CLOSE = 0, 4, 255


def socket_path(log_path: str) -> str:
    return log_path[:-4] + ".attach" if log_path.endswith(".log") else log_path + ".attach"


class Console:
    """child_fd: the container's end (pipe reader or pty slave); parent_fd: the shim's (pipe
    writer or pty master; -1 until the container hands the master over). `ready` is held
    until parent_fd is known (or known to be missing)."""

    def __init__(self, tty: bool, child_fd: int, parent_fd: int, path: str, once: bool) -> None:
        import _thread

        self.tty, self.child_fd, self.parent_fd = tty, child_fd, parent_fd
        self.path, self.once, self.closed = path, once, False
        self.ready = _thread.allocate_lock()
        self.handoff: tuple[int, int] = (-1, -1)   # (shim's end, container's end)
        if tty:
            import socket

            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            self.handoff = (a.detach(), b.detach())
            self.ready.acquire()


def prepare(spec: dict[str, Any]) -> Console | None:
    """Before the fork: the stdin pipe, or the way a terminal's master will come back."""
    if not spec.get("stdin") and not spec.get("tty"):
        return None
    child, parent = (-1, -1) if spec.get("tty") else os.pipe()
    return Console(bool(spec.get("tty")), child, parent, socket_path(spec["log"]),
                   bool(spec.get("stdin_once")))


TIOCSPTLCK, TIOCGPTPEER = 0x40045431, 0x5441


def open_terminal(con: Console) -> None:
    """In the container's process, its root built: a pty of its own devpts; the slave
    stays (child_fd), the master goes to the shim."""
    import fcntl
    import socket
    import struct

    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))  # unlockpt
    con.child_fd = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    sock = socket.socket(fileno=con.handoff[1])
    socket.send_fds(sock, [b"m"], [master])
    sock.close()
    os.close(master)
    os.close(con.handoff[0])


def receive_terminal(con: Console) -> None:
    """In the shim after the fork: take the master the container sends (none if it failed
    first: then parent_fd stays -1) and let the console's threads go."""
    import socket

    os.close(con.handoff[1])    # the container's end: its exit then ends our wait
    sock = socket.socket(fileno=con.handoff[0])
    try:
        _, fds, _, _ = socket.recv_fds(sock, 1, 1)
        con.parent_fd = fds[0] if fds else -1
    except OSError:
        pass
    finally:
        sock.close()
        con.ready.release()


def child(con: Console) -> None:
    """In the container (after setsid): stdin (and with a tty, stdout/stderr and the
    controlling terminal) from the console."""
    os.dup2(con.child_fd, 0)
    if con.tty:
        import fcntl
        import termios

        os.dup2(con.child_fd, 1)
        os.dup2(con.child_fd, 2)
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def start(con: Console, out_w: int) -> None:
    """In the shim, before it enters the container's PID namespace (a process that did
    unshare(CLONE_NEWPID) can no longer start threads) and before the fork: serve attach
    clients; copy a terminal's output to out_w. `forked` follows the fork."""
    import _thread
    import socket

    with_out = os.dup(out_w) if con.tty else -1
    try:
        os.unlink(con.path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dir_fd = os.open(os.path.dirname(con.path), os.O_RDONLY)
    old = os.umask(0o177)
    try:  # through /proc/self/fd: the state dir may be longer than a sun_path allows
        listener.bind(f"/proc/self/fd/{dir_fd}/{os.path.basename(con.path)}")
    finally:
        os.umask(old)
        os.close(dir_fd)
    listener.listen(4)
    if con.tty:
        _thread.start_new_thread(_copy_out, (con, with_out))
    _thread.start_new_thread(_serve, (con, listener))


def forked(con: Console) -> None:
    """In the shim after the fork: the container's end belongs to the container alone."""
    if con.child_fd >= 0:
        os.close(con.child_fd)


def _copy_out(con: Console, out_w: int) -> None:
    with con.ready:
        master = con.parent_fd
    while master >= 0:
        try:
            data = os.read(master, 65536)
        except OSError:       # EIO: the terminal's last user has gone
            data = b""
        if not data:
            os.close(out_w)
            return
        os.write(out_w, data)
    os.close(out_w)


def _serve(con: Console, listener: Any) -> None:
    with con.ready:
        pass
    while not con.closed and con.parent_fd >= 0:
        conn, _ = listener.accept()
        try:
            _client(con, conn)
        except OSError:
            pass
        finally:
            conn.close()
        if con.once:
            _close_stdin(con)


def _client(con: Console, conn: Any) -> None:
    import json

    f = conn.makefile("rb")
    while head := f.read(5):
        if len(head) < 5:
            return
        payload = f.read(int.from_bytes(head[1:5], "big"))
        if head[0] == DATA and not con.closed:
            os.write(con.parent_fd, payload)
        elif head[0] == RESIZE and con.tty:
            import fcntl
            import struct
            import termios

            size = json.loads(payload or b"{}")
            fcntl.ioctl(con.parent_fd, termios.TIOCSWINSZ, struct.pack(
                "HHHH", int(size.get("Height", 24)), int(size.get("Width", 80)), 0, 0))
        elif head[0] == CLOSE and con.once:     # without stdinOnce, stdin outlives clients
            _close_stdin(con)


def _close_stdin(con: Console) -> None:
    if con.closed:
        return
    if con.tty:
        os.write(con.parent_fd, b"\x04")     # end of input on a terminal is ^D
        return
    con.closed = True
    os.close(con.parent_fd)


def frame(kind: int, payload: bytes) -> bytes:
    return bytes([kind]) + len(payload).to_bytes(4, "big") + payload


class Attachment:
    """The agent's side of one attach client (Runtime.attach): input, close and resizes
    go to the container's console as frames."""

    def __init__(self, reader: Any, writer: Any) -> None:
        self._reader, self._writer = reader, writer

    def __repr__(self) -> str:
        return f"<Attachment {'closed' if self._writer.is_closing() else 'open'}>"

    async def _send(self, kind: int, payload: bytes) -> None:
        self._writer.write(frame(kind, payload))
        await self._writer.drain()

    async def write_stdin(self, data: bytes) -> None:
        await self._send(DATA, data)

    async def close_stdin(self) -> None:
        """End of input (honoured with stdinOnce; without, stdin outlives its clients)."""
        await self._send(CLOSE, b"")

    async def resize(self, *, cols: int, rows: int) -> None:
        import json

        await self._send(RESIZE, json.dumps({"Width": cols, "Height": rows}).encode())

    async def close(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except OSError:
            pass


async def attach(log_path: str) -> Attachment:
    """An Attachment to a running instance's console; FileNotFoundError (or
    ConnectionRefusedError) when the container has no stdin or tty."""
    return Attachment(*await connect(log_path))


async def connect(log_path: str) -> Any:
    """The agent's side: (reader, writer) to a running instance's console, or
    FileNotFoundError when the container has no stdin or tty."""
    import asyncio

    path = socket_path(log_path)
    dir_fd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        return await asyncio.open_unix_connection(
            f"/proc/self/fd/{dir_fd}/{os.path.basename(path)}")
    finally:
        os.close(dir_fd)
