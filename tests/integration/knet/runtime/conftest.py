"""Fixtures for the runtime's integration tests: a real pod netns (lo up) made with `ip`,
inside the sandbox, and a ProcessRuntime that removes the pod after each test."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from knet.runtime.base import PodSandbox
from knet.runtime.process import ProcessRuntime

# the shared contract and its helpers live beside the unprivileged run, in tests/unit
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "unit" / "knet" / "runtime"))
_seq = itertools.count()


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"kntest-rt-{next(_seq)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def sandbox(netns: str, tmp_path: Path) -> PodSandbox:
    return PodSandbox.for_pod("default", "web-1", netns=netns, pod_ip="10.244.1.5",
                              pod_dir=tmp_path / "pod", subdomain="web")


@pytest.fixture
def make_rt() -> Callable[[], ProcessRuntime]:
    return ProcessRuntime


@pytest.fixture
async def rt(sandbox: PodSandbox) -> AsyncIterator[ProcessRuntime]:
    runtime = ProcessRuntime()
    yield runtime
    await runtime.remove(sandbox)
    await runtime.close()
