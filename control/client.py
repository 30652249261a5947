"""`HttpClient`: the `control.clientbase.Client` protocol over the Kubernetes REST API with aiohttp.

Agents, the CLI and tests use it to talk to `knet control` (or any Kubernetes-compatible
server). One pooled `aiohttp.ClientSession` per client, created lazily inside the running
loop; every request has a timeout. Error responses carry a `Status` body and come back as the
matching `control.errors.ApiError`; a server that cannot be reached is `ApiUnavailable` (503).
`watch()` yields `WatchEvent`s from a newline-delimited JSON stream; it does not reconnect:
that is the informer's job (`control.informer`).
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml  # type: ignore[import-untyped]

from control.clientbase import Obj, ObjectList, PatchType, WatchEvent
from control.errors import ApiError, BadRequest, NotFound, from_status
from control.models.meshkinds import MESH_RESOURCES
from control.models.resources import ResourceInfo, by_plural

__all__ = ["PATCH_CONTENT_TYPES", "ApiUnavailable", "HttpClient"]

log = logging.getLogger(__name__)
TOKEN_FILE_TTL = 60.0       # seconds a token read from a file is used before re-reading it

PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}


class ApiUnavailable(ApiError):
    """The API server could not be reached (connection refused, reset, timed out)."""
    code, reason = 503, "ServiceUnavailable"


class HttpClient:
    """Client over HTTP(S). `base_url` like `http://127.0.0.1:6443`; `token` is the bearer
    token; `timeout` bounds every request except watches, whose streams are bounded by
    `watch_timeout` (the server is asked to end them after that many seconds)."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 30.0,
                 watch_timeout: float = 300.0, ssl_context: ssl.SSLContext | bool | None = None,
                 pool_size: int = 64, token_file: Path | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._token_file = token_file     # re-read every TOKEN_FILE_TTL s (rotated tokens)
        self._token_read = -TOKEN_FILE_TTL
        self._timeout = timeout
        self._watch_timeout = watch_timeout
        self._ssl = ssl_context
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        # plurals of CRD kinds: discover(), and the mesh's (CRDs every knet cluster has)
        self._custom: dict[str, ResourceInfo] = {r.plural: r for r in MESH_RESOURCES}

    def __repr__(self) -> str:
        return f"<HttpClient {self.base_url}>"

    def _info(self, resource: str) -> ResourceInfo:
        custom = self._custom.get(resource)
        if custom is not None:
            return custom
        try:
            return by_plural(resource)
        except KeyError:
            raise NotFound(f"unknown resource {resource!r}: a built-in plural, or a custom "
                           "one made known first with 'await client.discover(group, version, "
                           "plural)'") from None

    async def discover(self, group: str, version: str, plural: str) -> ResourceInfo:
        """Learn a CustomResourceDefinition's kind from discovery (/apis/GROUP/VERSION), so
        that `plural` can be used with every method afterwards."""
        doc = await self._request("GET", f"{self.base_url}/apis/{group}/{version}")
        for r in doc.get("resources") or []:
            if r.get("name") == plural:
                info = ResourceInfo(r.get("kind", ""), plural, group, version,
                                    bool(r.get("namespaced")), tuple(r.get("shortNames") or ()),
                                    tuple(r.get("categories") or ()),
                                    singular=r.get("singularName") or "", custom=True)
                self._custom[plural] = info
                return info
        raise NotFound(f"{group}/{version} serves no resource {plural!r}; is its "
                       "CustomResourceDefinition established ('kubectl get crd')?")

    @classmethod
    def from_kubeconfig(cls, path: str | Path, *, context: str | None = None,
                        timeout: float = 30.0) -> HttpClient:
        """A client for the current (or named) context of a kubeconfig file: server URL,
        bearer token (`token`, or `tokenFile`, re-read as client-go does: a projected
        service-account token is rotated), certificate authority or
        insecure-skip-tls-verify."""
        doc = yaml.safe_load(Path(path).read_text()) or {}
        ctx_name = context or doc.get("current-context")
        ctx = _named(doc.get("contexts"), ctx_name, "context", path)
        cluster = _named(doc.get("clusters"), ctx.get("cluster"), "cluster", path)
        user = _named(doc.get("users"), ctx.get("user"), "user", path) if ctx.get("user") else {}
        server = cluster.get("server")
        if not server:
            raise BadRequest(f"kubeconfig {path}: cluster {ctx.get('cluster')!r} has no server; "
                             "rewrite it with 'knet up' or set clusters[].cluster.server")
        token_file = Path(user["tokenFile"]) if user.get("tokenFile") else None
        return cls(server, token=user.get("token"), timeout=timeout, token_file=token_file,
                   ssl_context=_ssl_from_cluster(cluster, Path(path)))

    # ---- plumbing -------------------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Accept": "application/json", "User-Agent": "knet/0.1"}
            if self._token and self._token_file is None:
                headers["Authorization"] = f"Bearer {self._token}"
            connector = aiohttp.TCPConnector(
                limit=self._pool_size, ssl=True if self._ssl is None else self._ssl)
            self._session = aiohttp.ClientSession(headers=headers, connector=connector)
        return self._session

    def _auth(self) -> dict[str, str]:
        """The Authorization header of a token file (the session carries a fixed token)."""
        if self._token_file is None:
            return {}
        now = time.monotonic()
        if now - self._token_read >= TOKEN_FILE_TTL:
            try:
                self._token = self._token_file.read_text().strip()
                self._token_read = now
            except OSError as exc:
                log.warning("token file %s: cannot read it (%s); keeping the last token",
                            self._token_file, exc)
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _url(self, info: ResourceInfo, namespace: str | None, name: str | None = None,
             subresource: str | None = None) -> str:
        path = info.path(namespace if info.namespaced else None, name)
        if subresource:
            path += f"/{subresource}"
        return self.base_url + path

    async def _request(self, method: str, url: str, *, params: dict[str, str] | None = None,
                       body: Any = None, content_type: str = "application/json") -> Obj:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if data is not None else {}
        headers.update(self._auth())
        try:
            async with self._get_session().request(
                    method, url, params=params, data=data, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self._timeout)) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise _error(resp.status, raw, method, url)
        except (TimeoutError, aiohttp.ClientConnectionError) as exc:
            raise ApiUnavailable(f"{method} {url}: cannot reach the API server ({exc!r}); "
                                 "is 'knet control' running and the URL right?") from exc
        result = json.loads(raw) if raw else {}
        if not isinstance(result, dict):
            raise ApiError(f"{method} {url}: expected a JSON object, got {type(result).__name__}")
        return result

    # ---- the Client protocol ----------------------------------------------------------------

    async def get(self, resource: str, name: str, *, namespace: str | None = None,
                  subresource: str | None = None) -> Obj:
        info = self._info(resource)
        obj = await self._request("GET", self._url(info, namespace, name, subresource))
        return obj if subresource not in (None, "status") else _with_kind(obj, info)

    async def list(self, resource: str, *, namespace: str | None = None,
                   label_selector: str | None = None, field_selector: str | None = None,
                   limit: int = 0, continue_token: str | None = None) -> ObjectList:
        info = self._info(resource)
        params = _selector_params(label_selector, field_selector)
        if limit:
            params["limit"] = str(limit)
        if continue_token:
            params["continue"] = continue_token
        body = await self._request("GET", self._url(info, namespace), params=params)
        meta = body.get("metadata") or {}
        items = [_with_kind(i, info) for i in body.get("items") or []]
        return ObjectList(items=items, resource_version=str(meta.get("resourceVersion", "")),
                          continue_token=str(meta.get("continue") or ""))

    async def create(self, resource: str, obj: Obj, *, namespace: str | None = None,
                     subresource: str | None = None) -> Obj:
        info = self._info(resource)
        meta = obj.get("metadata") or {}
        ns = namespace or meta.get("namespace") or ("default" if info.namespaced else None)
        if subresource:
            url = self._url(info, ns, meta.get("name"), subresource)
        else:
            url = self._url(info, ns)
        out = await self._request("POST", url, body=obj)
        return out if subresource else _with_kind(out, info)

    async def update(self, resource: str, obj: Obj, *, subresource: str | None = None) -> Obj:
        info = self._info(resource)
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or ("default" if info.namespaced else None)
        url = self._url(info, ns, meta.get("name"), subresource)
        out = await self._request("PUT", url, body=obj)
        return out if subresource not in (None, "status") else _with_kind(out, info)

    async def patch(self, resource: str, name: str, patch: Any, *,
                    patch_type: PatchType = "merge", namespace: str | None = None,
                    subresource: str | None = None, field_manager: str | None = None,
                    force: bool = False) -> Obj:
        info = self._info(resource)
        params: dict[str, str] = {}
        if field_manager:
            params["fieldManager"] = field_manager
        if force:
            params["force"] = "true"
        ctype = PATCH_CONTENT_TYPES.get(patch_type)
        if ctype is None:
            raise BadRequest(f"patch of {resource}/{name}: unknown patch type {patch_type!r}; "
                             f"use one of {', '.join(PATCH_CONTENT_TYPES)}")
        out = await self._request("PATCH", self._url(info, namespace, name, subresource),
                                  params=params, body=patch, content_type=ctype)
        return out if subresource not in (None, "status") else _with_kind(out, info)

    async def delete(self, resource: str, name: str, *, namespace: str | None = None,
                     propagation: str | None = None, grace_period: int | None = None,
                     preconditions_uid: str | None = None) -> Obj:
        info = self._info(resource)
        opts: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation:
            opts["propagationPolicy"] = propagation
        if grace_period is not None:
            opts["gracePeriodSeconds"] = grace_period
        if preconditions_uid:
            opts["preconditions"] = {"uid": preconditions_uid}
        out = await self._request("DELETE", self._url(info, namespace, name), body=opts)
        return out if out.get("kind") == "Status" else _with_kind(out, info)

    def watch(self, resource: str, *, namespace: str | None = None,
              resource_version: str | None = None, label_selector: str | None = None,
              field_selector: str | None = None) -> AsyncIterator[WatchEvent]:
        info = self._info(resource)
        params = _selector_params(label_selector, field_selector)
        params["watch"] = "true"
        params["allowWatchBookmarks"] = "true"
        params["timeoutSeconds"] = str(int(self._watch_timeout))
        if resource_version is not None:
            params["resourceVersion"] = resource_version
        return self._watch_stream(info, self._url(info, namespace), params)

    async def _watch_stream(self, info: ResourceInfo, url: str,
                            params: dict[str, str]) -> AsyncIterator[WatchEvent]:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout,
                                        sock_read=self._watch_timeout + self._timeout)
        try:
            async with self._get_session().get(url, params=params, timeout=timeout,
                                               headers=self._auth()) as resp:
                if resp.status >= 400:
                    raise _error(resp.status, await resp.read(), "WATCH", url)
                async for line in _lines(resp.content):
                    yield _watch_event(line, info, url)
        except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise ApiUnavailable(f"WATCH {url}: stream broken ({exc!r}); "
                                 "re-watch from the last resourceVersion") from exc

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


# ---- helpers --------------------------------------------------------------------------------

async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Whole lines of a stream, however long (StreamReader.readline caps line length)."""
    buf = b""
    async for chunk in stream.iter_any():
        buf += chunk
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            line, buf = buf[:nl].strip(), buf[nl + 1:]
            if line:
                yield line
    if buf.strip():
        yield buf.strip()


def _watch_event(line: bytes, info: ResourceInfo, url: str) -> WatchEvent:
    try:
        raw = json.loads(line)
    except ValueError as exc:
        raise ApiError(f"WATCH {url}: undecodable event {line[:200]!r}") from exc
    etype, obj = raw.get("type"), raw.get("object") or {}
    if etype == "ERROR":
        raise from_status(obj)
    if etype not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
        raise ApiError(f"WATCH {url}: unknown event type {etype!r}")
    return WatchEvent(etype, obj if etype == "BOOKMARK" else _with_kind(obj, info))


def _error(status: int, raw: bytes, method: str, url: str) -> ApiError:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        return from_status({"code": status, **body})
    text = raw.decode(errors="replace")[:300]
    err = ApiError(f"{method} {url}: HTTP {status}: {text}")
    err.code = status
    return err


def _with_kind(obj: Obj, info: ResourceInfo) -> Obj:
    if obj.get("kind") != "Status":
        obj.setdefault("kind", info.kind)
        obj.setdefault("apiVersion", info.api_version)
    return obj


def _selector_params(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    return params


def _named(entries: Any, name: Any, what: str, path: str | Path) -> dict[str, Any]:
    for entry in entries or []:
        if entry.get("name") == name:
            return dict(entry.get(what) or {})
    raise BadRequest(f"kubeconfig {path}: no {what} named {name!r}; "
                     f"check current-context and the {what}s list")


def _ssl_from_cluster(cluster: dict[str, Any], path: Path) -> ssl.SSLContext | bool | None:
    if not str(cluster.get("server", "")).startswith("https"):
        return None
    if cluster.get("insecure-skip-tls-verify"):
        return False
    ctx = ssl.create_default_context()
    if cluster.get("certificate-authority-data"):
        pem = base64.b64decode(cluster["certificate-authority-data"]).decode()
        ctx.load_verify_locations(cadata=pem)
    elif cluster.get("certificate-authority"):
        ca = Path(cluster["certificate-authority"])
        ctx.load_verify_locations(cafile=str(ca if ca.is_absolute() else path.parent / ca))
    return ctx

