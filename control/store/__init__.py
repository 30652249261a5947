"""Revisioned key-value stores with watch: memory, SQLite (default), etcd.

All three implement `control.store.base.Store` and pass one contract test suite.
`open_store(url)` picks one from a URL:

    memory://                              MemoryStore (lost at exit)
    sqlite:///abs/path/knet.db             SqliteStore on that file (sqlite://rel/path.db: relative)
    etcd://HOST:PORT[,HOST:PORT...][/PREFIX]  EtcdStore on a real etcd v3 (keys under PREFIX)

Backends are imported lazily so that using one never costs the others' imports.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from control.store.base import KV, Store, StoreEvent, Watch

__all__ = ["KV", "SCHEMES", "Store", "StoreEvent", "Watch", "open_store"]

SCHEMES = ("memory://", "sqlite:///ABS/PATH.db", "sqlite://REL/PATH.db",
           "etcd://HOST:PORT[,HOST:PORT][/PREFIX]")


def _bad(url: str, problem: str) -> ValueError:
    return ValueError(f"store URL {url!r}: {problem}; accepted: {', '.join(SCHEMES)}")


def open_store(url: str) -> Store:
    """Open the store named by url (see the module docstring). Close it with `await s.close()`.

    Raises ValueError naming the URL and the accepted schemes if the URL is not understood."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise _bad(url, "no scheme")
    if scheme == "memory":
        from control.store.memory import MemoryStore
        return MemoryStore()
    if scheme == "sqlite":
        if not rest:
            raise _bad(url, "no file path")
        from control.store.sqlite import SqliteStore
        path = "/" + rest.lstrip("/") if rest.startswith("/") else rest  # sqlite:////x -> /x
        return SqliteStore(path)
    if scheme == "etcd":
        parts = urlsplit(url)
        endpoints = [h for h in parts.netloc.split(",") if h]
        if not endpoints:
            raise _bad(url, "no HOST:PORT")
        from control.store.etcd import EtcdStore
        return EtcdStore(endpoints, prefix=parts.path.rstrip("/"))
    raise _bad(url, f"unknown scheme {scheme!r}")
