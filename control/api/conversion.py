"""Serving one kind in several versions with conversion `None`, as kube-apiserver does for
a CustomResourceDefinition whose `spec.conversion.strategy` is None (the default): the
objects are stored once, in the storage version, and only `apiVersion` differs between
versions. A request through another served version (a *view*, `Registry.view`) is checked
against that version's schema, stored with the storage apiVersion, and every object it
gets back (get, list, watch, the answer to a write) carries the version it asked for.
A built-in kind served in more versions (HorizontalPodAutoscaler v1 over stored v2) converts
its fields too, by the functions in `BUILTIN` (plural, view version) -> (in, out).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from control.api import codec
from control.api.meta import Obj
from control.models import autoscaling
from control.models.resources import Registry, ResourceInfo

__all__ = ["BUILTIN", "Converter"]

Convert = Callable[[Obj], Obj]
BUILTIN: dict[tuple[str, str], tuple[Convert, Convert]] = {
    ("horizontalpodautoscalers", "v1"): (autoscaling.v1_to_v2, autoscaling.v2_to_v1),
}


class Converter:
    """The conversions of one request: `view` is what the URL named, `storage` the stored
    kind; when they are the same version every method is the identity."""

    def __init__(self, registry: Registry, view: ResourceInfo) -> None:
        self.view = view
        builtin = BUILTIN.get((view.plural, view.version))
        self.storage = registry.by_plural(view.plural) if view.custom or builtin else view
        self.active = self.storage.version != view.version
        self._registry = registry
        self._in: Convert | None = builtin[0] if builtin else None
        self._out: Convert | None = builtin[1] if builtin else None

    def incoming(self, body: Any, *, admit: bool) -> Any:
        """A body written through the view: validated (pruned, defaulted) with the view's
        schema when `admit` (creates and updates), then relabelled to the storage version."""
        if not self.active or not isinstance(body, dict):
            return body
        if body.get("apiVersion") not in (None, self.view.api_version):
            return body                    # the object layer names the mismatch
        if admit:
            kind = self._registry.custom_admit(self.storage)
            by_version = getattr(kind, "by_version", {})
            own = by_version.get(self.view.version)
            if own is not None:
                body, _ = own(self.view, body, None)
        if self._in is not None:
            body = self._in(body)
        body["apiVersion"] = self.storage.api_version
        return body

    def outgoing(self, obj: Obj) -> Obj:
        if self.active and isinstance(obj, dict) and obj.get("kind") == self.view.kind:
            if self._out is not None:
                obj = self._out(obj)
            obj["apiVersion"] = self.view.api_version
        return obj

    def outgoing_raw(self, raw: bytes) -> bytes:
        if not self.active:
            return raw
        return codec.dumps(self.outgoing(orjson.loads(raw)))
