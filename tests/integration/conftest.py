"""Integration tests need root and a private network world: they refuse to run outside
`knet sandbox` (scripts/test.sh runs them inside one) rather than touch the host."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("KNET_SANDBOX") == "1" and os.geteuid() == 0:
        return
    raise pytest.UsageError(
        "integration tests must run as root inside the sandbox: "
        "knet sandbox -- python -m pytest tests/integration")
