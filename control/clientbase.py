"""The `Client` protocol: how everything outside the API server's handlers reads and writes
API objects. Controllers, the scheduler, the kubelet, the proxy, DNS and the CLI all take a
`Client`; two implementations satisfy it and pass one contract suite:

- `control.client.HttpClient`: aiohttp over the REST API with a bearer token (agents, CLI);
- `control.api.local.LocalClient`: in-process, straight onto the object layer and the store
  (the controllers inside `knet control`, and unit tests on the memory store).

Objects are plain dicts in Kubernetes wire form (`metadata`, `spec`, `status`), always with
`kind` and `apiVersion`. Resources are named by plural (`pods`, `deployments`), see
`control.models.resources`. Errors are `control.errors.ApiError` subclasses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

Obj = dict[str, Any]
PatchType = Literal["merge", "strategic", "json", "apply"]


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]
    object: Obj


@dataclass(frozen=True, slots=True)
class ObjectList:
    items: list[Obj]
    resource_version: str
    continue_token: str = ""


@runtime_checkable
class Client(Protocol):
    async def get(self, resource: str, name: str, *, namespace: str | None = None,
                  subresource: str | None = None) -> Obj: ...

    async def list(self, resource: str, *, namespace: str | None = None,
                   label_selector: str | None = None, field_selector: str | None = None,
                   limit: int = 0, continue_token: str | None = None) -> ObjectList:
        """namespace=None lists across all namespaces."""

    async def create(self, resource: str, obj: Obj, *, namespace: str | None = None,
                     subresource: str | None = None) -> Obj:
        """namespace defaults to obj.metadata.namespace (then "default" for namespaced)."""

    async def update(self, resource: str, obj: Obj, *, subresource: str | None = None) -> Obj:
        """PUT: replaces the object; Conflict if metadata.resourceVersion is stale."""

    async def patch(self, resource: str, name: str, patch: Any, *,
                    patch_type: PatchType = "merge", namespace: str | None = None,
                    subresource: str | None = None, field_manager: str | None = None,
                    force: bool = False) -> Obj: ...

    async def delete(self, resource: str, name: str, *, namespace: str | None = None,
                     propagation: str | None = None, grace_period: int | None = None,
                     preconditions_uid: str | None = None) -> Obj:
        """Returns the deleted object (or the object marked for deletion, with
        metadata.deletionTimestamp set, while finalizers or graceful deletion keep it)."""

    def watch(self, resource: str, *, namespace: str | None = None,
              resource_version: str | None = None, label_selector: str | None = None,
              field_selector: str | None = None) -> AsyncIterator[WatchEvent]:
        """Events after resource_version ("0" or None: ADDED for the current state first).
        Raises Gone if resource_version is too old. Ends when the caller stops iterating."""

    async def close(self) -> None: ...
