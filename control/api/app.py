"""The aiohttp application factory of knet's Kubernetes-compatible API server.

`create_app(store, settings)` wires the object layer (started in `cleanup_ctx`), one
middleware (authentication and authorization through control.auth, and every failure
as a Status), discovery, OpenAPI and the
REST routes. Streaming handlers register in `app[STREAMS]`; `on_shutdown` cancels them so a
graceful stop never waits for a watching client.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from control.api import crd, discovery, metricsapi, openapi, proxysub, rest
from control.api.ca import ClusterCA
from control.api.codec import MAX_BODY
from control.api.crdinstall import ensure_crds
from control.api.keys import (
    BOOKMARK_INTERVAL,
    CRDS,
    INSTALLED_CRDS,
    OBJECTS,
    OPENAPI,
    REVIEWS,
    STOPPING,
    STREAMS,
    TOKEN_REQUESTS,
)
from control.api.meshca import workload_certificates
from control.api.meta import Obj
from control.api.middleware import guarded
from control.api.objects import AdmissionPlugin, Admit, ObjectService
from control.api.reviews import ReviewHandler
from control.api.tokenrequest import TokenRequests
from control.auth.legacy import AuthenticatedAllowed
from control.auth.sakey import SigningKey
from control.auth.satokens import ISSUER, ServiceAccountTokens, TokenIssuer
from control.auth.tokenreview import token_review
from control.auth.tokens import ADMIN, StaticTokens
from control.auth.types import Authenticator, Authorizer, FirstAuthenticator
from control.auth.whoami import self_subject_review
from control.crds import mesh_crds
from control.models.meshkinds import MESH_CHECKS
from control.store.base import Store

log = logging.getLogger(__name__)

__all__ = ["OBJECTS", "Settings", "create_app"]


@dataclass(frozen=True)
class Settings:
    token: str                          # the admin's bearer token (user kubernetes-admin)
    authn: Authenticator | None = None  # None: the admin token only (service-account
                                        # tokens are always accepted after it)
    authz: Authorizer | None = None     # None: control.auth.legacy.AuthenticatedAllowed
    max_body: int = MAX_BODY
    admit: Admit | None = None          # None: control.models.validation.admit
    bookmark_interval: float = 30.0     # seconds between BOOKMARKs on watches that allow them
    reviews: Mapping[str, ReviewHandler] = field(default_factory=dict)  # by plural
    sa_key: SigningKey | None = None    # None: a fresh key, kept in memory only
    api_audiences: tuple[str, ...] = (ISSUER,)
    plugins: tuple[AdmissionPlugin, ...] = ()   # e.g. control.api.saadmission
    mesh_ca: ClusterCA | None = None    # signs mesh workload certificates (control.api.meshca)
    metric_resolution: float = 15.0     # seconds between kubelet scrapes (control.api.metricsapi)
    crds: Callable[[], list[Obj]] | None = None  # installed at start; None: control.crds'


def create_app(store: Store, settings: Settings) -> web.Application:
    objects = ObjectService(store, admit=settings.admit,
                            plugins=(*settings.plugins, crd.admission))
    static = settings.authn or StaticTokens({settings.token: ADMIN})
    key = settings.sa_key or SigningKey.generate()
    audiences = settings.api_audiences
    accounts = ServiceAccountTokens(key, objects, audiences=audiences, now=objects.now)
    authz = settings.authz or AuthenticatedAllowed()
    app = web.Application(middlewares=[guarded(FirstAuthenticator([static, accounts]), authz)],
                          client_max_size=settings.max_body)
    app[OBJECTS] = objects
    app[STREAMS] = set()
    reviews = {"selfsubjectreviews": self_subject_review,
               "tokenreviews": token_review(static, accounts, audiences=audiences),
               **settings.reviews}
    if settings.mesh_ca is not None:
        reviews["workloadcertificaterequests"] = workload_certificates(settings.mesh_ca)
    app[REVIEWS] = reviews
    app[TOKEN_REQUESTS] = TokenRequests(TokenIssuer(key, now=objects.now),
                                        audiences=audiences)
    app[STOPPING] = asyncio.Event()
    app[BOOKMARK_INTERVAL] = settings.bookmark_interval
    discovery.build_routes(app, objects.registry, extra=(metricsapi.DISCOVERY,))
    app[OPENAPI] = openapi.build_routes(app, openapi.OpenAPI(
        objects.registry.views, custom=objects.registry.custom_schema))
    app[CRDS] = crd.CRDs(objects, on_change=app[OPENAPI].invalidate, checks=MESH_CHECKS)
    app[INSTALLED_CRDS] = settings.crds or mesh_crds
    proxysub.add_routes(app, OBJECTS)
    metricsapi.add_routes(app, resolution=settings.metric_resolution)  # before rest's catch-all
    rest.add_routes(app)
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_stop_streams)
    return app


# The collector runs when tracked allocations minus deallocations pass the threshold. Each
# request has ~100 dicts and lists alive at once (the parsed body, the object, aiohttp's
# request) but keeps only a few: at the default 700, concurrent requests trigger collections
# that promote their in-flight objects and end in full collections (measured: ~50 us of GC per
# create under 50 clients); at 20,000 a young collection comes every few thousand creates.
GC_YOUNG_THRESHOLD = 20_000


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    await app[OBJECTS].start()
    await ensure_crds(app[OBJECTS], app[INSTALLED_CRDS]())
    await app[CRDS].start()
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], GC_YOUNG_THRESHOLD), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        await app[CRDS].stop()


async def _stop_streams(app: web.Application) -> None:
    app[STOPPING].set()
    tasks = [task for task in app[STREAMS]]
    for task in tasks:
        task.cancel()
    if tasks:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait(tasks, timeout=5)
        log.info("stopped %d watch streams for shutdown", len(tasks))
