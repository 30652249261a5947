"""Image names as tutorials and e2e tests spell them, and Docker's command/args rules over
each image's ENTRYPOINT and CMD (the argv the kubelet will exec)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from knet.runtime.images import ImageNotFound, lookup, normalize, resolve

PY = sys.executable


def builtin(argv: list[str]) -> list[str]:
    """The built-in program and its arguments of a resolved argv (after launch.py)."""
    assert argv[:3] == [PY, "-S", "-I"] and argv[3].endswith("images/launch.py"), argv
    return argv[4:]


@pytest.mark.parametrize(("ref", "name"), [
    ("registry.k8s.io/busybox", "busybox"), ("k8s.gcr.io/busybox:1.24", "busybox"),
    ("busybox:1.28", "busybox"), ("docker.io/library/busybox:1.36.1", "busybox"),
    ("docker.io/busybox", "busybox"), ("gcr.io/google-containers/busybox", "busybox"),
    ("registry.k8s.io/e2e-test-images/busybox:1.36.1-1", "busybox"),
    ("nginx:1.14.2", "nginx"), ("registry.k8s.io/nginx-slim:0.24", "nginx"),
    ("k8s.gcr.io/nginx-slim:0.8", "nginx"), ("gcr.io/google_containers/nginx-slim:0.8", "nginx"),
    ("registry.k8s.io/e2e-test-images/agnhost:2.40", "registry.k8s.io/e2e-test-images/agnhost"),
    ("k8s.gcr.io/e2e-test-images/agnhost@sha256:" + "a" * 64,
     "registry.k8s.io/e2e-test-images/agnhost"),
    ("gcr.io/kubernetes-e2e-test-images/agnhost:2.8", "registry.k8s.io/e2e-test-images/agnhost"),
    ("registry.k8s.io/e2e-test-images/jessie-dnsutils:1.3", "ubuntu"),
    ("perl:5.34.0", "perl"), ("python:3.12-slim", "python"), ("docker.io/redis:6.0.5", "redis"),
    ("REDIS", "redis"), ("registry.k8s.io/hpa-example", "registry.k8s.io/hpa-example"),
    ("k8s.gcr.io/liveness", "registry.k8s.io/liveness"),
    ("registry.k8s.io/goproxy:0.1", "registry.k8s.io/goproxy"),
    ("registry.k8s.io/echoserver:1.10", "registry.k8s.io/echoserver"),
    ("us-docker.pkg.dev/google-samples/containers/gke/gb-redis-follower:v2",
     "us-docker.pkg.dev/google-samples/containers/gke/gb-redis-follower"),
])
def test_every_spelling_finds_its_image(ref: str, name: str) -> None:
    img = lookup(ref)
    assert img is not None and img.name == name


def test_moved_registries_normalise_to_registry_k8s_io() -> None:
    assert normalize("k8s.gcr.io/pause:3.9") == "registry.k8s.io/pause"
    assert normalize("gcr.io/google_containers/pause") == "registry.k8s.io/pause"
    assert normalize("index.docker.io/redis") == "docker.io/library/redis"
    assert normalize("quay.io/k8s/pause") == "quay.io/k8s/pause"      # not a moved registry
    assert lookup("quay.io/library/nginx") is None
    assert lookup("ghcr.io/someone/busybox") is None


def test_docker_rules_command_replaces_entrypoint_args_replace_cmd() -> None:
    agn = "registry.k8s.io/e2e-test-images/agnhost:2.40"
    assert builtin(resolve(agn, None, None, python=PY)) == ["agnhost", "pause"]
    assert builtin(resolve(agn, None, ["liveness"], python=PY)) == ["agnhost", "liveness"]
    # command without args drops the image's CMD
    assert builtin(resolve(agn, ["/agnhost"], None, python=PY)) == ["agnhost"]
    assert builtin(resolve(agn, ["/agnhost", "netexec"], ["--http-port=80"], python=PY)) == [
        "agnhost", "netexec", "--http-port=80"]
    # any other word runs the host's binary
    assert resolve(agn, ["sh", "-c", "echo hi"], None) == ["sh", "-c", "echo hi"]


def test_tutorial_images_resolve_to_their_programs() -> None:
    assert builtin(resolve("registry.k8s.io/liveness", None, ["/server"], python=PY)) == [
        "agnhost", "liveness"]
    assert builtin(resolve("registry.k8s.io/serve_hostname", None, ["-port=80"], python=PY)) == [
        "agnhost", "serve-hostname", "-port=80"]
    assert builtin(resolve("registry.k8s.io/goproxy:0.1", None, None, python=PY)) == ["goproxy"]
    assert builtin(resolve("registry.k8s.io/hpa-example", None, None, python=PY)) == [
        "hpa_example"]
    assert builtin(resolve("registry.k8s.io/nginx-slim:0.24", None, None, python=PY)) == [
        "nginx", "-g", "daemon off;"]


def test_perl_and_python_are_the_hosts() -> None:
    pi = ["perl", "-Mbignum=bpi", "-wle", "print bpi(2000)"]
    assert resolve("perl:5.34.0", pi, None) == pi
    assert resolve("perl", None, None) == ["perl", "-de0"]
    assert resolve("python:3", ["python", "-c", "print(1)"], None) == ["python3", "-c", "print(1)"]
    assert resolve("python:3", None, ["python", "app.py"]) == ["python3", "app.py"]
    assert resolve("python", None, None) == ["python3"]


def test_redis_entrypoint_script_runs_redis_server_with_protected_mode_off() -> None:
    assert resolve("redis:6.0.5", None, None) == ["redis-server", "--protected-mode", "no"]
    # args starting with a flag go to redis-server, as docker-entrypoint.sh does
    assert resolve("redis", None, ["--replicaof", "redis-leader", "6379"]) == [
        "redis-server", "--replicaof", "redis-leader", "6379", "--protected-mode", "no"]
    assert resolve("redis", None, ["/etc/redis/redis.conf"]) == [
        "redis-server", "/etc/redis/redis.conf", "--protected-mode", "no"]
    assert resolve("redis", ["redis-cli"], ["ping"]) == ["redis-cli", "ping"]
    follower = resolve("us-docker.pkg.dev/google-samples/containers/gke/gb-redis-follower:v2",
                       None, None)
    assert follower[:2] == ["sh", "-c"] and "--replicaof" in follower[2]


def test_curl_entrypoint_puts_curl_before_flags_and_urls() -> None:
    assert resolve("curlimages/curl", None, ["-s", "http://web"]) == ["curl", "-s", "http://web"]
    assert resolve("curlimages/curl:8.5.0", None, ["http://web"]) == ["curl", "http://web"]
    assert resolve("curlimages/curl", None, ["sh", "-c", "x"]) == ["sh", "-c", "x"]
    assert resolve("curlimages/curl", None, None) == ["curl"]


def test_shells() -> None:
    assert resolve("ubuntu:22.04", None, None) == ["bash"]
    assert resolve("registry.k8s.io/e2e-test-images/jessie-dnsutils:1.3",
                   ["sleep", "infinity"], None) == ["sleep", "infinity"]
    assert resolve("registry.k8s.io/busybox", None, ["/bin/sh", "-c", "touch /tmp/healthy"]) == [
        "/bin/sh", "-c", "touch /tmp/healthy"]


def test_unknown_image_names_itself_and_lists_the_catalog() -> None:
    with pytest.raises(ImageNotFound) as err:
        resolve("registry.k8s.io/busyboxx:1.28", None, None)
    msg = str(err.value)
    assert msg.startswith('image "registry.k8s.io/busyboxx:1.28" is not in knet\'s built-in')
    for name in ("busybox", "registry.k8s.io/e2e-test-images/agnhost", "redis", "perl"):
        assert f" {name}," in msg or f" {name};" in msg


def test_fixed_path_programs_become_wrapper_scripts(tmp_path: Path) -> None:
    from knet.runtime.images import files

    scripts = files("registry.k8s.io/e2e-test-images/agnhost:2.40")
    assert list(scripts) == ["/agnhost"]
    wrapper = tmp_path / "agnhost"
    wrapper.write_text(scripts["/agnhost"])
    wrapper.chmod(0o755)
    out = subprocess.run([str(wrapper), "etc-hosts"], capture_output=True, timeout=10, check=True)
    assert out.stdout == Path("/etc/hosts").read_bytes()
    assert list(files("registry.k8s.io/liveness")) == ["/server"]
    assert files("busybox") == {} and files("no/such") == {}
    assert "/usr/sbin/nginx" not in files("nginx")       # the host's path stays the host's
