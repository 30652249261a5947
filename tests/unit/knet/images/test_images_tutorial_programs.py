"""The tutorials' other images run as their argv from the catalog, on 127.0.0.1: the HPA
walkthrough's php-apache, the probes tutorial's goproxy, echoserver, the pi Job's perl,
python, and Debian's redis replicating from a leader as the guestbook's follower does."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from knet.runtime.images import resolve
from knet.runtime.images.hpa_example import burn
from tests.unit.knet.images.test_images_programs import curl, status

Starter = Callable[..., subprocess.Popen[bytes]]


def test_hpa_example_burns_cpu_and_answers_ok(start: Starter, port: int) -> None:
    start("registry.k8s.io/hpa-example", env={"KNET_PORT": str(port)}, port=port)
    t0 = time.process_time()
    burn()
    assert time.process_time() - t0 > 0.02          # a million sqrt: real work per request
    out = curl(f"http://127.0.0.1:{port}/", "-i")
    assert out.startswith("HTTP/1.1 200") and out.endswith("\n\nOK!")
    assert "X-Powered-By: PHP" in out


def test_goproxy_proxies_and_refuses_plain_requests(start: Starter, port: int,
                                                    new_port: Callable[[], int]) -> None:
    target = new_port()
    start("hashicorp/http-echo", [f"-listen=:{target}", "-text=behind the proxy"], port=target)
    start("registry.k8s.io/goproxy:0.1", env={"KNET_PORT": str(port)}, port=port)
    assert curl(f"http://127.0.0.1:{target}/", "-x", f"http://127.0.0.1:{port}") == \
        "behind the proxy\n"
    assert status(f"http://127.0.0.1:{port}/") == 500


def test_echoserver_reports_the_client(start: Starter, port: int) -> None:
    start("registry.k8s.io/echoserver:1.4", env={"KNET_PORT": str(port)}, port=port)
    out = curl(f"http://127.0.0.1:{port}/path?q=1").splitlines()
    assert out[:7] == ["CLIENT VALUES:", "client_address=127.0.0.1", "command=GET",
                       "real path=/path", "query=q=1", "request_version=1.1",
                       f"request_uri=http://127.0.0.1:{port}/path?q=1"]
    assert f"host=127.0.0.1:{port}" in out and out[-2:] == ["BODY:", "-no body in request-"]


def run(image: str, command: list[str] | None, args: list[str] | None) -> str:
    return subprocess.run(resolve(image, command, args), capture_output=True, text=True,
                          timeout=120, check=True).stdout


@pytest.mark.skipif(shutil.which("perl") is None, reason="perl is not installed")
def test_the_pi_jobs_perl_has_bignum() -> None:
    # the Job's 2000 digits take ~10 s: tests/integration/knet/cluster/test_tutorial_images_e2e.py
    out = run("perl:5.34.0", ["perl", "-Mbignum=bpi", "-wle", "print bpi(60)"], None).strip()
    assert out == "3.14159265358979323846264338327950288419716939937510582097494"


def test_python_is_the_hosts_python3() -> None:
    assert run("python:3.12", ["python", "-c", "import sys; print(sys.version_info[0])"],
               None) == "3\n"


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_redis_follower_replicates_the_leader(start: Starter, new_port: Callable[[], int],
                                              tmp_path: Path) -> None:
    leader, follower = new_port(), new_port()
    common = ["--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)]
    start("redis:6.0.5", ["--port", str(leader), "--repl-diskless-sync-delay", "0", *common],
          port=leader)
    start("redis", ["--port", str(follower), "--replicaof", "127.0.0.1", str(leader), *common],
          port=follower)
    cli = ["redis-cli", "-h", "127.0.0.1"]
    subprocess.run([*cli, "-p", str(leader), "set", "messages", "hello"], check=True,
                   capture_output=True, timeout=5)
    deadline = time.monotonic() + 10
    got = ""
    while time.monotonic() < deadline and got != "hello":
        got = subprocess.run([*cli, "-p", str(follower), "get", "messages"], check=False,
                             capture_output=True, text=True, timeout=5).stdout.strip()
        time.sleep(0.2)
    assert got == "hello"
    role = subprocess.run([*cli, "-p", str(follower), "role"], check=True,
                          capture_output=True, text=True, timeout=5).stdout
    assert role.startswith("slave\n127.0.0.1\n")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_guestbook_frontend_sets_on_the_leader_and_gets_from_the_follower(
        start: Starter, port: int, new_port: Callable[[], int], tmp_path: Path) -> None:
    leader, follower = new_port(), new_port()
    common = ["--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)]
    start("redis", ["--port", str(leader), *common], port=leader)
    start("redis", ["--port", str(follower), *common], port=follower)
    start("us-docker.pkg.dev/google-samples/containers/gke/gb-frontend:v5", port=port, env={
        "KNET_PORT": str(port), "GET_HOSTS_FROM": "env",
        "REDIS_LEADER_SERVICE_HOST": "127.0.0.1", "REDIS_LEADER_SERVICE_PORT": str(leader),
        "REDIS_FOLLOWER_SERVICE_HOST": "127.0.0.1", "REDIS_FOLLOWER_SERVICE_PORT": str(follower)})
    base = f"http://127.0.0.1:{port}/guestbook.php?"
    assert curl(base + "cmd=set&key=messages&value=,hello") == '{"message": "Updated"}'
    # reads go to the follower, which (not replicating here) has nothing yet
    assert curl(base + "cmd=get&key=messages") == '{"data": ""}'
    subprocess.run(["redis-cli", "-p", str(follower), "set", "messages", ",from-follower"],
                   check=True, capture_output=True, timeout=5)
    assert curl(base + "cmd=get&key=messages") == '{"data": ",from-follower"}'
    assert "<h2>Guestbook</h2>" in curl(f"http://127.0.0.1:{port}/")
