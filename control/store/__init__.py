"""Revisioned key-value stores with watch: memory, SQLite (default), etcd.

All three implement `control.store.base.Store` and pass one contract test suite.
`open_store(url)` picks one: `memory://`, `sqlite:///path/to/file.db`, `etcd://HOST:PORT`.
"""
