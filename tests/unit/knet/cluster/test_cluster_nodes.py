"""`knet node add/remove` refusals, before anything is made: a name already in the cluster,
a bad name, an unknown node, the last node, no cluster; each names the way out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from knet.cluster import nodes, procs
from knet.cluster.procs import ProcRecord
from knet.cluster.state import ClusterRecord
from knet.errors import KnetError


@pytest.fixture
def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ClusterRecord:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    started = procs.start_time(os.getpid())
    assert started is not None
    rec = ClusterRecord(state_dir=tmp_path, nodes=2, store="memory://",
                        procs={"control": ProcRecord(role="control", pid=os.getpid(),
                                                     started=started, log="")})
    rec.save()
    return rec


async def test_add_refuses_a_name_in_use_or_invalid(running: ClusterRecord) -> None:
    with pytest.raises(KnetError, match="node node-2: already in this cluster; pick another "
                       "name, or remove it first with 'knet node remove node-2'"):
        await nodes.add_node(running.state_dir, "node-2")
    with pytest.raises(KnetError, match="invalid name"):
        await nodes.add_node(running.state_dir, "Node_3")
    assert ClusterRecord.load(running.state_dir).node_names() == ["node-1", "node-2"]


async def test_remove_refuses_unknown_and_last_nodes(running: ClusterRecord) -> None:
    with pytest.raises(KnetError, match=r"node nope: no such node in this cluster; nodes: "
                       r"node-1, node-2 \(see 'knet status'\)"):
        await nodes.remove_node(running.state_dir, "nope")
    running.set_nodes({"node-1": 1})
    running.save()
    with pytest.raises(KnetError, match="the cluster's last node; stop the cluster with "
                       "'knet down' instead"):
        await nodes.remove_node(running.state_dir, "node-1")


async def test_no_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(KnetError, match="no cluster is running in .*; start one with 'knet up'"):
        await nodes.add_node(tmp_path)


def test_default_name_is_the_next_free_index() -> None:
    assert nodes._free_index({1, 2}) == 3
    assert nodes._free_index({1, 3}) == 2
