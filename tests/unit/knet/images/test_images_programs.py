"""Each built-in image program as a subprocess on 127.0.0.1, checked the way a user would:
curl output and status codes, UDP answers, and a prompt exit 0 on SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

Starter = Callable[..., subprocess.Popen[bytes]]


def curl(url: str, *extra: str) -> str:
    res = subprocess.run(["curl", "-s", "--max-time", "5", *extra, url], check=False, capture_output=True,
                         text=True, timeout=10)
    return res.stdout


def status(url: str, *extra: str) -> int:
    return int(curl(url, "-o", "/dev/null", "-w", "%{http_code}", *extra))


def udp(port: int, message: bytes, timeout: float = 2.0) -> tuple[bytes | None, int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        s.sendto(message, ("127.0.0.1", port))
        try:
            return s.recv(65535), s.getsockname()[1]
        except TimeoutError:
            return None, s.getsockname()[1]


def terminate(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=3)


# -- nginx ---------------------------------------------------------------------------------
def test_nginx_welcome_page(start: Starter, port: int, tmp_path: Path) -> None:
    proc = start("nginx:1.25", ["--port", str(port), "--root", str(tmp_path / "none")], port=port)
    out = curl(f"http://127.0.0.1:{port}/", "-i")
    assert out.startswith("HTTP/1.1 200 OK")
    assert "\nServer: nginx\n" in out and "<h1>Welcome to nginx!</h1>" in out
    assert status(f"http://127.0.0.1:{port}/missing") == 404
    assert terminate(proc) == 0


def test_nginx_serves_the_html_directory(start: Starter, port: int, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<p>from a configmap</p>\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("plain\n")
    start("nginx", ["--port", str(port), "--root", str(tmp_path)], port=port)
    base = f"http://127.0.0.1:{port}"
    assert curl(base + "/") == "<p>from a configmap</p>\n"
    assert curl(base + "/sub/a.txt", "-i").splitlines()[3] == "Content-Type: text/plain"
    assert status(base + "/sub") == 301
    assert status(base + "/sub/") == 403                # no index.html, no autoindex: as nginx
    missing = curl(base + "/nope.html", "-i")
    assert missing.startswith("HTTP/1.1 404") and "<center>nginx</center>" in missing
    assert status(base + "/../../etc/passwd", "--path-as-is") == 404
    assert status(base + "/", "-X", "POST") == 405
    head = curl(base + "/", "-I")
    assert head.startswith("HTTP/1.1 200") and "Content-Length: 24" in head


def test_nginx_keeps_connections_alive(start: Starter, port: int, tmp_path: Path) -> None:
    start("nginx", ["--port", str(port), "--root", str(tmp_path / "none")], port=port)
    out = subprocess.run(["curl", "-sv", "--max-time", "5", f"http://127.0.0.1:{port}/",
                          f"http://127.0.0.1:{port}/"], check=False, capture_output=True, text=True).stderr
    assert "Re-using existing connection" in out


# -- whoami --------------------------------------------------------------------------------
def test_whoami_text(start: Starter, port: int) -> None:
    proc = start("knet/whoami", env={"PORT": str(port), "POD_NAME": "web-1",
                                     "NODE_NAME": "node-1"}, port=port)
    out = curl(f"http://127.0.0.1:{port}/hello?x=1", "-H", "X-Test: yes")
    lines = out.splitlines()
    assert lines[:3] == ["Hostname: web-1", "IP: 127.0.0.1", "Node: node-1"]
    assert lines[3].startswith("RemoteAddr: 127.0.0.1:")
    assert lines[4] == "GET /hello?x=1 HTTP/1.1"
    assert "X-Test: yes" in lines and f"Host: 127.0.0.1:{port}" in lines
    assert terminate(proc) == 0


def test_whoami_api_and_health(start: Starter, port: int) -> None:
    start("traefik/whoami", ["--port", str(port), "--name", "web-2"], port=port)
    info: dict[str, Any] = json.loads(curl(f"http://127.0.0.1:{port}/api"))
    assert info["hostname"] == "web-2" and info["ip"] == ["127.0.0.1"]
    assert info["remoteAddr"].startswith("127.0.0.1:") and info["method"] == "GET"
    assert status(f"http://127.0.0.1:{port}/health") == 200


# -- http-echo -----------------------------------------------------------------------------
def test_http_echo(start: Starter, port: int) -> None:
    proc = start("hashicorp/http-echo:1.0", ["-text=hello world", f"-listen=:{port}"],
                 port=port)
    assert curl(f"http://127.0.0.1:{port}/anything") == "hello world\n"
    assert json.loads(curl(f"http://127.0.0.1:{port}/health")) == {"status": "ok"}
    assert terminate(proc) == 0


def test_http_echo_status_code_and_missing_text(start: Starter, port: int) -> None:
    start("hashicorp/http-echo", ["-text", "gone", f"-listen=:{port}", "-status-code=404"],
          port=port)
    assert status(f"http://127.0.0.1:{port}/") == 404
    proc = start("hashicorp/http-echo", [f"-listen=:{port + 1}"])
    assert proc.wait(timeout=5) == 127
    assert b"missing -text" in proc.stderr.read()  # type: ignore[union-attr]


# -- agnhost -------------------------------------------------------------------------------
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.39"


def test_agnhost_netexec_http(start: Starter, port: int, new_port: Callable[[], int]) -> None:
    udp_port = new_port()
    proc = start(AGNHOST, ["netexec", f"--http-port={port}", "--udp-port", str(udp_port)],
                 port=port)
    base = f"http://127.0.0.1:{port}"
    assert curl(base + "/hostname") == socket.gethostname()
    assert curl(base + "/clientip").startswith("127.0.0.1:")
    assert curl(base + "/echo?msg=hi%20there") == "hi there"
    assert status(base + "/healthz") == 200
    assert json.loads(curl(base + "/shell?cmd=echo%20from-shell")) == {"output": "from-shell\n"}
    # upstream answers 200 with the error in the JSON (its docs say 417; its code does not)
    assert curl(base + "/shell?cmd=exit%203") == '{"error":"exit status 3"}'
    dial = json.loads(curl(base + f"/dial?request=hostname&host=127.0.0.1&port={port}"
                                  "&protocol=http&tries=2"))
    assert dial == {"responses": [socket.gethostname()] * 2}
    dial = json.loads(curl(base + f"/dial?request=echo%20pong&host=127.0.0.1&port={udp_port}"
                                  "&protocol=udp&tries=1"))
    assert dial["responses"] == ["pong"]
    assert terminate(proc) == 0


def test_agnhost_netexec_udp_and_garbage(start: Starter, port: int,
                                         new_port: Callable[[], int]) -> None:
    udp_port = new_port()
    start(AGNHOST, ["netexec", f"--http-port={port}", f"--udp-port={udp_port}"], port=port)
    assert udp(udp_port, b"hostname")[0] == socket.gethostname().encode()
    assert udp(udp_port, b"echo hello")[0] == b"hello"
    answer, client_port = udp(udp_port, b"clientip")
    assert answer == f"127.0.0.1:{client_port}".encode()
    assert udp(udp_port, b"\xff\x00garbage", timeout=0.3)[0] is None
    assert udp(udp_port, b"echo still here")[0] == b"still here"


def test_agnhost_netexec_exit_code(start: Starter, port: int, new_port: Callable[[], int]) -> None:
    proc = start(AGNHOST, ["netexec", f"--http-port={port}", f"--udp-port={new_port()}"],
                 port=port)
    curl(f"http://127.0.0.1:{port}/exit?code=3")
    assert proc.wait(timeout=5) == 3


def test_agnhost_serve_hostname_http_udp(start: Starter, port: int) -> None:
    proc = start(AGNHOST, command=["/agnhost", "serve-hostname"],
                 args=["--port", str(port), "--udp"], port=port)
    assert curl(f"http://127.0.0.1:{port}/") == socket.gethostname()
    assert udp(port, b"anything")[0] == socket.gethostname().encode()
    assert terminate(proc) == 0


def test_agnhost_serve_hostname_tcp(start: Starter, port: int) -> None:
    start(AGNHOST, ["serve-hostname", "--tcp", "--http=false", f"--port={port}"], port=port)
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        assert s.recv(100) == socket.gethostname().encode()


def test_agnhost_bad_flag_and_command(start: Starter) -> None:
    assert start(AGNHOST, ["netexec", "--nope=1"]).wait(timeout=5) == 2
    proc = start(AGNHOST, ["frobnicate"])
    assert proc.wait(timeout=5) == 1
    assert b"unknown command 'frobnicate'" in proc.stderr.read()  # type: ignore[union-attr]


# -- pause ---------------------------------------------------------------------------------
def test_pause_sleeps_until_sigterm(start: Starter) -> None:
    # the real pause exits 0; agnhost's pause exits 2 on SIGTERM (upstream's pause.go)
    for image, args, code in (("registry.k8s.io/pause:3.9", None, 0), (AGNHOST, None, 2)):
        proc = start(image, args)
        try:
            proc.wait(timeout=0.5)
            raise AssertionError(f"{image} exited early with {proc.returncode}")
        except subprocess.TimeoutExpired:
            pass
        assert terminate(proc) == code


def test_busybox_runs_host_shell(start: Starter) -> None:
    proc = start("busybox", ["sh", "-c", "echo hi from $0; exit 4"])
    out, _ = proc.communicate(timeout=5)
    assert (out, proc.returncode) == (b"hi from sh\n", 4)


def test_http_garbage_gets_400_and_the_server_keeps_serving(start: Starter, port: int) -> None:
    start("knet/whoami", ["--port", str(port)], port=port)
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"\x16\x03\x01 this is not http\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400 Bad Request")
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"POST / HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 413")
    assert curl(f"http://127.0.0.1:{port}/").startswith("Hostname: ")


def test_netexec_slow_shell_does_not_block_others(start: Starter, port: int,
                                                  new_port: Callable[[], int]) -> None:
    start(AGNHOST, ["netexec", f"--http-port={port}", f"--udp-port={new_port()}"], port=port)
    slow = subprocess.Popen(["curl", "-s", "--max-time", "10",
                             f"http://127.0.0.1:{port}/shell?cmd=sleep%202%3B%20echo%20done"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert curl(f"http://127.0.0.1:{port}/echo?msg=quick", "--max-time", "1") == "quick"
        out, _ = slow.communicate(timeout=10)
    finally:
        if slow.poll() is None:
            slow.kill()
    assert json.loads(out) == {"output": "done\n"}
