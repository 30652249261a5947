"""Owner-reference claims, client-go's ControllerRefManager: a workload controller owns the
objects its selector matches. `claim` adopts orphans that match (adds a controller
ownerReference), releases owned objects that no longer match (removes it), and returns what
the owner now owns. Every workload controller (ReplicaSet/RC, Deployment, StatefulSet,
DaemonSet, Job) claims through it, so adoption follows one set of rules:

- never adopt or release an object that is being deleted; never adopt for an owner that is
  being deleted; an object another controller owns is left alone;
- each write carries the object's uid (and resourceVersion) as preconditions, so a
  re-created object of the same name is never adopted by mistake; NotFound means gone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from control.clientbase import Client, Obj
from control.controllers.util import controller_ref, is_terminating, meta, owner_ref
from control.errors import NotFound
from control.models.selectors import LabelSelector

__all__ = ["ControllerRefManager"]


class ControllerRefManager:
    def __init__(self, client: Client, plural: str, *, log: logging.Logger,
                 owner_kind: str, on_written: Callable[[Obj], None] | None = None) -> None:
        self.client = client
        self.plural = plural
        self.log = log
        self.owner_kind = owner_kind
        self.on_written = on_written

    async def claim(self, owner: Obj, candidates: Iterable[Obj], selector: LabelSelector, *,
                    can_adopt: Callable[[Obj], bool] = lambda _o: True) -> list[Obj]:
        """What `owner` owns after adopting matching orphans and releasing non-matching."""
        uid = meta(owner).get("uid")
        owned: list[Obj] = []
        for obj in candidates:
            ref = controller_ref(obj)
            matches = selector.matches(meta(obj).get("labels"))
            if ref is not None and ref.get("uid") == uid:
                if matches:
                    owned.append(obj)
                elif not is_terminating(obj):
                    refs = [r for r in meta(obj).get("ownerReferences") or []
                            if r.get("uid") != uid]
                    await self._set_owners(obj, refs, "released")
            elif (ref is None and matches and not is_terminating(obj)
                  and not is_terminating(owner) and can_adopt(obj)):
                refs = list(meta(obj).get("ownerReferences") or []) + [owner_ref(owner)]
                adopted = await self._set_owners(obj, refs, "adopted")
                if adopted is not None:
                    owned.append(adopted)
        return owned

    async def _set_owners(self, obj: Obj, refs: list[dict[str, Any]], why: str) -> Obj | None:
        m = meta(obj)
        patch = {"metadata": {"ownerReferences": refs, "uid": m.get("uid"),
                              "resourceVersion": m.get("resourceVersion")}}
        try:
            out = await self.client.patch(self.plural, m["name"], patch,
                                          namespace=m.get("namespace"))
        except NotFound:
            return None
        self.log.info("%s/%s: %s %s %s", m.get("namespace"), m["name"], self.owner_kind, why,
                      self.plural[:-1])
        if self.on_written is not None:
            self.on_written(out)
        return out
