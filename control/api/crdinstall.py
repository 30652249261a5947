"""The CustomResourceDefinitions installed at start (control.crds: the Gateway API's and
Istio's official definitions of the mesh kinds), as a cluster where an admin ran
`kubectl apply -f` on them: each is created when missing and replaced when knet ships another
version of it (its spec differs), so a restart on an old state dir upgrades it, and a CRD an
admin deleted comes back on the next start. This runs before control.api.crd.CRDs reads the
store, so the kinds are served from the first request on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from control.api.crd import PLURAL, CRDs
from control.crds import mesh_crds
from control.errors import AlreadyExists, Conflict, NotFound
from control.models.meshkinds import MESH_CHECKS

if TYPE_CHECKING:
    from control.api.objects import ObjectService

__all__ = ["ensure_crds", "serve_installed_crds"]

log = logging.getLogger(__name__)


async def ensure_crds(objects: ObjectService, crds: Iterable[dict[str, Any]]) -> None:
    """Create each CRD that is missing, replace each whose spec differs; idempotent."""
    for crd in crds:
        name = crd["metadata"]["name"]
        try:
            have = await objects.get(PLURAL, name)
        except NotFound:
            try:
                await objects.create(PLURAL, crd)
                log.info("customresourcedefinition %s: installed", name)
            except AlreadyExists:
                pass
            continue
        if have.get("spec") == crd.get("spec"):
            continue
        new = {**crd, "metadata": {**have["metadata"], **crd["metadata"]}}
        try:
            await objects.update(PLURAL, new, name=name)
            log.info("customresourcedefinition %s: upgraded to knet's version", name)
        except (Conflict, NotFound):
            log.warning("customresourcedefinition %s: changed while knet upgraded it; "
                        "kept as it is", name)


async def serve_installed_crds(objects: ObjectService) -> CRDs:
    """For an ObjectService used in-process without the app (tests, tools): install the
    mesh's CRDs and serve them as the API server does; stop the returned CRDs when done."""
    await ensure_crds(objects, mesh_crds())
    crds = CRDs(objects, checks=MESH_CHECKS)
    await crds.start()
    return crds
