"""The container's side of the shim's fork (see shim.py): what runs in the child between
fork and exec. It enters the container's namespaces and root (shimns.py), waits for the
shim's go (its cgroups joined), starts a small init when the container is pid 1 of its PID
namespace, drops privileges and execs the command; a failure at any stage is reported to
the shim as `stage: message` with the exit code a runtime gives (127 not found, 126 not
executable). Stdlib-only and import-light, like the shim itself.
"""

from __future__ import annotations

import _signal as signal  # type: ignore[import-not-found]  # `signal` imports enum: +10 ms
import errno
import os
import sys

from knet.runtime import records, shimns

TYPE_CHECKING = False  # typing itself costs the shim ~5 ms: mypy alone takes this branch
if TYPE_CHECKING:
    from typing import Any

def _exec_message(argv0: str, exc: OSError) -> tuple[int, str]:
    if exc.errno == errno.ENOENT and "/" not in argv0:
        return 127, f'exec: "{argv0}": executable file not found in $PATH'
    if exc.errno == errno.ENOENT:
        return 127, f'exec: "{argv0}": stat {argv0}: no such file or directory'
    if exc.errno == errno.EACCES:
        return 126, f'exec: "{argv0}": permission denied'
    return 128, f'exec: "{argv0}": {os.strerror(exc.errno or 0)}'


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


def _failed(stage: list[str], spec: dict[str, Any], exc: BaseException,
            report_w: int) -> None:
    if isinstance(exc, OSError):
        code, msg = (_exec_message(spec["argv"][0], exc) if stage[0] == "exec"
                     else (128, f"{stage[0]}: {exc.strerror or exc}"
                                + (f" ({exc.filename})" if exc.filename else "")))
    else:
        code, msg = 128, f"{stage[0]}: {exc!r}"
    os.write(report_w, f"{code}\t{msg}".encode())
    os._exit(code)


def child(spec: dict[str, Any], out_w: int, err_w: int, report_w: int, go_r: int,
           con: Any = None) -> None:
    """In the forked child: set up the container; as its init (own PID namespace) fork
    the workload, else become it. Never returns."""
    stage = ["setup"]
    try:
        records.mark("child forked")
        if spec["namespaces"]:
            stage[0] = f"set up the namespaces of pod {spec['key']} (netns {spec['netns']})"
            shimns.enter(spec)
        records.mark("child namespaces+root done")
        if con is not None and con.tty:
            stage[0] = "open the container's terminal"
            sys.modules["knet.runtime.console"].open_terminal(con)
        if spec.get("pid_init") and con is None:
            os.setpgid(0, 0)  # its own group (signals); a session costs a sched autogroup
        else:
            os.setsid()
        if spec["workdir"]:
            stage[0] = f"chdir to workingDir {spec['workdir']}"
            os.chdir(spec["workdir"])
        stage[0] = "join the container's cgroups"
        if os.read(go_r, 1) != b"1":  # the shim moved us into them meanwhile (see main)
            os._exit(128)
        records.mark("child got go")
        os.close(go_r)
        if spec.get("pid_init") and con is None:
            _init(spec, out_w, err_w, report_w)
        if spec.get("pid_init"):
            stage[0] = "start the container's init"
            r2, w2 = os.pipe2(os.O_CLOEXEC)
            workload = os.fork()
            if workload == 0:
                os.close(r2)
                os.setsid()
                _become(spec, out_w, err_w, w2, con)
            os.close(w2)
            if con is not None:  # the init must not hold the workload's stdin open
                for fd in (con.child_fd, con.parent_fd):
                    if fd >= 0:
                        os.close(fd)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            for fd in (null, out_w, err_w):
                os.close(fd)
            shimns.init(workload, r2, report_w)
        _become(spec, out_w, err_w, report_w, con)
    except BaseException as exc:  # noqa: BLE001 - never return into the shim's code
        _failed(stage, spec, exc, report_w)
    finally:
        os._exit(128)


def _init(spec: dict[str, Any], out_w: int, err_w: int, report_w: int) -> None:
    """As pid 1 of the container's own PID namespace: take the container's privileges
    (bounding set, user), spawn its command (vfork + exec: no copy of this interpreter, and
    the exec's result is known at once, so the shim hears it with no relay) and be its
    init. Never returns."""
    stage = ["drop capabilities"]
    try:
        shimns.name_init()
        _privileges(spec, stage)
        null = os.open(os.devnull, os.O_RDONLY)
        stage[0] = "exec"
        records.mark("workload spawn")
        workload = shimns.spawn(spec["argv"], spec["env"], (null, out_w, err_w))
        records.mark("workload spawned")
    except BaseException as exc:  # never return into the shim's code
        _failed(stage, spec, exc, report_w)
        raise  # unreachable: _failed exits
    for fd in (null, out_w, err_w, report_w):  # report_w: EOF tells the shim it started
        os.close(fd)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    shimns.init(workload, -1, -1)


def _privileges(spec: dict[str, Any], stage: list[str]) -> None:
    if spec.get("caps") is not None:
        shimns.drop_caps(spec["caps"], spec["cap_last"])
    if spec["uid"] >= 0 or spec["gid"] >= 0:
        stage[0] = f"switch to user {spec['uid']} group {spec['gid']}"
        os.setgroups([])
        if spec["gid"] >= 0:
            os.setgid(spec["gid"])
        if spec["uid"] >= 0:
            os.setuid(spec["uid"])


def _become(spec: dict[str, Any], out_w: int, err_w: int, report_w: int,
            con: Any = None) -> None:
    """Drop privileges and exec the container's command. Never returns."""
    stage = ["drop capabilities"]
    try:
        _privileges(spec, stage)
        if spec["workdir"]:
            stage[0] = f"chdir to workingDir {spec['workdir']}"
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
        stage[0] = "exec"
        records.mark("workload exec")
        _execvpe(spec["argv"], spec["env"])
    except BaseException as exc:  # noqa: BLE001
        _failed(stage, spec, exc, report_w)
    finally:
        os._exit(128)
