"""The container tests build and run the lab image with rootful podman on the host itself: the
build needs the host's network (apt, pip), so they run outside `knet sandbox`, as their own step
of scripts/test.sh. They refuse to run without root or inside the sandbox instead of failing late."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "container: builds and runs the lab image with podman (root, host network)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mine = [i for i in items if i.get_closest_marker("container")]
    if not mine:
        return
    if os.geteuid() != 0:
        raise pytest.UsageError("container tests need root (rootful podman): "
                                "sudo python -m pytest tests/container")
    if os.environ.get("KNET_SANDBOX") == "1":
        raise pytest.UsageError("container tests must run outside `knet sandbox`: the image "
                                "build needs the host's network (scripts/test.sh runs them apart)")
