"""The mesh kinds as the API server admits them, without a server: the CRDs knet installs
(control/crds) turned into their ResourceInfo and CustomKind (schema, pruning, defaulting,
printer columns) with knet's semantic checks (control.models.meshkinds), as
control.api.crd.CRDs registers them."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from control.api import crdtable
from control.api.crd import CustomKind, info_of, storage_version
from control.crds import mesh_crds
from control.models.meshkinds import MESH_CHECKS
from control.models.resources import ResourceInfo

Obj = dict[str, Any]


@functools.cache
def _kinds() -> dict[str, tuple[ResourceInfo, CustomKind]]:
    out = {}
    for crd in mesh_crds():
        version = storage_version(crd) or {}
        kind = CustomKind((version.get("schema") or {}).get("openAPIV3Schema"),
                          version.get("additionalPrinterColumns"), version.get("subresources"),
                          MESH_CHECKS.get(crd["metadata"]["name"]))
        info = info_of(crd)
        out[info.plural] = (info, kind)
    return out


def info(plural: str) -> ResourceInfo:
    return _kinds()[plural][0]


def admit(plural: str, obj: Obj) -> tuple[Obj, list[str]]:
    """Prune, default and validate as the CRD's storage version; Invalid on failure."""
    i, kind = _kinds()[plural]
    return kind(i, obj, None)


def table(plural: str, objs: list[Obj], *, now: datetime) -> Obj:
    return crdtable.table(_kinds()[plural][1], objs, now=now)
