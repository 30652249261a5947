"""The image catalog: reference normalisation and Kubernetes command/args semantics."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from knet.runtime.images import ImageNotFound, lookup, normalize, resolve

PY = sys.executable
LAUNCH = str(Path(__file__).resolve().parents[4] / "knet" / "runtime" / "images" / "launch.py")


@pytest.mark.parametrize("ref", ["nginx", "nginx:1.25", "docker.io/library/nginx:latest",
                                 "index.docker.io/library/nginx", "nginx@sha256:abcd",
                                 "library/nginx:1.25-alpine"])
def test_nginx_spellings_are_one_image(ref: str) -> None:
    assert normalize(ref) == "docker.io/library/nginx"
    img = lookup(ref)
    assert img is not None and img.program == "nginx"


def test_registry_with_port_is_not_a_tag() -> None:
    assert normalize("localhost:5000/foo/bar:1") == "localhost:5000/foo/bar"
    assert lookup("localhost:5000/nginx") is None


def test_builtin_program_entrypoint_plus_cmd() -> None:
    argv = resolve("registry.k8s.io/e2e-test-images/agnhost:2.39", None, None, python=PY)
    assert argv[:3] == [PY, "-S", "-I"] and argv[3].endswith("images/launch.py")
    assert argv[4:] == ["agnhost", "pause"]            # CMD of the real image


def test_args_replace_cmd() -> None:
    argv = resolve("registry.k8s.io/e2e-test-images/agnhost:2.39", None,
                   ["netexec", "--http-port=8080"], python=PY)
    assert argv[4:] == ["agnhost", "netexec", "--http-port=8080"]
    assert resolve("hashicorp/http-echo", None, ["-text=hi"], python=PY)[4:] == [
        "http_echo", "-text=hi"]


def test_command_runs_host_binaries_with_args() -> None:
    assert resolve("busybox", ["sh", "-c"], ["echo hi"]) == ["sh", "-c", "echo hi"]
    assert resolve("nginx", ["sleep"], ["5"]) == ["sleep", "5"]
    assert resolve("some/unknown:1", ["sleep", "10"], None) == ["sleep", "10"]


def test_the_real_entrypoint_name_still_means_the_builtin() -> None:
    argv = resolve("registry.k8s.io/e2e-test-images/agnhost:2.39",
                   ["/agnhost", "serve-hostname"], ["--port", "9376"], python=PY)
    assert argv[4:] == ["agnhost", "serve-hostname", "--port", "9376"]
    assert resolve("nginx", ["nginx", "-g", "daemon off;"], None, python=PY)[4:] == [
        "nginx", "-g", "daemon off;"]


def test_busybox_and_alpine_are_the_hosts_shell() -> None:
    assert resolve("busybox", None, None) == ["sh"]
    assert resolve("busybox:1.36", None, ["sleep", "3600"]) == ["sleep", "3600"]
    assert resolve("alpine:3.19", None, None) == ["/bin/sh"]


def test_empty_lists_mean_not_given() -> None:
    assert resolve("busybox", [], []) == ["sh"]


def test_whoami_dns_and_aliases() -> None:
    assert resolve("knet/whoami", None, None, python=PY)[4:] == ["whoami"]
    assert resolve("traefik/whoami:v1.10", None, None, python=PY)[4:] == ["whoami"]
    assert resolve("registry.k8s.io/coredns/coredns:v1.11.1", None, ["--listen", ":53"],
                   python=PY) == [PY, "-P", LAUNCH, "-m", "knet.dns", "--listen", ":53"]
    assert resolve("knet/dns", None, None, python=PY) == [PY, "-P", LAUNCH, "-m", "knet.dns"]
    assert resolve("registry.k8s.io/pause:3.9", None, None, python=PY)[4:] == ["pause"]


def test_unknown_image_without_command_is_a_clear_error() -> None:
    with pytest.raises(ImageNotFound) as err:
        resolve("foo/bar:1", None, None)
    msg = str(err.value)
    assert msg.startswith('image "foo/bar:1" is not in knet\'s built-in catalog '
                          "(knet runs no registry); use one of: nginx, busybox")
    assert "knet/whoami" in msg and msg.endswith("give the container a command: to run a host binary")
    with pytest.raises(ImageNotFound):
        resolve("foo/bar:1", None, ["x"])
