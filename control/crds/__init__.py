"""The CustomResourceDefinitions a knet cluster has installed from the start, as a cluster
with the Gateway API and Istio installed has: the official definitions of the kinds knet's
mesh implements, shipped verbatim as package data (each file's header names its origin and
version). The API server creates them at start (control.api.crdinstall) and serves them with
the generic CRD machinery (control.api.crd); knet's semantic checks that a schema cannot
express are added to them by control.models.meshkinds.

`mesh_crds()` parses the files once per process (they are read-only data) and hands out
copies, so no caller can change what another one installs.
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from typing import Any

import yaml  # type: ignore[import-untyped]

__all__ = ["FILES", "mesh_crds"]

FILES = ("gateway-api-v1.6.1.yaml", "istio-1.30.3.yaml")


@functools.cache
def _parsed() -> tuple[dict[str, Any], ...]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out: list[dict[str, Any]] = []
    for name in FILES:
        text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
        out.extend(d for d in yaml.load_all(text, Loader=loader) if d)
    return tuple(out)


def mesh_crds() -> list[dict[str, Any]]:
    """The mesh's CustomResourceDefinitions (Gateway API, Istio), fresh copies."""
    return copy.deepcopy(list(_parsed()))
