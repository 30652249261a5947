"""The nftables contract on LibNft: libnftables in a real netns, inside `knet sandbox`."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "unit" / "knet" / "dataplane"))

from nft_contract import *

from knet.dataplane import nsutil
from knet.dataplane.nft import LibNft

pytestmark = pytest.mark.root


@pytest.fixture
def nft() -> Iterator[LibNft]:
    n = LibNft()
    yield n
    n.close()


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"knet-nft-{uuid.uuid4().hex[:8]}"
    with nsutil.new_netns(name):
        pass
    try:
        yield name
    finally:
        nsutil.remove_netns(name)
