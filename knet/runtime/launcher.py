"""Starting shims fast: one warm fork server (shim.py --server) per runtime.

The agent sends the server a spec path and the write end of a status pipe over a
SOCK_SEQPACKET socketpair; the server forks a shim that reports on that pipe (`pid`, then
`ok` or `err`). Forking a warm interpreter instead of exec'ing a new one per container cuts
a start from ~25-45 ms to a few ms. The server lives in its own session, exits when the
agent closes the socket or dies, and is started again on demand if it went away.
"""

from __future__ import annotations

import array
import asyncio
import logging
import os
import signal
import socket
from pathlib import Path

from knet.runtime import records
from knet.runtime.watch import pid_exited

log = logging.getLogger(__name__)
SHIM = str(Path(__file__).with_name("shim.py"))


class ShimLauncher:
    def __init__(self, *, python: str) -> None:
        self._python = python
        self._sock: socket.socket | None = None
        self._pid = 0
        self._start = 0

    def __repr__(self) -> str:
        return f"<ShimLauncher server pid={self._pid or None}>"

    def _ensure_server(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._pid = os.posix_spawn(
                self._python, [self._python, "-S", "-I", SHIM, "--server"], os.environ,
                setsid=True, file_actions=[(os.POSIX_SPAWN_DUP2, theirs.fileno(), 0)])
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._start = (records.proc_stat(self._pid) or ("", 0))[1]
        log.info("shim fork server started, pid %d", self._pid)
        self._sock = ours
        return ours

    def launch(self, spec_path: Path) -> int:
        """Ask for a shim for spec_path; returns the read end of its status pipe."""
        r, w = os.pipe()
        try:
            for attempt in (1, 2):
                sock = self._ensure_server()
                try:
                    sock.sendmsg([str(spec_path).encode()],
                                 [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [w]))])
                    return r
                except (BrokenPipeError, ConnectionResetError):
                    if attempt == 2:
                        raise
                    log.warning("shim fork server pid %d is gone; starting a new one", self._pid)
                    self._drop()
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._pid:
            _reap(self._pid)

    async def close(self) -> None:
        """Let the server go: it exits on EOF (its shims run on); then reap it."""
        pid, start = self._pid, self._start
        self._drop()
        self._pid = 0
        if not pid:
            return
        try:
            await asyncio.wait_for(pid_exited(pid, start), timeout=5)
        except TimeoutError:
            log.warning("shim fork server pid %d did not exit on EOF; killing it", pid)
            os.kill(pid, signal.SIGKILL)
            await asyncio.wait_for(pid_exited(pid, start), timeout=5)
        _reap(pid)


def _reap(pid: int) -> None:
    """Collect an exited child's status without blocking (no-op if it is not ours)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
