"""Namespace: the safety net for Terminating namespaces.

The object layer (control/api/deletion.py) already empties a namespace when it is deleted and
removes it once the last object is gone. This controller makes that level-triggered: for a
namespace still Terminating it deletes whatever is left that is not yet being deleted
(objects created in a race, or left by a crash), then re-issues the namespace delete, which
finalizes it as soon as it is empty. It re-checks every `recheck` seconds while anything
(e.g. pods in graceful termination) remains.
"""

from __future__ import annotations

from control.clientbase import Client
from control.clock import Clock
from control.controllers.base import Controller, Requeue
from control.controllers.util import is_terminating, meta
from control.errors import ApiError, NotFound
from control.informer import Informer, object_key
from control.models.resources import RESOURCES

__all__ = ["NamespaceController"]


class NamespaceController(Controller):
    name = "namespace"

    def __init__(self, client: Client, *, clock: Clock, namespaces: Informer,
                 recheck: float = 5.0) -> None:
        super().__init__(client, clock=clock, workers=1)
        self.namespaces = namespaces
        self.recheck = recheck
        namespaces.add_handler(on_add=lambda n: self.enqueue(object_key(n)),
                               on_update=lambda o, n: self.enqueue(object_key(n)))

    async def reconcile(self, key: str) -> None:
        ns = self.namespaces.get(key)
        if ns is None or not (is_terminating(ns)
                              or (ns.get("status") or {}).get("phase") == "Terminating"):
            return
        left = 0
        for info in RESOURCES:
            if not info.namespaced or "list" not in info.verbs or "delete" not in info.verbs:
                continue
            try:
                items = (await self.client.list(info.plural, namespace=key)).items
            except ApiError:
                continue
            for obj in items:
                left += 1
                if is_terminating(obj):
                    continue
                try:
                    await self.client.delete(info.plural, meta(obj)["name"], namespace=key,
                                             propagation="Background")
                except NotFound:
                    left -= 1
        if left:
            self.log.info("%s: %d objects still terminating", key, left)
            raise Requeue(self.recheck)
        try:
            await self.client.delete("namespaces", key)     # finalizes an empty namespace
        except NotFound:
            return
