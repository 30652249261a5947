"""`EventRecorder`: core/v1 Events for what the controllers and the scheduler do, the way
`kubectl describe` shows them (type, reason, age, from, message).

Repeats of the same (object, type, reason, message) within the aggregation window bump
`count` and `lastTimestamp` of the existing Event instead of creating another one, like
client-go's event correlator. Recording never raises: a lost event is logged, not fatal.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from typing import Literal

from control.clientbase import Client, Obj
from control.clock import Clock, rfc3339
from control.errors import ApiError, NotFound

__all__ = ["EventRecorder", "EventType"]

log = logging.getLogger(__name__)
EventType = Literal["Normal", "Warning"]
_MAX_CACHE = 4096


class EventRecorder:
    def __init__(self, client: Client, *, component: str, clock: Clock, host: str = "",
                 window: float = 600.0) -> None:
        self.client = client
        self.component = component
        self.host = host
        self._clock = clock
        self._window = window
        self._seen: OrderedDict[tuple[str, ...], tuple[str, str, int, float]] = OrderedDict()
        self._seq = itertools.count()

    def __repr__(self) -> str:
        return f"<EventRecorder {self.component} cached={len(self._seen)}>"

    async def record(self, obj: Obj, type: EventType, reason: str, message: str) -> None:
        """Record an Event about `obj` (any API object with kind/metadata)."""
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or "default"
        ident = (ns, str(obj.get("kind", "")), str(meta.get("name", "")),
                 str(meta.get("uid", "")), type, reason, message)
        try:
            if not await self._bump(ident):
                await self._create(ident, obj, type, reason, message)
        except ApiError as exc:
            log.warning("%s/%s: event %s not recorded: %s", ns, meta.get("name"), reason, exc)

    async def _bump(self, ident: tuple[str, ...]) -> bool:
        seen = self._seen.get(ident)
        if seen is None or self._clock.monotonic() - seen[3] > self._window:
            return False
        ns, name, count, _ = seen
        try:
            await self.client.patch("events", name, {
                "count": count + 1, "lastTimestamp": rfc3339(self._clock.now())},
                namespace=ns)
        except NotFound:
            return False
        self._remember(ident, (ns, name, count + 1, self._clock.monotonic()))
        return True

    async def _create(self, ident: tuple[str, ...], obj: Obj, type: EventType, reason: str,
                      message: str) -> None:
        meta = obj.get("metadata") or {}
        ns = ident[0]
        now = self._clock.now()
        name = f"{meta.get('name', 'object')}.{int(now.timestamp() * 1e9) + next(self._seq):x}"
        ref = {"kind": obj.get("kind", ""), "name": meta.get("name", ""),
               "apiVersion": obj.get("apiVersion", "")}
        if meta.get("namespace"):
            ref["namespace"] = meta["namespace"]
        for src, dst in (("uid", "uid"), ("resourceVersion", "resourceVersion")):
            if meta.get(src):
                ref[dst] = meta[src]
        source = {"component": self.component}
        if self.host:
            source["host"] = self.host
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": ref, "reason": reason, "message": message, "type": type,
            "source": source, "count": 1,
            "firstTimestamp": rfc3339(now), "lastTimestamp": rfc3339(now),
            "reportingComponent": self.component, "reportingInstance": self.host,
        }
        await self.client.create("events", event, namespace=ns)
        log.info("%s/%s: %s %s: %s", ns, meta.get("name"), type, reason, message)
        self._remember(ident, (ns, name, 1, self._clock.monotonic()))

    def _remember(self, ident: tuple[str, ...], value: tuple[str, str, int, float]) -> None:
        self._seen[ident] = value
        self._seen.move_to_end(ident)
        while len(self._seen) > _MAX_CACHE:
            self._seen.popitem(last=False)
