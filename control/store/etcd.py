"""`EtcdStore`: the `Store` on a real etcd v3 cluster, through etcd's v3 JSON gateway.

No client library: aiohttp POSTs to `/v3/kv/range|put|txn|deleterange|compaction` and streams
`/v3/watch` (keys and values base64, int64 as strings). etcd revisions are the store's
revisions as they are; compare-on-revision is a txn comparing `mod_revision` (or
`create_revision == 0` for create), whose failure branch reads the key to tell NotFound from
Conflict. Keys live under an optional `prefix` (Kubernetes' --etcd-prefix); compaction is
cluster-wide, as in etcd. Each watch is one HTTP stream read by a task that the watch owns
(`etcd_watch.EtcdWatch`); endpoints are tried in order when one is unreachable.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import weakref
from typing import Any

import aiohttp

from control.errors import Internal
from control.store._common import already_exists, check_current, compact_too_far, gone, prefix_end
from control.store._watch import DEFAULT_MAX_BACKLOG
from control.store.base import KV
from control.store.etcd_watch import EtcdWatch

log = logging.getLogger(__name__)

Json = dict[str, Any]
KVs = list[KV]  # (list is a method name in the class below)
Jsons = list[Json]


class EtcdError(Exception):
    """etcd answered with an error (e.g. 'required revision has been compacted')."""


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(data: str | None) -> bytes:
    return base64.b64decode(data) if data else b""


class EtcdStore:
    """A complete `Store` on etcd; see `control.store.base.Store` for the contract."""

    def __init__(self, endpoints: list[str], *, prefix: str = "", timeout: float = 10.0,
                 max_backlog: int = DEFAULT_MAX_BACKLOG) -> None:
        if not endpoints:
            raise ValueError("etcd store: no endpoints given; pass HOST:PORT")
        self.endpoints = [e if "://" in e else f"http://{e}" for e in endpoints]
        self.prefix = prefix
        self.timeout = timeout
        self.max_backlog = max_backlog
        self._session: aiohttp.ClientSession | None = None
        self._watches: weakref.WeakSet[EtcdWatch] = weakref.WeakSet()
        self._closed = False

    def __repr__(self) -> str:
        return f"<EtcdStore {','.join(self.endpoints)} prefix={self.prefix!r}>"

    @property
    def active_watches(self) -> int:
        """How many watch streams are open (for tests and metrics)."""
        return sum(1 for w in self._watches if w.open)

    # -- the Store protocol --------------------------------------------------------------------

    async def get(self, key: str) -> KV | None:
        resp = await self.call("/v3/kv/range", {"key": self.key_of(key)})
        kvs = resp.get("kvs") or []
        return self.kv_from(kvs[0]) if kvs else None

    async def list(self, prefix: str, *, start_after: str | None = None,
                   limit: int = 0) -> tuple[KVs, int]:
        low = (start_after + "\0") if start_after is not None and start_after >= prefix else prefix
        body: Json = {"key": self.key_of(low), "range_end": self.range_end(prefix)}
        if limit > 0:
            body["limit"] = limit
        resp = await self.call("/v3/kv/range", body)
        return [self.kv_from(kv) for kv in resp.get("kvs") or []], int(resp["header"]["revision"])

    async def create(self, key: str, value: bytes) -> KV:
        k = self.key_of(key)
        resp = await self._txn(
            [{"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            {"request_put": {"key": k, "value": base64.b64encode(value).decode()}}, k)
        if not resp.get("succeeded"):
            raise already_exists(key)
        rev = int(resp["header"]["revision"])
        return KV(key, bytes(value), rev, rev)

    async def update(self, key: str, value: bytes, *, expected_revision: int | None = None) -> KV:
        k = self.key_of(key)
        put = {"key": k, "value": base64.b64encode(value).decode(), "prev_kv": True}
        resp = await self._txn(self._guard(k, expected_revision), {"request_put": put}, k)
        prev = self._outcome(key, resp, expected_revision, "update", "response_put")
        return KV(key, bytes(value), prev.create_revision, int(resp["header"]["revision"]))

    async def delete(self, key: str, *, expected_revision: int | None = None) -> KV:
        k = self.key_of(key)
        resp = await self._txn(self._guard(k, expected_revision),
                               {"request_delete_range": {"key": k, "prev_kv": True}}, k)
        prev = self._outcome(key, resp, expected_revision, "delete", "response_delete_range")
        return KV(key, prev.value, prev.create_revision, int(resp["header"]["revision"]))

    def watch(self, prefix: str, *, from_revision: int) -> EtcdWatch:
        self._check_open()
        w = EtcdWatch(self, prefix, from_revision=from_revision, max_backlog=self.max_backlog)
        self._watches.add(w)
        return w

    async def current_revision(self) -> int:
        resp = await self.call("/v3/kv/range", {"key": self.key_of(""), "count_only": True})
        return int(resp["header"]["revision"])

    async def compact(self, revision: int) -> None:
        try:
            await self.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        except EtcdError as exc:
            if "future revision" in str(exc):
                raise compact_too_far(revision, await self.current_revision()) from exc
            if "compacted" not in str(exc):
                raise

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for w in list(self._watches):
            await w.aclose()
        if self._session is not None:
            await self._session.close()

    # -- helpers shared with EtcdWatch ---------------------------------------------------------

    def key_of(self, key: str) -> str:
        return b64(self.prefix + key or "\0")  # etcd refuses an empty key; "\0" is the first

    def range_end(self, prefix: str) -> str:
        end = prefix_end(self.prefix + prefix)
        return b64(end) if end is not None else "AA=="  # "\0": every key >= start

    def kv_from(self, data: Json, *, value: bytes | None = None,
                create_revision: int | None = None) -> KV:
        key = unb64(data.get("key")).decode()[len(self.prefix):]
        return KV(key, unb64(data.get("value")) if value is None else value,
                  int(data.get("create_revision", 0)) if create_revision is None
                  else create_revision, int(data.get("mod_revision", 0)))

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"etcd store {self.endpoints[0]} is closed; open it again")

    def session(self) -> aiohttp.ClientSession:
        self._check_open()
        if self._session is None:
            # limit=0: every watch holds one connection, and there may be hundreds.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self._session

    async def call(self, path: str, body: Json) -> Json:
        """POST one request, trying each endpoint in turn; EtcdError if etcd refuses it."""
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        failures: list[str] = []
        for endpoint in self.endpoints:
            try:
                async with self.session().post(endpoint + path, json=body,
                                               timeout=timeout) as resp:
                    data: Json = await resp.json(content_type=None)
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                failures.append(f"{endpoint}: {exc or type(exc).__name__}")
                continue
            if "error" in data:
                raise EtcdError(f"etcd {endpoint}{path}: {data.get('message') or data['error']}")
            return data
        raise Internal(f"etcd unreachable ({'; '.join(failures)}); check that etcd runs and "
                       f"the store URL names its client endpoints")

    async def ensure_not_compacted(self, prefix: str, revision: int) -> None:
        """Gone if history at `revision` is compacted (etcd refuses a read at it)."""
        if revision <= 0:
            return
        try:
            await self.call("/v3/kv/range", {"key": self.key_of(prefix),
                                             "revision": str(revision), "count_only": True})
        except EtcdError as exc:
            if "compacted" in str(exc):
                raise gone(prefix, revision, None) from exc
            if "future revision" not in str(exc):
                raise

    async def _txn(self, compare: Jsons, success: Json, k: str) -> Json:
        return await self.call("/v3/kv/txn", {"compare": compare, "success": [success],
                                              "failure": [{"request_range": {"key": k}}]})

    @staticmethod
    def _guard(k: str, expected: int | None) -> Jsons:
        if expected is None:  # the key must exist
            return [{"key": k, "target": "CREATE", "result": "GREATER", "create_revision": "0"}]
        return [{"key": k, "target": "MOD", "result": "EQUAL", "mod_revision": str(expected)}]

    def _outcome(self, key: str, resp: Json, expected: int | None, verb: str,
                 field: str) -> KV:
        """The previous KV of a successful guarded write; NotFound/Conflict otherwise."""
        result = (resp.get("responses") or [{}])[0]
        if not resp.get("succeeded"):
            kvs = (result.get("response_range") or {}).get("kvs") or []
            current = self.kv_from(kvs[0]) if kvs else None
            check_current(key, current, expected, verb)
            raise AssertionError(f"etcd txn on {key!r} failed but its guard holds")  # unreachable
        inner = result.get(field) or {}
        prev = inner.get("prev_kv") or (inner.get("prev_kvs") or [{}])[0]
        return self.kv_from(prev)


async def wait_ready(endpoints: list[str], *, timeout: float) -> None:
    """Until etcd answers a range request (for tests and `knet up`); TimeoutError otherwise."""
    store = EtcdStore(endpoints, timeout=1.0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while True:
            try:
                await store.current_revision()
                return
            except Internal:
                if loop.time() > deadline:
                    raise TimeoutError(f"etcd at {endpoints} not ready after {timeout}s") from None
                await asyncio.sleep(0.1)
    finally:
        await store.close()
