"""The object layer: Kubernetes API semantics on top of a revisioned `Store`, with no HTTP.

`ObjectService` owns what makes a key-value pair an API object: uid, creationTimestamp,
resourceVersion (the store's mod_revision), generation, generateName, namespaces that must
exist, admission (defaulting + validation via `control.models.validation.admit`), optimistic
concurrency, the status/main split, patches, and Service address allocation. How the next
version is computed lives in `control.api.versions`, deletion in `control.api.deletion`,
lists (selectors, pages) in `control.api.listing`, watches in `control.api.watching`, scale and binding in `control.api.subresources`.

Methods take ownership of the dicts passed in (the HTTP layer parsed them for this call;
`LocalClient` copies its callers' objects first), so the hot path never deep-copies.
Key design choice: the store is the only state. The handlers, `LocalClient` and the
benchmarks all call these methods, so HTTP and in-process callers get identical behaviour.
"""

from __future__ import annotations

import builtins
import copy
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from control.api import deletion, ephemeral, listing, meta, subresources, versions, watching
from control.api.meta import Obj
from control.api.namespacestate import NamespaceStates
from control.api.services import Allocation, ServiceAllocator
from control.clientbase import ObjectList, WatchEvent
from control.errors import AlreadyExists, BadRequest, Conflict, Forbidden, NotFound
from control.models.defaults import NAMESPACE_NAME_LABEL, default_status
from control.models.resources import Registry, ResourceInfo
from control.models.validation import admit as default_admit
from control.store.base import KV, Store

log = logging.getLogger(__name__)

Admit = Callable[..., tuple[Obj, list[str]]]
# mutating admission that needs to read other objects (e.g. the ServiceAccount plugin):
# `await plugin(objects, plural, obj)` changes a new object in place or raises an ApiError
AdmissionPlugin = Callable[["ObjectService", str, Obj], Awaitable[None]]
_RETRIES = 8


@dataclass
class Written:
    """The object as stored (with resourceVersion) and the admission warnings."""
    object: Obj
    warnings: list[str] = field(default_factory=list)
    created: bool = False
    raw: bytes | None = None          # the object's JSON, when it is exactly what was stored


class ObjectService:
    def __init__(self, store: Store, *, now: meta.Now = meta.utcnow,
                 admit: Admit | None = None, rng: random.Random | None = None,
                 plugins: Sequence[AdmissionPlugin] = (),
                 registry: Registry | None = None) -> None:
        self.store = store
        self.registry = registry or Registry()     # built-ins + CRD kinds (control.api.crd)
        self.plugins = list(plugins)
        self.now = now
        self.admit = admit or default_admit
        self.rng = rng or random.Random()
        self.services = ServiceAllocator()
        # namespaces known to exist and being emptied: every write goes through this
        # object, so a create need not ask the store
        self.namespaces = NamespaceStates()

    def __repr__(self) -> str:
        return f"<ObjectService {self.store!r}>"

    def resource(self, plural: str) -> ResourceInfo:
        try:
            return self.registry.by_plural(plural)
        except KeyError:
            return meta.resource(plural)           # the NotFound in kube-apiserver's words

    def _admit(self, info: ResourceInfo, obj: Obj, old: Obj | None = None
               ) -> tuple[Obj, list[str]]:
        custom = self.registry.custom_admit(info) if info.custom else None
        if custom is not None:
            return custom(info, obj, old)
        return self.admit(info.plural, obj, old=old) if old is not None else \
            self.admit(info.plural, obj)

    async def start(self) -> None:
        """Rebuild in-memory state (Service allocations, terminating namespaces), and bring
        objects stored by an older knet up to today's defaults."""
        kvs, _ = await self.store.list("/registry/services/")
        for kv in kvs:
            obj = meta.decode(kv)
            self.services.mark(obj)
            if (obj.get("status") or {}).get("loadBalancer") is None:
                await self._upgrade(kv, obj, "services")
        kvs, _ = await self.store.list("/registry/namespaces/")
        for kv in kvs:
            ns = meta.decode(kv)
            name = ns["metadata"]["name"]
            if (ns["metadata"].get("labels") or {}).get(NAMESPACE_NAME_LABEL) != name:
                await self._upgrade(kv, ns, "namespaces")
            self.namespaces.created(name)
            if ns["metadata"].get("deletionTimestamp"):
                self.namespaces.terminating(name)
        for name in self.namespaces.all_terminating():
            await deletion.drain_namespace(self, name)

    async def _upgrade(self, kv: KV, obj: Obj, resource: str) -> None:
        """Store obj with the defaults it lacks (label, status); a concurrent writer wins."""
        if resource == "namespaces":
            obj["metadata"].setdefault("labels", {})[NAMESPACE_NAME_LABEL] = \
                obj["metadata"]["name"]
        default_status(resource, obj)
        try:
            await self.store.update(kv.key, meta.encode(obj), expected_revision=kv.mod_revision)
        except (Conflict, NotFound):
            pass

    # ---- reads ---------------------------------------------------------------------------

    async def get(self, resource: str, name: str, *, namespace: str | None = None) -> Obj:
        info = self.resource(resource)
        kv = await self.store.get(self.key(info, name, namespace))
        if kv is None:
            raise meta.not_found(info, name)
        return meta.decode(kv)

    async def get_raw(self, resource: str, name: str, *, namespace: str | None = None) -> bytes:
        """`get` as JSON text, without a decode/encode round trip."""
        info = self.resource(resource)
        kv = await self.get_kv(info, name, namespace)
        return meta.with_revision(kv.value, kv.mod_revision)

    async def get_kv(self, info: ResourceInfo, name: str, namespace: str | None) -> KV:
        kv = await self.store.get(self.key(info, name, namespace))
        if kv is None:
            raise meta.not_found(info, name)
        return kv

    async def list(self, resource: str, *, namespace: str | None = None,
                   label_selector: str | None = None, field_selector: str | None = None,
                   limit: int = 0, continue_token: str | None = None) -> ObjectList:
        info = self.resource(resource)
        hits, rev, token = await listing.scan(self.store, info, namespace, label_selector,
                                              field_selector, limit, continue_token)
        items = [obj if obj is not None else meta.decode(kv) for kv, obj in hits]
        return ObjectList(items, str(rev), token)

    async def list_raw(self, resource: str, *, namespace: str | None = None,
                       label_selector: str | None = None, field_selector: str | None = None,
                       limit: int = 0, continue_token: str | None = None
                       ) -> tuple[builtins.list[bytes], str, str]:
        """Like `list`, but each item is its JSON text (no decode/encode round trip)."""
        info = self.resource(resource)
        hits, rev, token = await listing.scan(self.store, info, namespace, label_selector,
                                              field_selector, limit, continue_token)
        return [meta.with_revision(kv.value, kv.mod_revision) for kv, _ in hits], str(rev), token

    def watch(self, resource: str, *, namespace: str | None = None,
              resource_version: str | None = None, label_selector: str | None = None,
              field_selector: str | None = None) -> AsyncIterator[WatchEvent]:
        info = self.resource(resource)
        match = listing.matcher(info, label_selector, field_selector)
        meta.parse_revision(resource_version)             # a bad one fails before streaming
        return watching.watch(self, info, namespace=namespace, match=match,
                              resource_version=resource_version)

    def watch_raw(self, resource: str, *, namespace: str | None = None,
                  resource_version: str | None = None, label_selector: str | None = None,
                  field_selector: str | None = None,
                  progress: watching.Progress | None = None) -> AsyncIterator[watching.RawEvent]:
        """`watch` with events in stored form (for the HTTP stream); `progress` follows the
        revision seen so far."""
        info = self.resource(resource)
        match = listing.matcher(info, label_selector, field_selector)
        meta.parse_revision(resource_version)
        return watching.watch_raw(self, info, namespace=namespace, match=match,
                                  resource_version=resource_version, progress=progress)

    # ---- create --------------------------------------------------------------------------

    async def create(self, resource: str, obj: Obj, *, namespace: str | None = None,
                     dry_run: bool = False, owned: bool = False) -> Written:
        """`owned`: nobody else holds `obj` or anything inside it (the HTTP layer parsed it
        for this call), so admission defaults it in place rather than in a copy."""
        info = self.resource(resource)
        obj = versions.prepare_create(info, obj, namespace, now=self.now, rng=self.rng)
        name, ns = obj["metadata"]["name"], obj["metadata"].get("namespace")
        if info.namespaced:
            await self._check_namespace(ns)
        for plugin in self.plugins:
            await plugin(self, info.plural, obj)
        if owned and self.admit is default_admit and not info.custom:
            obj, warnings = default_admit(info.plural, obj, copy=False)
        else:
            obj, warnings = self._admit(info, obj)
        alloc = Allocation()
        if info.plural == "services":
            if await self.store.get(self.key(info, name, ns)) is not None:
                raise self._exists(info, name)       # before its addresses look taken
            alloc = self.services.on_create(obj)
        if dry_run:
            self.services.rollback(alloc)
            return Written(obj, warnings, created=True)
        value = meta.encode(obj)
        try:
            kv = await self.store.create(self.key(info, name, ns), value)
        except AlreadyExists:
            self.services.rollback(alloc)
            raise self._exists(info, name) from None
        except BaseException:
            self.services.rollback(alloc)
            raise
        obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
        if info.plural == "namespaces":
            self.namespaces.created(name)
        log.debug("%s/%s: created at revision %d", info.plural, name, kv.mod_revision)
        return Written(obj, warnings, created=True, raw=meta.with_revision(value,
                                                                            kv.mod_revision))

    @staticmethod
    def _exists(info: ResourceInfo, name: str) -> AlreadyExists:
        return AlreadyExists(f'{info.plural} "{name}" already exists', kind=info.plural,
                             name=name, group=info.group)

    async def _check_namespace(self, namespace: str) -> None:
        if self.namespaces.is_terminating(namespace):
            raise Forbidden(f"unable to create new content in namespace {namespace} because "
                            "it is being terminated", kind="namespaces", name=namespace)
        if self.namespaces.is_known(namespace):
            return
        if await self.store.get(f"/registry/namespaces/{namespace}") is None:
            raise NotFound(f'namespaces "{namespace}" not found; create it first with '
                           f"'kubectl create namespace {namespace}'", kind="namespaces",
                           name=namespace)

    # ---- update and patch ----------------------------------------------------------------

    async def update(self, resource: str, obj: Obj, *, name: str | None = None,
                     namespace: str | None = None, subresource: str | None = None,
                     dry_run: bool = False) -> Written:
        info = self.resource(resource)
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise BadRequest(f"the body of a {info.kind} update must be an object with "
                             "metadata")
        md = obj["metadata"]
        name = name or md.get("name")
        if md.get("name") and md["name"] != name:
            raise BadRequest(f"the name of the object ({md['name']}) does not match the name "
                             f"on the URL ({name})")
        if not name:
            raise BadRequest(f"{info.kind}: metadata.name is required for an update")
        namespace = namespace or md.get("namespace") or ("default" if info.namespaced else None)
        if info.namespaced and md.get("namespace") not in (None, "", namespace):
            raise BadRequest(f"the namespace of the provided object ({md['namespace']}) does "
                             f"not match the namespace sent on the request ({namespace})")
        versions.check_kind(info, obj)
        if subresource == ephemeral.SUB and info.plural == "pods":
            return await ephemeral.update_ephemeral(self, name, obj,
                                                    namespace=namespace or "default",
                                                    dry_run=dry_run)
        strict = bool(md.get("resourceVersion"))
        for _ in range(_RETRIES):
            kv = await self.get_kv(info, name, namespace)
            try:
                return await self.write_update(info, kv, meta.decode(kv), obj,
                                               subresource=subresource, dry_run=dry_run)
            except Conflict:
                if strict:
                    raise
        raise meta.conflict(info, name)

    async def patch(self, resource: str, name: str, body: Any, *, patch_type: str = "merge",
                    namespace: str | None = None, subresource: str | None = None,
                    field_manager: str | None = None, force: bool = False,
                    dry_run: bool = False) -> Written:
        info = self.resource(resource)
        if info.namespaced and not namespace:
            namespace = "default"
        for _ in range(_RETRIES):
            kv = await self.store.get(self.key(info, name, namespace))
            if kv is None:
                if patch_type == "apply" and subresource is None:
                    return await self._apply_create(info, name, namespace, body, dry_run)
                raise meta.not_found(info, name)
            current = meta.decode(kv)
            try:
                if subresource == "scale":
                    return await subresources.patch_scale(self, info, kv, current, body,
                                                          patch_type=patch_type,
                                                          dry_run=dry_run)
                if subresource == ephemeral.SUB and info.plural == "pods":
                    return await ephemeral.patch_ephemeral(self, kv, current, body,
                                                           patch_type=patch_type,
                                                           dry_run=dry_run)
                new = versions.apply_patch(patch_type, meta.decode(kv), body)  # old stays intact
                return await self.write_update(info, kv, current, new,
                                               subresource=subresource, dry_run=dry_run)
            except Conflict:
                if versions.patch_has_rv(body):
                    raise
        raise meta.conflict(info, name)

    async def _apply_create(self, info: ResourceInfo, name: str, namespace: str | None,
                            body: Any, dry_run: bool) -> Written:
        if not isinstance(body, dict):
            raise BadRequest("an apply patch must be a whole object")
        body = copy.deepcopy(body)
        body.setdefault("metadata", {}).setdefault("name", name)
        if body["metadata"]["name"] != name:
            raise BadRequest(f"the name of the object ({body['metadata']['name']}) does not "
                             f"match the name on the URL ({name})")
        return await self.create(info.plural, body, namespace=namespace, dry_run=dry_run)

    async def write_update(self, info: ResourceInfo, kv: KV, old: Obj, new: Obj, *,
                           subresource: str | None, dry_run: bool = False) -> Written:
        """Turn `new` into the next stored version of `old` (read at `kv`) and write it with
        compare-and-swap on kv's revision. Raises Conflict if new carries a stale rv."""
        name = old["metadata"]["name"]
        rv = (new.get("metadata") or {}).get("resourceVersion")
        if rv and rv != str(kv.mod_revision):
            raise meta.conflict(info, name)
        new = versions.merge_update(info, old, new, subresource=subresource)
        warnings: list[str] = []
        alloc = Allocation()
        if subresource is None:
            if info.plural == "services":
                self.services.drop_type_dependent(new, old)
            new, warnings = self._admit(info, new, old)
            versions.bump_generation(old, new)
            if info.plural == "services":        # before encoding: it fills in nodePorts
                alloc = self.services.on_update(new, old)
        elif subresource == "status":
            default_status(info.plural, new)
        try:
            return await self._write_next(info, kv, old, new, warnings, alloc, dry_run)
        except BaseException:
            self.services.rollback(alloc)
            raise

    async def _write_next(self, info: ResourceInfo, kv: KV, old: Obj, new: Obj,
                          warnings: builtins.list[str], alloc: Allocation,
                          dry_run: bool) -> Written:
        """The compare-and-swap write of write_update; what `alloc` took is given back
        unless the new version is durably stored."""
        value = meta.encode(new)
        if value == kv.value:
            self.services.rollback(alloc)
            return Written(old, warnings)
        if deletion.should_finish(info, old, new):
            self.services.rollback(alloc)
            if dry_run:
                return Written(new, warnings)
            return Written(await deletion.remove(self, info, kv, new), warnings)
        if dry_run:                       # as it would be, at the revision it was read
            self.services.rollback(alloc)
            new["metadata"]["resourceVersion"] = str(kv.mod_revision)
            return Written(new, warnings)
        name = old["metadata"]["name"]
        try:
            out = await self.store.update(kv.key, value, expected_revision=kv.mod_revision)
        except NotFound:
            raise meta.not_found(info, name) from None
        except Conflict:
            raise meta.conflict(info, name) from None
        self.services.commit(alloc)
        new["metadata"]["resourceVersion"] = str(out.mod_revision)
        return Written(new, warnings, raw=meta.with_revision(value, out.mod_revision))

    # ---- delete and subresources (see deletion.py, subresources.py) ----------------------

    async def delete(self, resource: str, name: str, *, namespace: str | None = None,
                     propagation: str | None = None, grace_period: int | None = None,
                     preconditions_uid: str | None = None,
                     preconditions_rv: str | None = None, dry_run: bool = False) -> Obj:
        info = self.resource(resource)
        if info.namespaced and not namespace:
            namespace = "default"
        return await deletion.delete(self, info, name, namespace=namespace,
                                     propagation=propagation, grace_period=grace_period,
                                     preconditions_uid=preconditions_uid,
                                     preconditions_rv=preconditions_rv, dry_run=dry_run)

    async def get_scale(self, resource: str, name: str, *, namespace: str | None) -> Obj:
        info = self.resource(resource)
        return subresources.scale_of(info, meta.decode(await self.get_kv(info, name,
                                                                          namespace)))

    async def update_scale(self, resource: str, name: str, scale: Obj, *,
                           namespace: str | None, dry_run: bool = False) -> Written:
        info = self.resource(resource)
        return await subresources.update_scale(self, info, name, scale, namespace=namespace,
                                               dry_run=dry_run)

    async def bind(self, name: str, binding: Obj, *, namespace: str) -> Obj:
        return await subresources.bind(self, name, binding, namespace=namespace)

    @staticmethod
    def key(info: ResourceInfo, name: str, namespace: str | None) -> str:
        if info.namespaced and not namespace:
            namespace = "default"
        return info.key(name, namespace)

    def namespaced_resources(self) -> builtins.list[ResourceInfo]:
        return [r for r in self.registry.all() if r.namespaced and r.plural != "bindings"]
