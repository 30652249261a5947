"""The mesh's L7 tests run on uvloop like the proxy's, and share the proxy's test kit
(tests/unit/knet/proxy/proxy_testkit.py: loopback backends, a Proxier fed like informers)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy"))


def pytest_asyncio_loop_factories(config: pytest.Config,
                                  item: pytest.Item) -> Mapping[str, Callable[[], object]]:
    return {"uvloop": uvloop.new_event_loop}
