"""agnhost's subcommands as the upstream e2e tests and tutorials use them, run as real
subprocesses on 127.0.0.1 and checked on the wire: bodies, status codes, JSON, exit codes."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.unit.knet.images.test_images_programs import curl, status, terminate, udp

Starter = Callable[..., subprocess.Popen[bytes]]
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.40"
HOST = socket.gethostname()


def netexec(start: Starter, port: int, udp_port: int, *extra: str) -> subprocess.Popen[bytes]:
    return start(AGNHOST, ["netexec", f"--http-port={port}", f"--udp-port={udp_port}", *extra],
                 port=port)


def test_netexec_endpoints_answer_as_upstream(start: Starter, port: int,
                                              new_port: Callable[[], int]) -> None:
    netexec(start, port, new_port())
    base = f"http://127.0.0.1:{port}"
    assert curl(base + "/").startswith("NOW: 20")
    assert curl(base + "/hostName") == HOST
    assert curl(base + "/echo?msg=teapot&code=418", "-i").startswith("HTTP/1.1 418")
    assert curl(base + "/header?key=X-Forwarded-For", "-H", "X-Forwarded-For: 1.2.3.4") == "1.2.3.4"
    headers = json.loads(curl(base + "/header", "-H", "x-custom-thing: a"))
    assert headers["X-Custom-Thing"] == ["a"] and "Accept" in headers
    redirect = curl(base + "/redirect?location=/echo%3Fmsg%3Dfoobar&code=307", "-i")
    assert redirect.startswith("HTTP/1.1 307") and "Location: /echo?msg=foobar" in redirect
    assert curl(base + "/redirect?location=/echo%3Fmsg%3Dfoobar", "-L") == "foobar"
    assert status(base + "/nope") == 404
    assert status(base + "/readyz") == 200


def test_netexec_dial_reports_errors_like_upstream(start: Starter, port: int,
                                                   new_port: Callable[[], int]) -> None:
    closed = new_port()
    netexec(start, port, new_port())
    base = f"http://127.0.0.1:{port}/dial?host=127.0.0.1"
    out = json.loads(curl(base + f"&port={closed}&request=hostname&tries=2"))
    refused = (f'Get "http://127.0.0.1:{closed}/hostname": dial tcp 127.0.0.1:{closed}: '
               "connect: connection refused")
    assert out == {"errors": [refused, refused]}
    assert curl(base + f"&port={port}") == "request parameter not specified. <nil>\n"
    assert status(base + f"&port={port}&request=x&protocol=sctp") == 400
    assert status(base + f"&port={port}&request=x&tries=many") == 400
    # a dial to netexec's own /echo: the body comes back as is
    assert json.loads(curl(base + f"&port={port}&request=echo%3Fmsg%3Dhi")) == {"responses": ["hi"]}


def test_netexec_udp_lowercases_like_upstream(start: Starter, port: int,
                                              new_port: Callable[[], int]) -> None:
    udp_port = new_port()
    netexec(start, port, udp_port)
    assert udp(udp_port, b"ECHO Hello\n")[0] == b"hello"
    assert udp(udp_port, b"HOSTNAME")[0] == HOST.encode()       # commands are case-blind


def test_netexec_without_udp_is_not_healthy(start: Starter, port: int) -> None:
    start(AGNHOST, ["netexec", f"--http-port={port}", "--udp-port=-1"], port=port)
    assert status(f"http://127.0.0.1:{port}/healthz") == 412


def test_netexec_delay_shutdown_keeps_serving_but_not_ready(start: Starter, port: int,
                                                            new_port: Callable[[], int]) -> None:
    proc = netexec(start, port, new_port(), "--delay-shutdown=2")
    proc.send_signal(15)
    assert curl(f"http://127.0.0.1:{port}/readyz", "-i").startswith("HTTP/1.1 503")
    assert status(f"http://127.0.0.1:{port}/healthz") == 200
    assert proc.wait(timeout=5) == 0


def test_netexec_refuses_sctp_with_a_reason(start: Starter) -> None:
    proc = start(AGNHOST, ["netexec", "--sctp-port=9000"])
    assert proc.wait(timeout=5) == 1
    assert b"no SCTP" in proc.stderr.read()  # type: ignore[union-attr]


def test_netexec_upload_and_exit_without_answer(start: Starter, port: int, tmp_path: Path,
                                                new_port: Callable[[], int]) -> None:
    proc = netexec(start, port, new_port())
    had_uploads = Path("/uploads").exists()
    f = tmp_path / "payload.txt"
    f.write_text("uploaded bytes")
    out = curl(f"http://127.0.0.1:{port}/upload", "-F", f"file=@{f}", "-i")
    assert out.startswith("HTTP/1.1 201")
    path = json.loads(out.split("\n\n", 1)[1])["output"]
    assert path.startswith("/uploads/upload") and Path(path).read_text() == "uploaded bytes"
    Path(path).unlink()
    if not had_uploads:
        Path("/uploads").rmdir()
    assert curl(f"http://127.0.0.1:{port}/exit?code=5&wait=100ms") == ""   # no answer: it exited
    assert proc.wait(timeout=5) == 5


def test_serve_hostname_image(start: Starter, port: int) -> None:
    start("registry.k8s.io/serve_hostname", [f"-port={port}"], port=port)
    assert curl(f"http://127.0.0.1:{port}/") == HOST


def test_liveness_is_healthy_at_first(start: Starter, port: int) -> None:
    start("registry.k8s.io/liveness", ["/server"], env={"KNET_PORT": str(port)}, port=port)
    assert curl(f"http://127.0.0.1:{port}/healthz", "-i").startswith("HTTP/1.1 200")
    assert curl(f"http://127.0.0.1:{port}/started").endswith("s")


def test_porter_serves_env_values(start: Starter, new_port: Callable[[], int]) -> None:
    tcp, udp_port, tls = new_port(), new_port(), new_port()
    start(AGNHOST, ["porter"], env={f"SERVE_PORT_{tcp}": "foo", f"SERVE_UDP_PORT_{udp_port}": "bar",
                                    f"SERVE_TLS_PORT_{tls}": "tls-foo"}, port=tcp)
    assert curl(f"http://127.0.0.1:{tcp}/anything") == "foo"
    assert udp(udp_port, b"x")[0] == b"bar"
    assert curl(f"https://127.0.0.1:{tls}/", "-k", "--retry", "3", "--retry-connrefused") == "tls-foo"


def test_connect_exit_codes(start: Starter, port: int, new_port: Callable[[], int]) -> None:
    netexec(start, port, new_port())

    def connect(*args: str) -> tuple[int, bytes]:
        proc = start(AGNHOST, ["connect", *args])
        return proc.wait(timeout=10), proc.stderr.read()  # type: ignore[union-attr]

    assert connect(f"127.0.0.1:{port}", "--timeout=2s") == (0, b"")
    assert connect(f"127.0.0.1:{new_port()}", "--timeout=2s") == (1, b"REFUSED\n")
    code, err = connect("no-such-host.invalid:80", "--timeout=2s")
    assert code == 1 and err.startswith(b"DNS: ")
    code, err = connect("127.0.0.1", "--timeout=2s")
    assert code == 1 and err.startswith(b"UNKNOWN: ")


def test_dns_subcommands_read_the_pods_files(start: Starter) -> None:
    proc = start(AGNHOST, ["etc-hosts"])
    assert proc.wait(timeout=5) == 0
    assert proc.stdout.read() == Path("/etc/hosts").read_bytes()  # type: ignore[union-attr]


def test_agnhost_pause_delay_shutdown(start: Starter) -> None:
    proc = start(AGNHOST, ["pause"])
    assert proc.stdout.readline() == b"Paused\n"  # type: ignore[union-attr]
    assert terminate(proc) == 2
