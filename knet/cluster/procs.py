"""Background processes knet starts, recorded by pid *and* start time so that a stop never
hits a recycled pid, and stopped by that record only (never by name pattern).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


def start_time(pid: int) -> int | None:
    """The kernel's start time of pid (clock ticks since boot), or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name may contain spaces and parentheses: split after the last ')'
    fields = raw[raw.rindex(")") + 2:].split()
    if fields[0] == "Z":  # a zombie is gone for our purposes
        return None
    return int(fields[19])


@dataclass(frozen=True)
class ProcRecord:
    """A process knet started: what it is, its pid and the start time that pins the pid."""
    role: str
    pid: int
    started: int
    log: str

    def alive(self) -> bool:
        return start_time(self.pid) == self.started

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ProcRecord:
        return cls(role=str(raw["role"]), pid=int(raw["pid"]), started=int(raw["started"]),
                   log=str(raw.get("log", "")))


def spawn(role: str, argv: list[str], *, log: Path, env: dict[str, str] | None = None) -> ProcRecord:
    """Start argv in the background, in its own session, stdout+stderr appended to log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {})})
    started = start_time(proc.pid)
    if started is None:
        proc.wait()
        raise RuntimeError(f"{role} exited at once with code {proc.returncode}; see {log}")
    # The record is the handle: when this process exits the child is re-parented to init;
    # while it lives, stop() reaps it (see _reap).
    return ProcRecord(role=role, pid=proc.pid, started=started, log=str(log))


def adopt(role: str, pid: int, *, log: Path, argv_has: tuple[str, ...]) -> ProcRecord | None:
    """A record for a running process knet did not start itself (e.g. a `knet control`
    started by hand), if pid lives and its command line holds every string in argv_has."""
    started = start_time(pid)
    if started is None:
        return None
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    words = {a.decode(errors="replace") for a in argv}
    if not all(any(want == w or w.endswith(want) for w in words) for want in argv_has):
        return None
    return ProcRecord(role=role, pid=pid, started=started, log=str(log))


def _reap(pid: int) -> None:
    """Collect pid's exit status if it is our child (else the kernel's init does)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop(rec: ProcRecord, *, grace: float = 10.0) -> bool:
    """SIGTERM the recorded process, SIGKILL after grace; True if it was running."""
    if not rec.alive():
        _reap(rec.pid)
        return False
    _signal(rec, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(rec.pid)
        if not rec.alive():
            return True
        time.sleep(0.05)
    _signal(rec, signal.SIGKILL)
    for _ in range(100):
        _reap(rec.pid)
        if not rec.alive():
            break
        time.sleep(0.02)
    return True


def _signal(rec: ProcRecord, sig: int) -> None:
    if rec.alive():
        try:
            os.kill(rec.pid, sig)
        except ProcessLookupError:
            pass
