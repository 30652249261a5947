"""Status write-back: the conditions the compiler computed (Accepted, ResolvedRefs) onto the
HTTPRoutes (`status.parents[]`, Gateway API's shape) and VirtualServices
(`status.conditions`), so `kubectl get -o yaml` shows why a route is not in effect.

Key design choice: every node's proxy compiles the same table, so each may write; a write
happens only when the stored status differs from the computed one (compared without
`lastTransitionTime`), which makes the writes idempotent across nodes and quiet when
nothing changed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from control.clientbase import Client
from control.errors import ApiError
from control.models.conditions import without_transition_times
from control.models.meta import TopLevel

log = logging.getLogger(__name__)

__all__ = ["desired_status", "publish_status"]

_RESOURCE = {"HTTPRoute": "httproutes", "VirtualService": "virtualservices"}


def _stamp(value: Any, now: str) -> Any:
    if isinstance(value, dict):
        out = {k: _stamp(v, now) for k, v in value.items()}
        if "type" in out and "status" in out and "reason" in out:
            out.setdefault("lastTransitionTime", now)
        return out
    if isinstance(value, list):
        return [_stamp(v, now) for v in value]
    return value


def desired_status(kind: str, computed: list[dict[str, object]]) -> dict[str, object]:
    return {"parents": computed} if kind == "HTTPRoute" else {"conditions": computed}


async def publish_status(client: Client, status: Mapping[str, list[dict[str, object]]],
                         objects: Mapping[str, Mapping[str, TopLevel]]) -> int:
    """Write the statuses that differ from the stored ones; how many were written."""
    written = 0
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for key, computed in status.items():
        kind, _, nsname = key.partition(" ")
        resource = _RESOURCE.get(kind)
        obj = objects.get(resource or "", {}).get(nsname)
        if resource is None or obj is None:
            continue
        want = desired_status(kind, computed)
        have = (obj.model_extra or {}).get("status") or {}
        if without_transition_times(have) == without_transition_times(want):
            continue
        ns, _, name = nsname.partition("/")
        try:
            await client.patch(resource, name, {"status": _stamp(want, now)}, namespace=ns,
                               subresource="status")
            written += 1
        except ApiError as exc:  # gone meanwhile, or this identity may not write status
            log.debug("mesh: status of %s %s not written: %s", kind, nsname, exc)
    return written
