"""The `view` fixture: flows_testkit.make_view()."""

from __future__ import annotations

import pytest
from flows_testkit import make_view

from knet.flows.cluster import ClusterView


@pytest.fixture
def view() -> ClusterView:
    return make_view()
