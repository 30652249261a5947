"""A pcap file writer (the classic libpcap format, nanosecond timestamps, Ethernet) that
never passes off a half file as complete.

Packets go to `NAME.part-XXXX` in the target's directory; `commit()` flushes, fsyncs and
renames it to NAME in one step, `abort()` removes it. A full disk (or any write error)
raises `PcapError` naming the file and the cause, after removing the temporary file, so a
file at NAME is always one that was finished.
"""

from __future__ import annotations

import errno
import os
import struct
import tempfile
from pathlib import Path
from typing import BinaryIO

from knet.errors import KnetError

__all__ = ["MAGIC_NS", "PcapError", "PcapWriter"]

MAGIC_NS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
_REC = struct.Struct("<IIII")


class PcapError(KnetError):
    """The pcap file cannot be written (full disk, no permission, missing directory)."""


class PcapWriter:
    def __init__(self, path: str | Path, *, snaplen: int = 262144,
                 buffering: int = 1 << 20) -> None:
        self.path = Path(path)
        self.packets = 0
        self._snaplen = snaplen
        try:
            fd, tmp = tempfile.mkstemp(prefix=f"{self.path.name}.part-",
                                       dir=self.path.parent or Path("."))
        except OSError as exc:
            raise self._error(exc) from None
        self.tmp = Path(tmp)
        self._f: BinaryIO | None = os.fdopen(fd, "wb", buffering=buffering)
        self._write(struct.pack("<IHHiIII", MAGIC_NS, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET))

    def __repr__(self) -> str:
        return f"<PcapWriter {self.path} {self.packets} packets>"

    def _error(self, exc: OSError) -> PcapError:
        why = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else \
            (exc.strerror or str(exc))
        return PcapError(f"{self.path}: cannot write the capture: {why}; nothing was saved "
                         "(free space or choose another -w path)")

    def _write(self, data: bytes) -> None:
        assert self._f is not None, "write after commit/abort"
        try:
            self._f.write(data)
        except OSError as exc:
            self.abort()
            raise self._error(exc) from None

    def write(self, ts_ns: int, data: bytes, orig_len: int | None = None) -> None:
        sec, ns = divmod(ts_ns, 1_000_000_000)
        self._write(_REC.pack(sec, ns, len(data), orig_len or len(data)) + data)
        self.packets += 1

    def commit(self) -> Path:
        """Finish the file: flush, fsync, rename into place. Returns the final path."""
        f, self._f = self._f, None
        if f is None:
            raise PcapError(f"{self.path}: capture already finished")
        try:
            f.flush()
            os.fsync(f.fileno())
            f.close()
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.tmp.unlink(missing_ok=True)
            raise self._error(exc) from None
        return self.path

    def abort(self) -> None:
        """Throw the file away (idempotent)."""
        f, self._f = self._f, None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass
        self.tmp.unlink(missing_ok=True)
