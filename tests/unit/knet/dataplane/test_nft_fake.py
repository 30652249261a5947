"""The nftables contract on FakeNft (the real one: tests/integration/.../test_nft_kernel.py)."""

from __future__ import annotations

import pytest
from nft_contract import *

from knet.dataplane.nft import FakeNft


@pytest.fixture
def nft() -> FakeNft:
    return FakeNft()


@pytest.fixture
def netns() -> str:
    return "node-1"
