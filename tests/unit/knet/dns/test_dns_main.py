"""`python -m knet.dns` as a process: serves a static objects file, exits 0 on SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

OBJECTS = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {clusterIP: 10.96.0.20, ports: [{name: http, port: 80}]}
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    objs = tmp_path / "objects.yaml"
    objs.write_text(OBJECTS)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "knet.dns", "--objects", str(objs),
                             "--listen", f"127.0.0.1:{port}", "--log-queries"],
                            stderr=subprocess.PIPE, text=True)
    try:
        out = ""
        for _ in range(50):
            out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+short", "+time=1",
                                  "+tries=1", "web.default.svc.cluster.local"],
                                 check=False, capture_output=True, text=True, timeout=5).stdout
            if out.strip() and not out.startswith(";;"):
                break
            time.sleep(0.1)
        assert out.split() == ["10.96.0.20"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=5)
    assert proc.returncode == 0, err
    assert "web.default.svc.cluster.local. A -> NOERROR A 10.96.0.20" in err


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        res = subprocess.run([sys.executable, "-m", "knet.dns", "--objects", "/dev/null",
                              "--listen", f"127.0.0.1:{port}"],
                             check=False, capture_output=True, text=True, timeout=20)
    assert res.returncode == 1
    assert "cannot listen" in res.stderr


def test_flows_endpoint_shows_queries(tmp_path: Path) -> None:
    objs = tmp_path / "objects.yaml"
    objs.write_text(OBJECTS)
    port, fport = _free_port(), _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "knet.dns", "--objects", str(objs),
                             "--listen", f"127.0.0.1:{port}",
                             "--flows-listen", f"127.0.0.1:{fport}"], stderr=subprocess.PIPE)
    try:
        for _ in range(50):
            out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+short", "+time=1",
                                  "+tries=1", "nope.default.svc.cluster.local"],
                                 check=False, capture_output=True, text=True, timeout=5).stdout
            if not out.startswith(";;"):
                break
            time.sleep(0.1)
        body = subprocess.run(["curl", "-s", "--max-time", "5",
                               f"http://127.0.0.1:{fport}/flows"],
                              check=False, capture_output=True, text=True, timeout=10).stdout
        flows = json.loads(body)
        assert flows[-1]["qname"] == "nope.default.svc.cluster.local."
        assert flows[-1]["rcode"] == "NXDOMAIN" and flows[-1]["client"].startswith("127.0.0.1:")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=5)
    assert proc.returncode == 0
