"""kube-apiserver's `--authorization-mode=Node,RBAC`, assembled for one API server.

    authz = NodeRBAC()
    app = create_app(store, Settings(token=t, **authz.settings()))
    authz.install(app)       # at start: default policy, policy informers, aggregation

`settings()` gives the authorizer chain (Node, then RBAC), the admission wrapper that
prevents escalation, and the authorization.k8s.io reviews. `install` adds a cleanup context
that runs after the object layer starts: it reconciles the bootstrap policy, then waits for
the policy informers' first lists, so the first request is judged on the full policy.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from control.api.keys import OBJECTS
from control.api.local import LocalClient
from control.auth.accessreview import access_reviews
from control.auth.bootstrap import Aggregator, ensure_policy
from control.auth.escalation import EscalationGuard
from control.auth.node import NodeAuthorizer, StorePods
from control.auth.rbac import PolicyCache, PolicyFeed, RBACAuthorizer
from control.auth.types import FirstAuthorizer
from control.models.validation import admit as default_admit

__all__ = ["MODES", "NodeRBAC"]

log = logging.getLogger(__name__)
MODES = ("Node,RBAC", "AlwaysAllow")


class NodeRBAC:
    def __init__(self) -> None:
        self.cache = PolicyCache()
        self.rbac = RBACAuthorizer(self.cache)
        self.pods = StorePods(None)
        self.node = NodeAuthorizer(self.pods)
        self.authz = FirstAuthorizer([self.node, self.rbac])
        self.guard = EscalationGuard(self.rbac, default_admit)

    def __repr__(self) -> str:
        return f"<NodeRBAC {self.cache!r}>"

    def settings(self) -> dict[str, Any]:
        """Keyword arguments for control.api.app.Settings."""
        return {"authz": self.authz, "admit": self.guard.admit,
                "reviews": access_reviews(self.authz, self.rbac)}

    def install(self, app: web.Application) -> None:
        app.cleanup_ctx.append(self._context)

    async def _context(self, app: web.Application) -> AsyncIterator[None]:
        objects = app[OBJECTS]
        self.pods.objects = objects
        await ensure_policy(objects)
        feed = PolicyFeed(LocalClient(objects), self.cache)
        aggregator = Aggregator(objects)
        feed.informers[0].add_handler(on_add=aggregator.poke, on_update=aggregator.poke,
                                      on_delete=aggregator.poke)
        await feed.start()
        await aggregator.sync()
        aggregator.start()
        log.info("authorization: Node,RBAC on %r", self.cache)
        try:
            yield
        finally:
            await aggregator.stop()
            await feed.stop()
