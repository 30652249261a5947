"""Small pure helpers the controllers share: owner references, pod state (active, ready,
available), and `Expectations`, which remember the pods a controller created or deleted
until its informer has seen them, so a reconcile that runs before the cache catches up
does not create or delete the same pods twice.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from control.clientbase import Obj
from control.clock import Clock, parse_rfc3339

__all__ = [
    "Expectations",
    "controller_ref",
    "deep",
    "is_pod_active",
    "is_pod_available",
    "is_pod_ready",
    "is_terminating",
    "meta",
    "owner_ref",
    "pod_ready_since",
]


def meta(obj: Obj) -> dict[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def deep(obj: Obj) -> Obj:
    return copy.deepcopy(obj)


def controller_ref(obj: Obj) -> dict[str, Any] | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def owner_ref(owner: Obj, *, block: bool = True) -> dict[str, Any]:
    m = meta(owner)
    return {"apiVersion": owner.get("apiVersion", ""), "kind": owner.get("kind", ""),
            "name": m.get("name", ""), "uid": m.get("uid", ""), "controller": True,
            "blockOwnerDeletion": block}


def is_terminating(obj: Obj) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def is_pod_active(pod: Obj) -> bool:
    """Counts toward a controller's replicas: not finished and not being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not is_terminating(pod)


def _condition(obj: Obj, ctype: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return None


def is_pod_ready(pod: Obj) -> bool:
    c = _condition(pod, "Ready")
    return bool(c and c.get("status") == "True")


def pod_ready_since(pod: Obj) -> datetime | None:
    c = _condition(pod, "Ready")
    if not c or c.get("status") != "True":
        return None
    return parse_rfc3339(c.get("lastTransitionTime"))


def is_pod_available(pod: Obj, min_ready_seconds: int, now: datetime) -> bool:
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = pod_ready_since(pod)
    return since is not None and (now - since).total_seconds() >= min_ready_seconds


def available_in(pod: Obj, min_ready_seconds: int, now: datetime) -> float | None:
    """Seconds until a ready pod becomes available (None if not ready, 0 if already)."""
    since = pod_ready_since(pod)
    if since is None:
        return None if min_ready_seconds > 0 or not is_pod_ready(pod) else 0.0
    return max(0.0, min_ready_seconds - (now - since).total_seconds())


class Expectations:
    """Per controller key: names of pods created (`adds`) or deleted (`dels`) but not yet
    observed in the informer cache. Entries expire after `ttl` seconds (a lost watch event
    must not block the controller forever)."""

    def __init__(self, *, clock: Clock, ttl: float = 30.0) -> None:
        self._clock = clock
        self._ttl = ttl
        self._adds: dict[str, dict[str, float]] = {}
        self._dels: dict[str, dict[str, float]] = {}

    def expect_add(self, key: str, name: str) -> None:
        self._adds.setdefault(key, {})[name] = self._clock.monotonic() + self._ttl

    def expect_delete(self, key: str, name: str) -> None:
        self._dels.setdefault(key, {})[name] = self._clock.monotonic() + self._ttl

    def pending(self, key: str, seen: dict[str, Obj]) -> tuple[set[str], set[str]]:
        """(names created but unseen, names deleted but still seen as active), given the
        pods the cache currently has for this key (name -> pod)."""
        now = self._clock.monotonic()
        adds = self._adds.get(key, {})
        for name in [n for n, dl in adds.items() if n in seen or dl < now]:
            del adds[name]
        dels = self._dels.get(key, {})
        for name in [n for n, dl in dels.items()
                     if n not in seen or not is_pod_active(seen[n]) or dl < now]:
            del dels[name]
        return set(adds), set(dels)

    def forget(self, key: str) -> None:
        self._adds.pop(key, None)
        self._dels.pop(key, None)
