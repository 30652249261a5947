"""ServiceAccounts: every namespace has a `default` ServiceAccount, as kube-controller-manager's
serviceaccount-controller ensures.

Keyed by namespace: a namespace that appears (or changes) and a managed ServiceAccount that
is deleted both queue the namespace; reconcile creates what is missing unless the namespace
is terminating (its objects are being removed, and a create there would be refused).
"""

from __future__ import annotations

from collections.abc import Sequence

from control.clientbase import Client, Obj
from control.clock import Clock
from control.controllers.base import Controller
from control.controllers.util import is_terminating, meta
from control.errors import AlreadyExists, Forbidden, NotFound
from control.informer import Informer

__all__ = ["ServiceAccountsController"]


class ServiceAccountsController(Controller):
    name = "serviceaccount"

    def __init__(self, client: Client, *, clock: Clock, namespaces: Informer,
                 accounts: Informer, names: Sequence[str] = ("default",)) -> None:
        super().__init__(client, clock=clock, workers=1)
        self.namespaces = namespaces
        self.accounts = accounts
        self.names = tuple(names)
        namespaces.add_handler(on_add=self._namespace, on_update=lambda _o, n: self._namespace(n))
        accounts.add_handler(on_delete=self._deleted)

    def _namespace(self, ns: Obj) -> None:
        self.enqueue(str(meta(ns).get("name", "")))

    def _deleted(self, account: Obj) -> None:
        md = meta(account)
        if md.get("name") in self.names and md.get("namespace"):
            self.enqueue(str(md["namespace"]))

    async def reconcile(self, key: str) -> None:
        ns = self.namespaces.get(key)
        if ns is None or is_terminating(ns) or (ns.get("status") or {}).get(
                "phase") == "Terminating":
            return
        for name in self.names:
            if self.accounts.get(f"{key}/{name}") is not None:
                continue
            try:
                await self.client.create("serviceaccounts", {
                    "apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": name, "namespace": key}}, namespace=key)
                self.log.info("%s/%s: created the ServiceAccount", key, name)
            except AlreadyExists:
                continue
            except (NotFound, Forbidden):
                return                   # the namespace went away or is terminating
