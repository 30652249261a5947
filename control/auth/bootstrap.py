"""The default policy, reconciled at API server start as kube-apiserver's RBAC post-start
hook does, and ClusterRole aggregation (the clusterrole-aggregation controller).

`ensure_policy(objects)`: each default ClusterRole / ClusterRoleBinding is created when
missing; when present and not annotated `rbac.authorization.kubernetes.io/autoupdate: "false"`,
the rules, subjects, labels and annotations it lacks are added (what users added stays).
`Aggregator`: a ClusterRole with an `aggregationRule` gets, as its rules, the union of the
rules of the ClusterRoles its selectors match (admin <- edit <- view), recomputed on every
ClusterRole change until nothing moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from control.api.objects import ObjectService
from control.auth.bootstrappolicy import AUTOUPDATE, cluster_role_bindings, cluster_roles
from control.errors import AlreadyExists, Conflict, NotFound
from control.models.selectors import selector_from_spec

__all__ = ["Aggregator", "ensure_policy"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]


def _merge_meta(current: Obj, wanted: Obj) -> bool:
    changed = False
    md, want = current.setdefault("metadata", {}), wanted.get("metadata") or {}
    for key in ("labels", "annotations"):
        have = md.get(key) or {}
        for k, v in (want.get(key) or {}).items():
            if k not in have:
                have[k] = v
                changed = True
        if have:
            md[key] = have
    return changed


def _add_missing(current: Obj, key: str, wanted: list[Any]) -> bool:
    have = list(current.get(key) or [])
    missing = [item for item in wanted if item not in have]
    if missing:
        current[key] = have + missing
    return bool(missing)


def _reconcile(current: Obj, wanted: Obj, resource: str) -> bool:
    changed = _merge_meta(current, wanted)
    if resource == "clusterroles":
        if "aggregationRule" in wanted:
            rule = current.setdefault("aggregationRule", {})
            changed |= _add_missing(rule, "clusterRoleSelectors",
                                    wanted["aggregationRule"]["clusterRoleSelectors"])
        else:
            changed |= _add_missing(current, "rules", wanted.get("rules") or [])
    else:
        changed |= _add_missing(current, "subjects", wanted.get("subjects") or [])
    return changed


async def _ensure(objects: ObjectService, resource: str, wanted: Obj) -> None:
    name = wanted["metadata"]["name"]
    for _ in range(5):
        try:
            current = await objects.get(resource, name)
        except NotFound:
            with contextlib.suppress(AlreadyExists):
                await objects.create(resource, wanted)
                log.info("%s/%s: created (default policy)", resource, name)
                return
            continue
        annotations = (current.get("metadata") or {}).get("annotations") or {}
        if annotations.get(AUTOUPDATE) == "false":
            return
        if resource == "clusterrolebindings" and current.get("roleRef") != wanted["roleRef"]:
            await objects.delete(resource, name)          # roleRef is immutable: recreate
            continue
        if not _reconcile(current, wanted, resource):
            return
        try:
            await objects.update(resource, current)
            log.info("%s/%s: reconciled with the default policy", resource, name)
            return
        except Conflict:
            continue
    log.warning("%s/%s: could not reconcile with the default policy after 5 tries",
                resource, name)


async def ensure_policy(objects: ObjectService) -> None:
    for role in cluster_roles():
        await _ensure(objects, "clusterroles", role)
    for binding in cluster_role_bindings():
        await _ensure(objects, "clusterrolebindings", binding)


def aggregated_rules(role: Obj, roles: list[Obj]) -> list[Obj] | None:
    """The rules `role` aggregates from `roles` (None: it has no aggregationRule)."""
    rule = role.get("aggregationRule")
    if not isinstance(rule, dict):
        return None
    name = role["metadata"]["name"]
    selectors = []
    for spec in rule.get("clusterRoleSelectors") or []:
        with contextlib.suppress(Exception):
            selectors.append(selector_from_spec(spec))
    out: list[Obj] = []
    for other in sorted(roles, key=lambda r: str(r["metadata"]["name"])):
        labels = other["metadata"].get("labels") or {}
        if other["metadata"]["name"] == name or not any(s.matches(labels) for s in selectors):
            continue
        for r in other.get("rules") or []:
            if r not in out:
                out.append(r)
    return out


class Aggregator:
    """Keeps aggregated ClusterRoles' rules current; `poke()` on any ClusterRole change."""

    def __init__(self, objects: ObjectService) -> None:
        self.objects = objects
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Aggregator {self.objects!r}>"

    def poke(self, *_: object) -> None:
        self._dirty.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="clusterrole-aggregation")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self.sync()
            except Exception:
                log.exception("clusterrole aggregation failed; retrying on the next change")

    async def sync(self) -> int:
        """Recompute every aggregated role until a pass changes nothing; the updates made."""
        made = 0
        for _ in range(10):
            roles = (await self.objects.list("clusterroles")).items
            changed = 0
            for role in roles:
                rules = aggregated_rules(role, roles)
                if rules is None or rules == (role.get("rules") or []):
                    continue
                role["rules"] = rules
                with contextlib.suppress(Conflict, NotFound):
                    await self.objects.update("clusterroles", role)
                    changed += 1
            made += changed
            if not changed:
                return made
        return made
