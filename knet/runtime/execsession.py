"""`exec` sessions: a command in a running container's namespaces, over pipes or a pty.

The command is started as `nsenter --target PID --net --mount --uts --ipc --pid --wd --
setpriv ... -- ARGV` (util-linux), so it sees what the container sees: its network, its root
file system, its processes, its hostname and working directory; setpriv gives it the
container's user and capabilities and dies-with-nsenter (nsenter forks to enter the PID
namespace, so killing the session kills nsenter and its child with it). A tiny `sh` first
moves itself into the container's cgroups, so the container's limits cover exec'd commands.
With a tty it runs under `setsid --ctty` on the slave side of a new pty of the container's own
devpts (`container_pty`, so `tty` names its /dev/pts/N): stdout then carries the merged output, and resize sets the window size as `kubectl exec -it` does on SIGWINCH.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shlex
import signal
import struct
import termios
from collections.abc import Sequence

from knet.runtime.caps import setpriv_arg
from knet.runtime.watch import readable


def _code(rc: int) -> int:
    return 128 - rc if rc < 0 else rc


class PipeSession:
    """stdin/stdout/stderr as three pipes."""

    tty = False

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc

    def __repr__(self) -> str:
        return f"<ExecSession pid={self._proc.pid} pipes>"

    async def write_stdin(self, data: bytes) -> None:
        if self._proc.stdin is None:
            raise ValueError("exec session was opened without stdin")
        self._proc.stdin.write(data)
        try:
            await self._proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the command stopped reading; its exit code will tell

    async def close_stdin(self) -> None:
        if self._proc.stdin is not None and not self._proc.stdin.is_closing():
            self._proc.stdin.close()

    async def read_stdout(self, n: int = 65536) -> bytes:
        assert self._proc.stdout is not None
        return await self._proc.stdout.read(n)

    async def read_stderr(self, n: int = 65536) -> bytes:
        assert self._proc.stderr is not None
        return await self._proc.stderr.read(n)

    async def resize(self, *, cols: int, rows: int) -> None:
        return None  # no terminal to resize

    async def wait(self) -> int:
        return _code(await self._proc.wait())

    async def kill(self) -> None:
        if self._proc.returncode is None:
            self._proc.kill()
        await self._proc.wait()


class PtySession:
    """The command's stdin/stdout/stderr on a pty slave; we hold the master."""

    tty = True

    def __init__(self, proc: asyncio.subprocess.Process, master: int) -> None:
        self._proc = proc
        self._master = master
        os.set_blocking(master, False)

    def __repr__(self) -> str:
        return f"<ExecSession pid={self._proc.pid} tty>"

    async def write_stdin(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._master, view):]
            except BlockingIOError:
                await asyncio.sleep(0.01)
            except OSError:
                return  # the terminal is gone with the command

    async def close_stdin(self) -> None:
        await self.write_stdin(b"\x04")  # end of input on a terminal is ^D

    async def read_stdout(self, n: int = 65536) -> bytes:
        while self._master >= 0:
            try:
                return os.read(self._master, n)
            except BlockingIOError:
                await readable(self._master)
            except OSError:  # EIO: every holder of the slave side has gone
                self._close()
        return b""

    async def read_stderr(self, n: int = 65536) -> bytes:
        return b""

    async def resize(self, *, cols: int, rows: int) -> None:
        if self._master >= 0:
            fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    async def wait(self) -> int:
        return _code(await self._proc.wait())

    async def kill(self) -> None:
        if self._proc.returncode is None:
            self._proc.send_signal(signal.SIGKILL)
        await self._proc.wait()
        self._close()

    def _close(self) -> None:
        if self._master >= 0:
            os.close(self._master)
            self._master = -1


def enter_command(pid: int, argv: Sequence[str], *, user: tuple[int, int] = (-1, -1),
                  caps: Sequence[int] | None = None, cgroup_dirs: Sequence[str] = ()
                  ) -> list[str]:
    """The command line that runs argv in container process `pid`'s namespaces, as its
    (uid, gid) when set (>= 0), with only the capabilities `caps` (None: all)."""
    priv = ["setpriv", "--pdeathsig=KILL"]
    priv += [f"--bounding-set={setpriv_arg(caps)}"] if caps is not None else []
    priv += [f"--regid={user[1]}"] if user[1] >= 0 else []
    priv += [f"--reuid={user[0]}"] if user[0] >= 0 else []
    priv += ["--clear-groups"] if user[0] >= 0 or user[1] >= 0 else []
    cmd = ["nsenter", f"--target={pid}", "--net", "--mount", "--uts", "--ipc", "--pid",
           "--wd", "--", *priv, "--", *argv]
    if not cgroup_dirs:
        return cmd
    join = " && ".join(f"echo 0 > {shlex.quote(os.path.join(d, 'cgroup.procs'))}"
                       for d in cgroup_dirs)
    return ["sh", "-c", f'{join} && exec "$@"', "sh", *cmd]


TIOCSPTLCK, TIOCGPTPEER = 0x40045431, 0x5441


def container_pty(pid: int) -> tuple[int, int]:
    """A pty of the container's own devpts (its /dev/pts/N, so `tty` names it inside):
    the master opened through /proc/PID/root, the slave with TIOCGPTPEER (no path lookup
    in the host's view)."""
    master = os.open(f"/proc/{pid}/root/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))  # unlockpt
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    except BaseException:
        os.close(master)
        raise
    return master, slave


async def spawn_exec(pid: int, argv: list[str], *, env: dict[str, str], stdin: bool,
                     tty: bool, enter: bool = True, user: tuple[int, int] = (-1, -1),
                     caps: Sequence[int] | None = None, cgroup_dirs: Sequence[str] = ()
                     ) -> PipeSession | PtySession:
    """Start argv beside container process `pid` (in its namespaces if `enter`, see
    `enter_command`; else only in its working directory, for the unprivileged runtime)."""
    if enter:
        cmd = enter_command(pid, argv, user=user, caps=caps, cgroup_dirs=cgroup_dirs)
    else:
        cmd = ["env", "-C", os.readlink(f"/proc/{pid}/cwd"), "--", *argv]
    if not tty:
        proc = await asyncio.create_subprocess_exec(
            *cmd, env=env, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        return PipeSession(proc)
    master, slave = container_pty(pid) if enter else os.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            "setsid", "--ctty", *cmd, env={"TERM": "xterm", **env},
            stdin=slave, stdout=slave, stderr=slave)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return PtySession(proc, master)
