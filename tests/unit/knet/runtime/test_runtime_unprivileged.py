"""The Runtime contract on ProcessRuntime(namespaces=False): real processes, logs, exit
codes, exec and adoption without root; plus what that mode refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from runtime_contract import *

from knet.runtime.base import ContainerSpec, ContainerStartError, Mount, PodSandbox
from knet.runtime.process import ProcessRuntime


@pytest.fixture
def sandbox(tmp_path: Path) -> PodSandbox:
    return PodSandbox.for_pod("default", "web-1", netns="unused", pod_ip="10.244.1.5",
                              pod_dir=tmp_path / "pod")


@pytest.fixture
def make_rt() -> Callable[[], ProcessRuntime]:
    return lambda: ProcessRuntime(namespaces=False)


@pytest.fixture
async def rt(sandbox: PodSandbox) -> AsyncIterator[ProcessRuntime]:
    runtime = ProcessRuntime(namespaces=False)
    yield runtime
    await runtime.remove(sandbox)
    await runtime.close()


async def test_volumes_need_namespaces(rt: ProcessRuntime, sandbox: PodSandbox,
                                       tmp_path: Path) -> None:
    with pytest.raises(ContainerStartError, match="volume mounts need the runtime's namespaces"):
        await rt.start(sandbox, ContainerSpec(name="app", argv=["true"],
                                              mounts=[Mount(str(tmp_path), "/data")]))
