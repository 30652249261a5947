"""Lists of the object layer (control/api/objects.py): which stored objects a LIST returns,
page by page. Label and field selectors become one match function (`matcher`, also what a
watch filters with); objects are decoded only when a selector needs to look at them, and a
`limit` reads the store in chunks and hands back kube-apiserver's continue token (the list's
revision and the last key), so the next page is consistent with the first.
"""

from __future__ import annotations

from collections.abc import Callable

from control.api import meta
from control.api.meta import Obj
from control.models.resources import ResourceInfo
from control.models.selectors import parse_field_selector, parse_label_selector
from control.store.base import KV, Store

__all__ = ["matcher", "scan"]

_Hits = list[tuple[KV, Obj | None]]
_LIST_CHUNK = 500


async def scan(store: Store, info: ResourceInfo, namespace: str | None,
               label_selector: str | None, field_selector: str | None, limit: int,
               continue_token: str | None) -> tuple[_Hits, int, str]:
    """Matching (kv, decoded object or None when no filter needed decoding), the list's
    revision and the continue token."""
    match = matcher(info, label_selector, field_selector)
    namespace = namespace or _namespace_from(info, field_selector)
    prefix = info.prefix(namespace)
    start: str | None = None
    list_rev = 0
    if continue_token:
        list_rev, start = meta.read_continue(continue_token, prefix)
    hits: _Hits = []
    while True:
        chunk = 0
        if limit:
            chunk = limit - len(hits) + 1 if match is None else _LIST_CHUNK
        kvs, rev = await store.list(prefix, start_after=start, limit=chunk)
        list_rev = list_rev or rev
        for kv in kvs:
            obj = None
            if match is not None:
                obj = meta.decode(kv)
                if not match(obj):
                    continue
            if limit and len(hits) >= limit:       # one more exists: a next page
                return hits, list_rev, meta.make_continue(list_rev, hits[-1][0].key)
            hits.append((kv, obj))
        if not chunk or len(kvs) < chunk:
            return hits, list_rev, ""
        start = kvs[-1].key


def matcher(info: ResourceInfo, label_selector: str | None,
            field_selector: str | None) -> Callable[[Obj], bool] | None:
    labels = parse_label_selector(label_selector) if label_selector else None
    fields = parse_field_selector(field_selector) if field_selector else None
    if fields is not None:
        fields.check_supported(info.plural)
    if (labels is None or labels.is_empty) and (fields is None or fields.is_empty):
        return None

    def match(obj: Obj) -> bool:
        if labels is not None and not labels.matches(obj["metadata"].get("labels")):
            return False
        return fields is None or fields.matches(obj)
    return match


def _namespace_from(info: ResourceInfo, field_selector: str | None) -> str | None:
    if not info.namespaced or not field_selector:
        return None
    return parse_field_selector(field_selector).value_for("metadata.namespace")
