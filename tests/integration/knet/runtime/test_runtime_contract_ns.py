"""The Runtime contract on ProcessRuntime with real namespaces, inside `knet sandbox`
(conftest.py puts tests/unit/knet/runtime, where the contract lives, on sys.path)."""

from __future__ import annotations

from runtime_contract import *
