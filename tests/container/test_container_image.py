"""The lab container, built and run for real: rootful podman builds the repo's Dockerfile on a
bare debootstrap'd Debian (standing in for python:3.12-slim, so scripts/install.sh must bring
python and pip itself) with the host's network, then runs the image privileged with
--network none, the way a user runs it: `knet demo` must succeed inside it, no arguments must
print the usage and open a shell, and the tools and kubectl must be there. Everything the run
made (images, containers, storage, netns mounts, firewall rules) is removed and checked gone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from podman_lab import BASE_IMAGE, Podman, Timer, host_state, make_podman

pytestmark = pytest.mark.container

REPO = Path(__file__).resolve().parents[2]
IMAGE = "localhost/knet-test:lab"
RUN = ("run", "--rm", "--privileged", "--network", "none")


@pytest.fixture(scope="module")
def image() -> Iterator[Podman]:
    before = host_state()
    podman = make_podman()
    try:
        t = Timer()
        podman.import_debian()
        podman.build_base()
        print(f"\nbase image ready in {t():.0f} s")
        t = Timer()
        podman.run("build", "--pull=never", "--network", "host", "--build-arg",
                   f"BASE={BASE_IMAGE}", "-t", IMAGE, "-f", str(REPO / "Dockerfile"),
                   str(REPO), timeout=1200)
        print(f"image built in {t():.0f} s, {podman.image_size(IMAGE) / 1e6:.0f} MB")
        yield podman
    finally:
        podman.destroy()
    assert not podman.root.exists(), f"{podman.root} survived the cleanup"
    after = host_state()
    changed = {k: (before[k], after.get(k)) for k in before if before[k] != after.get(k)}
    assert not changed, f"the container test left host state behind: {changed}"


def test_knet_demo_succeeds_inside_the_container(image: Podman) -> None:
    t = Timer()
    p = image.run(*RUN, IMAGE, "knet", "demo", check=False, timeout=900)
    print(f"knet demo in the container: exit {p.returncode} in {t():.0f} s\n{p.stdout}")
    assert p.returncode == 0, f"knet demo failed in the container:\n{p.stdout}\n{p.stderr}"


def test_no_arguments_prints_usage_then_opens_a_shell(image: Podman) -> None:
    p = image.run("run", "--rm", "-i", "--privileged", "--network", "none", IMAGE,
                  input="echo shell-says-$((6 * 7))\nexit 3\n", check=False, timeout=120)
    assert "knet demo" in p.stdout and "knet lab list" in p.stdout, p.stdout
    assert "kubectl (Client Version: v1.32" in p.stdout, p.stdout
    assert "shell-says-42" in p.stdout, f"no shell after the usage:\n{p.stdout}\n{p.stderr}"
    assert p.returncode == 3


def test_tools_and_a_real_kubectl_are_installed(image: Podman) -> None:
    tools = "curl dig ping nc tcpdump ip nft kubectl knet"
    script = (f"for t in {tools}; do command -v $t >/dev/null || echo MISSING $t; done; "
              "kubectl version --client; python3 -c 'import kubernetes; print(\"k8s-client\")'")
    p = image.run(*RUN, IMAGE, "bash", "-c", script, timeout=120)
    assert "MISSING" not in p.stdout, p.stdout
    assert "Client Version: v1.32" in p.stdout and "k8s-client" in p.stdout, p.stdout


def test_kubectl_in_the_container_reaches_the_cluster(image: Podman) -> None:
    script = ("set -e; knet up --nodes 2 >/dev/null; trap 'knet down >/dev/null' EXIT; "
              "export KUBECONFIG=$(knet kubeconfig | tail -1); "
              "kubectl get nodes --no-headers; knet get nodes --no-headers")
    p = image.run(*RUN, IMAGE, "bash", "-c", script, check=False, timeout=300)
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
    lines = [line.split() for line in p.stdout.splitlines() if line.startswith("node-1")]
    assert len(lines) == 2 and all(cols[1] == "Ready" for cols in lines), p.stdout
