"""ControllerRevision history, client-go's `history` package: the snapshots of a workload's
pod template that StatefulSet and DaemonSet keep so `kubectl rollout history/undo` work.

A revision's `data` is upstream's patch `{"spec": {"template": {..., "$patch": "replace"}}}`
(what `kubectl rollout undo` applies); it is named `<owner>-<hash>` and labelled with the
owner's template labels plus `controller.kubernetes.io/hash`. The hash is upstream's
HashControllerRevision: FNV-1 32 over the compact, key-sorted JSON of `data` (plus the
collision count), its decimal digits mapped onto the safe alphabet. Pure helpers first, then
`RevisionHistory`, which does the writes (claim, create with collision handling, renumber on
rollback, truncate to the history limit).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from control.clientbase import Client, Obj
from control.controllers.claims import ControllerRefManager
from control.controllers.util import deep, is_terminating, meta, owner_ref
from control.errors import AlreadyExists, NotFound
from control.models.selectors import LabelSelector

__all__ = [
    "DEFAULT_HISTORY_LIMIT",
    "HASH_LABEL",
    "POD_REVISION_LABEL",
    "RevisionHistory",
    "apply_revision",
    "equal_revisions",
    "find_equal",
    "hash_data",
    "new_revision",
    "next_revision_number",
    "revision_name",
    "revision_number",
    "sort_revisions",
    "template_patch",
]

HASH_LABEL = "controller.kubernetes.io/hash"
POD_REVISION_LABEL = "controller-revision-hash"
DEFAULT_HISTORY_LIMIT = 10
_SAFE = "bcdfghjklmnpqrstvwxz2456789"
_MAX_PREFIX = 223            # upstream ControllerRevisionName keeps names under 253


def template_patch(owner: Obj) -> Obj:
    """The revision data for `owner`: its pod template as a strategic-merge replace patch."""
    template = deep((owner.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def _canonical(data: Obj) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def _fnv1_32(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h = (h * 0x01000193) & 0xFFFFFFFF
        h ^= byte
    return h


def hash_data(data: Obj, collision_count: int | None = None) -> str:
    """Upstream's revision hash: equal data and collision count give equal hashes."""
    raw = _canonical(data)
    if collision_count is not None:
        raw += str(int(collision_count)).encode()
    return "".join(_SAFE[ord(ch) % len(_SAFE)] for ch in str(_fnv1_32(raw)))


def revision_name(owner_name: str, hash_: str) -> str:
    return f"{owner_name[:_MAX_PREFIX]}-{hash_}"


def revision_number(rev: Obj) -> int:
    try:
        return int(rev.get("revision") or 0)
    except (TypeError, ValueError):
        return 0


def sort_revisions(revisions: Iterable[Obj]) -> list[Obj]:
    """Oldest first: by revision number, then creation time, then name."""
    return sorted(revisions, key=lambda r: (revision_number(r),
                                            meta(r).get("creationTimestamp") or "",
                                            meta(r).get("name") or ""))


def next_revision_number(revisions: Iterable[Obj]) -> int:
    return max((revision_number(r) for r in revisions), default=0) + 1


def new_revision(owner: Obj, number: int, collision_count: int | None = None, *,
                 data: Obj | None = None) -> Obj:
    """An unsaved ControllerRevision of `owner` (its template unless `data` is given)."""
    om = meta(owner)
    body = template_patch(owner) if data is None else deep(data)
    h = hash_data(body, collision_count)
    labels = dict((((owner.get("spec") or {}).get("template") or {}).get("metadata")
                   or {}).get("labels") or {})
    labels[HASH_LABEL] = h
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": revision_name(om.get("name", ""), h),
                         "namespace": om.get("namespace"), "labels": labels,
                         "annotations": dict(om.get("annotations") or {}),
                         "ownerReferences": [owner_ref(owner)]},
            "data": body, "revision": int(number)}


def equal_revisions(a: Obj | None, b: Obj | None) -> bool:
    """Same data (and, when both carry one, the same hash label), as history.EqualRevision."""
    if a is None or b is None:
        return a is b
    ha = (meta(a).get("labels") or {}).get(HASH_LABEL)
    hb = (meta(b).get("labels") or {}).get(HASH_LABEL)
    if ha and hb and ha != hb:
        return False
    return _canonical(a.get("data") or {}) == _canonical(b.get("data") or {})


def find_equal(revisions: Iterable[Obj], target: Obj) -> list[Obj]:
    """The revisions equal to `target`, oldest first."""
    return sort_revisions(r for r in revisions if equal_revisions(r, target))


def apply_revision(owner: Obj, revision: Obj) -> Obj:
    """A copy of `owner` with the template recorded in `revision` (the current revision's
    pods are built from this, and a rollback writes it)."""
    out = deep(owner)
    template = deep((((revision.get("data") or {}).get("spec")) or {}).get("template") or {})
    template.pop("$patch", None)
    out.setdefault("spec", {})["template"] = template
    return out


class RevisionHistory:
    """The writes behind a workload's history, for one owner kind (StatefulSet, DaemonSet)."""

    def __init__(self, client: Client, *, log: logging.Logger, owner_kind: str) -> None:
        self.client = client
        self.log = log
        self.owner_kind = owner_kind
        self.refs = ControllerRefManager(client, "controllerrevisions", log=log,
                                         owner_kind=owner_kind)

    async def claim(self, owner: Obj, candidates: Iterable[Obj],
                    selector: LabelSelector) -> list[Obj]:
        """The revisions `owner` owns (adopting matching orphans), oldest first."""
        ns = meta(owner).get("namespace")
        mine = [r for r in candidates if meta(r).get("namespace") == ns]
        return sort_revisions(await self.refs.claim(owner, mine, selector))

    async def create(self, owner: Obj, revision: Obj,
                     collision_count: int) -> tuple[Obj, int]:
        """Create `revision` (built with `collision_count`); an equal one of that name is
        returned as is; a different one means a hash collision: bump the count and retry.
        Returns (the stored revision, the collision count used)."""
        count = collision_count
        for _ in range(100):
            body = deep(revision)
            if count != collision_count:
                body = new_revision(owner, revision_number(revision), count,
                                    data=revision.get("data"))
            ns = meta(body).get("namespace")
            try:
                created = await self.client.create("controllerrevisions", body, namespace=ns)
                self.log.info("%s/%s: created ControllerRevision %s (revision %d)", ns,
                              meta(owner).get("name"), meta(created)["name"],
                              revision_number(created))
                return created, count
            except AlreadyExists:
                try:
                    existing = await self.client.get("controllerrevisions",
                                                     meta(body)["name"], namespace=ns)
                except NotFound:
                    continue
                if equal_revisions(existing, body):
                    return existing, count
                count += 1
        raise RuntimeError(f"{self.owner_kind} {meta(owner).get('namespace')}/"
                           f"{meta(owner).get('name')}: 100 ControllerRevision hash "
                           "collisions in a row; delete stale ControllerRevisions")

    async def renumber(self, revision: Obj, number: int) -> Obj:
        """Give an existing revision a new number (a rollback to it makes it the newest)."""
        if revision_number(revision) == number:
            return revision
        m = meta(revision)
        return await self.client.patch("controllerrevisions", m["name"],
                                       {"revision": int(number)}, namespace=m.get("namespace"))

    async def ensure(self, owner: Obj, revisions: list[Obj],
                     collision_count: int) -> tuple[Obj, list[Obj], int]:
        """The revision for `owner`'s current template, upstream's getStatefulSetRevisions:
        the newest revision if it is equal; an older equal one renumbered as newest (a
        rollback); else a new one. Returns (it, all revisions oldest first, collisions)."""
        revisions = sort_revisions(revisions)
        wanted = new_revision(owner, next_revision_number(revisions), collision_count)
        equal = find_equal(revisions, wanted)
        if equal and revisions and meta(equal[-1])["name"] == meta(revisions[-1])["name"]:
            return revisions[-1], revisions, collision_count
        if equal:
            updated = await self.renumber(equal[-1], revision_number(wanted))
            rest = [r for r in revisions if meta(r)["name"] != meta(updated)["name"]]
            return updated, sort_revisions(rest + [updated]), collision_count
        created, count = await self.create(owner, wanted, collision_count)
        rest = [r for r in revisions if meta(r)["name"] != meta(created)["name"]]
        return created, sort_revisions(rest + [created]), count

    async def truncate(self, owner: Obj, revisions: list[Obj], live: set[str],
                       limit: int | None) -> list[str]:
        """Delete the oldest revisions not in `live` (names in use by pods or the status)
        beyond `limit` (revisionHistoryLimit, default 10). Returns the deleted names."""
        keep = DEFAULT_HISTORY_LIMIT if limit is None else max(0, int(limit))
        idle = [r for r in sort_revisions(revisions)
                if meta(r)["name"] not in live and not is_terminating(r)]
        deleted: list[str] = []
        for rev in idle[:max(0, len(idle) - keep)]:
            m = meta(rev)
            try:
                await self.client.delete("controllerrevisions", m["name"],
                                         namespace=m.get("namespace"),
                                         preconditions_uid=m.get("uid"))
            except NotFound:
                continue
            deleted.append(m["name"])
        if deleted:
            self.log.info("%s/%s: deleted old ControllerRevisions %s (history limit %d)",
                          meta(owner).get("namespace"), meta(owner).get("name"),
                          ", ".join(deleted), keep)
        return deleted

    async def rollback(self, resource: str, owner: Obj, revision: Obj) -> Obj:
        """Put `revision`'s template back on `owner` (what `kubectl rollout undo` does: a
        strategic-merge patch with the revision's data). Returns the patched owner."""
        m = meta(owner)
        data: Any = deep(revision.get("data") or {})
        return await self.client.patch(resource, m["name"], data, patch_type="strategic",
                                       namespace=m.get("namespace"))
