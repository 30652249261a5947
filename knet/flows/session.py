"""`knet capture` as a function: one interface, a filter, limits, a pcap file and/or a live
summary, and a result that says how many frames were kept and how many the kernel dropped.

The reader thread only appends raw frames (and writes them to the pcap file); the caller's
thread decodes and shows them. Ctrl-C (KeyboardInterrupt) and the limits end the capture
the same way: the thread is stopped, the socket closed, the file committed. Errors (full
disk, interface gone) abort the file, so a file at the -w path is always complete.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from knet.flows.bpf import compile_filter
from knet.flows.capture import CaptureError, Frame, RawCapture
from knet.flows.cluster import Iface
from knet.flows.pcap import PcapError, PcapWriter

log = logging.getLogger(__name__)

__all__ = ["CaptureResult", "capture"]


@dataclass
class CaptureResult:
    iface: Iface
    received: int
    dropped: int
    unread: int
    written: Path | None
    interrupted: bool
    seconds: float


def capture(iface: Iface, *, bpf: str = "", count: int = 0, duration: float = 0.0,
            write: Path | None = None, show: Callable[[Frame], None] | None = None,
            on_start: Callable[[], None] | None = None) -> CaptureResult:
    """Capture until `count` frames, `duration` seconds, or Ctrl-C. Raises CaptureError when
    the interface goes away mid-capture (after discarding the unfinished file)."""
    program = compile_filter(bpf) if bpf else None
    cap = RawCapture(iface, program=program, count=count)
    cap.open()
    writer: PcapWriter | None = None
    try:
        writer = PcapWriter(write) if write else None
    except PcapError:
        cap.stop()
        raise
    frames: queue.SimpleQueue[Frame] = queue.SimpleQueue()
    errors: list[PcapError] = []

    def on_frame(f: Frame) -> None:
        if writer is not None and not errors:
            try:
                writer.write(f.ts_ns, f.data)
            except PcapError as exc:
                errors.append(exc)
                cap.cancel()
        if show is not None:
            frames.put(f)

    start = time.monotonic()
    interrupted = False
    cap.start(on_frame)
    if on_start:
        on_start()
    try:
        _pump(cap, frames, show, start=start, duration=duration, errors=errors)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        cap.stop()
    _drain(frames, show)
    return _finish(cap, writer, errors, interrupted=interrupted,
                   seconds=time.monotonic() - start)


def _pump(cap: RawCapture, frames: queue.SimpleQueue[Frame],
          show: Callable[[Frame], None] | None, *, start: float, duration: float,
          errors: list[PcapError]) -> None:
    while not cap.done.is_set() and not errors:
        if duration and time.monotonic() - start >= duration:
            return
        try:
            f = frames.get(timeout=0.05)
        except queue.Empty:
            continue
        if show is not None:
            show(f)


def _drain(frames: queue.SimpleQueue[Frame], show: Callable[[Frame], None] | None) -> None:
    while show is not None:
        try:
            show(frames.get_nowait())
        except queue.Empty:
            return


def _finish(cap: RawCapture, writer: PcapWriter | None, errors: list[PcapError], *,
            interrupted: bool, seconds: float) -> CaptureResult:
    st = cap.stats
    if errors:
        raise errors[0]
    if st.gone and not (cap.count and st.received >= cap.count):
        if writer is not None:
            writer.abort()
        raise CaptureError(f"{st.gone} after {st.received} packets (was it deleted?); "
                           + ("the unfinished pcap was removed" if writer else "capture ended"))
    written = writer.commit() if writer is not None else None
    return CaptureResult(cap.iface, st.received, st.dropped, st.unread, written, interrupted,
                         seconds)
