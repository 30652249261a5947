"""`LocalClient`: the `control.clientbase.Client` protocol served in-process by the object
layer, with no HTTP in between. The controllers and the scheduler inside `knet control` use
it, and unit tests run it on the memory store:

    objects = ObjectService(MemoryStore()); await objects.start()
    client = LocalClient(objects)
    await client.create("pods", {...}, namespace="default")

Objects handed out are fresh dicts (callers may mutate them); admission warnings are logged.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from control.api import meta
from control.api.objects import ObjectService, Written
from control.clientbase import Obj, ObjectList, PatchType, WatchEvent
from control.errors import BadRequest
from control.models.metrics import MetricsSource

log = logging.getLogger(__name__)


def _own(obj: Any) -> Any:
    """A private copy for the object layer, which takes ownership of what it is given."""
    return meta.loads(meta.dumps(obj))

__all__ = ["LocalClient"]


class LocalClient:
    def __init__(self, objects: ObjectService, *, metrics: MetricsSource | None = None) -> None:
        self.objects = objects
        self.metrics = metrics      # pods' resource usage (the HPA controller reads it)

    def __repr__(self) -> str:
        return f"<LocalClient {self.objects!r}>"

    @staticmethod
    def _out(written: Written) -> Obj:
        for warning in written.warnings:
            log.warning("%s/%s: %s", written.object.get("kind"),
                        written.object["metadata"].get("name"), warning)
        return written.object

    async def get(self, resource: str, name: str, *, namespace: str | None = None,
                  subresource: str | None = None) -> Obj:
        if subresource == "scale":
            return await self.objects.get_scale(resource, name, namespace=namespace)
        if subresource not in (None, "status"):
            raise BadRequest(f"{resource}/{subresource} cannot be read in-process")
        return await self.objects.get(resource, name, namespace=namespace)

    async def list(self, resource: str, *, namespace: str | None = None,
                   label_selector: str | None = None, field_selector: str | None = None,
                   limit: int = 0, continue_token: str | None = None) -> ObjectList:
        return await self.objects.list(resource, namespace=namespace,
                                       label_selector=label_selector,
                                       field_selector=field_selector, limit=limit,
                                       continue_token=continue_token)

    async def create(self, resource: str, obj: Obj, *, namespace: str | None = None,
                     subresource: str | None = None) -> Obj:
        if subresource == "binding" and resource == "pods":
            ns = namespace or obj.get("metadata", {}).get("namespace") or "default"
            return await self.objects.bind(obj["metadata"]["name"], obj, namespace=ns)
        obj = _own(obj)
        if subresource is not None:
            raise BadRequest(f"{resource}/{subresource} cannot be created; only pods/binding")
        if resource == "bindings":
            ns = namespace or obj.get("metadata", {}).get("namespace") or "default"
            return await self.objects.bind(obj["metadata"]["name"], obj, namespace=ns)
        return self._out(await self.objects.create(resource, obj, namespace=namespace))

    async def update(self, resource: str, obj: Obj, *, subresource: str | None = None) -> Obj:
        obj = _own(obj)
        md = obj.get("metadata") or {}
        if subresource == "scale":
            return self._out(await self.objects.update_scale(
                resource, md.get("name", ""), obj, namespace=md.get("namespace")))
        return self._out(await self.objects.update(resource, obj, namespace=md.get("namespace"),
                                                   subresource=subresource))

    async def patch(self, resource: str, name: str, patch: Any, *,
                    patch_type: PatchType = "merge", namespace: str | None = None,
                    subresource: str | None = None, field_manager: str | None = None,
                    force: bool = False) -> Obj:
        return self._out(await self.objects.patch(
            resource, name, _own(patch), patch_type=patch_type, namespace=namespace,
            subresource=subresource, field_manager=field_manager, force=force))

    async def delete(self, resource: str, name: str, *, namespace: str | None = None,
                     propagation: str | None = None, grace_period: int | None = None,
                     preconditions_uid: str | None = None) -> Obj:
        return await self.objects.delete(resource, name, namespace=namespace,
                                         propagation=propagation, grace_period=grace_period,
                                         preconditions_uid=preconditions_uid)

    def watch(self, resource: str, *, namespace: str | None = None,
              resource_version: str | None = None, label_selector: str | None = None,
              field_selector: str | None = None) -> AsyncIterator[WatchEvent]:
        return self.objects.watch(resource, namespace=namespace,
                                  resource_version=resource_version,
                                  label_selector=label_selector, field_selector=field_selector)

    async def close(self) -> None:
        return None
