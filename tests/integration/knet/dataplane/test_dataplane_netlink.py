"""The Dataplane contract on NetlinkDataplane: real namespaces, inside `knet sandbox`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "unit" / "knet" / "dataplane"))

from dataplane_contract import *

from knet.dataplane.base import Dataplane
from knet.dataplane.netlink import NetlinkDataplane


@pytest.fixture
def make_dp(tmp_path: Path) -> Callable[[], Dataplane]:
    return lambda: NetlinkDataplane(tmp_path)
