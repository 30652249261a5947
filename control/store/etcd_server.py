"""`LocalEtcd`: one single-member etcd v3 on loopback, for tests and benchmarks.

It runs the system's `etcd` binary (Debian: etcd-server) on free loopback ports with its data
under a directory the caller owns, logs to `DIR/etcd.log`, and is stopped by its own pid only.
`restart()` keeps ports and data, as an operator's restart would.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path

from control.store.etcd import wait_ready


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def etcd_binary() -> str | None:
    return shutil.which("etcd") or (
        "/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else None)


class LocalEtcd:
    """Start with `await LocalEtcd.start(dir)`; `client` is HOST:PORT for `EtcdStore`."""

    def __init__(self, data_dir: Path, *, binary: str | None = None) -> None:
        found = binary or etcd_binary()
        if found is None:
            raise FileNotFoundError("etcd not found: install it (apt-get install etcd-server)")
        self.dir = data_dir
        self.client = f"127.0.0.1:{free_port()}"
        peer = f"http://127.0.0.1:{free_port()}"
        self.log = data_dir / "etcd.log"
        self.args = [found, "--name", "knet", "--data-dir", str(data_dir / "data"),
                     "--listen-client-urls", f"http://{self.client}",
                     "--advertise-client-urls", f"http://{self.client}",
                     "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                     "--initial-cluster", f"knet={peer}"]
        self.proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        pid = self.proc.pid if self.proc else None
        return f"<LocalEtcd {self.client} pid={pid} dir={self.dir}>"

    @classmethod
    async def start(cls, data_dir: Path, *, timeout: float = 20.0) -> LocalEtcd:
        etcd = cls(data_dir)
        await etcd.run(timeout=timeout)
        return etcd

    async def run(self, *, timeout: float = 20.0) -> None:
        """Start the process and wait until it serves; TimeoutError (with its log) if not."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            # Popen, not asyncio's: the server may outlive the loop that started it.
            self.proc = subprocess.Popen(  # noqa: ASYNC220
                self.args, stdout=out, stderr=subprocess.STDOUT)
        try:
            await wait_ready([self.client], timeout=timeout)
        except TimeoutError:
            await self.stop()
            tail = self.log.read_text(errors="replace")[-2000:]
            raise TimeoutError(f"etcd at {self.client} did not start in {timeout}s; its log "
                               f"{self.log} ends with:\n{tail}") from None

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)

    async def restart(self, *, timeout: float = 20.0) -> None:
        await self.stop()
        await self.run(timeout=timeout)
