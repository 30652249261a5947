"""Typed keys of the aiohttp application (`web.AppKey`): what handlers find in `app[...]`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from control.api.crd import CRDs
from control.api.objects import ObjectService
from control.api.openapi import OpenAPI
from control.api.reviews import ReviewHandler
from control.api.tokenrequest import TokenRequests

OBJECTS = web.AppKey("objects", ObjectService)
# Long-lived streaming handlers (watch, log follow) register here; shutdown cancels them.
STREAMS: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("streams", set)
STOPPING = web.AppKey("stopping", asyncio.Event)
BOOKMARK_INTERVAL = web.AppKey("bookmark_interval", float)
# create-only reviews (TokenReview, SubjectAccessReview, ...) by plural: control.api.reviews
REVIEWS: web.AppKey[Mapping[str, ReviewHandler]] = web.AppKey("reviews", Mapping)
# the serviceaccounts/token subresource: control.api.tokenrequest
TOKEN_REQUESTS = web.AppKey("token_requests", TokenRequests)
# the OpenAPI documents and the upstream definitions field validation walks: control.api.openapi
OPENAPI = web.AppKey("openapi", OpenAPI)
# the CustomResourceDefinitions the server serves: control.api.crd
CRDS = web.AppKey("crds", CRDs)
# the CustomResourceDefinitions installed at start (control.api.crdinstall; control.crds')
INSTALLED_CRDS: web.AppKey[Callable[[], list[dict[str, Any]]]] = web.AppKey("installed_crds")
