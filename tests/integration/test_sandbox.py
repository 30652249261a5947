"""`knet sandbox` as a user runs it: what is made inside is gone after, nothing leaves."""

from __future__ import annotations

import subprocess
import sys


def knet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "knet.cli.main", *args],
                          capture_output=True, text=True, timeout=60)


def test_netns_made_inside_is_gone_after() -> None:
    r = knet("sandbox", "--", "sh", "-c", "ip netns add kntest1 && ip netns list")
    assert r.returncode == 0, r.stderr
    assert "kntest1" in r.stdout
    assert "kntest1" not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                           text=True).stdout


def test_only_loopback_and_no_route_out() -> None:
    r = knet("sandbox", "--", "sh", "-c", "ip -o link show")
    assert r.returncode == 0, r.stderr
    links = [line.split(":")[1].strip() for line in r.stdout.splitlines() if ": " in line]
    assert links == ["lo"]
    routes = knet("sandbox", "--", "ip", "-4", "route", "show", "table", "main").stdout
    assert routes.strip() == ""


def test_background_processes_die_with_the_sandbox() -> None:
    r = knet("sandbox", "--", "sh", "-c", "sleep 300 & echo $!")
    assert r.returncode == 0
    # the sleeper lived in the sandbox's PID namespace, which is gone: no sleep 300 remains
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "sleep 300" not in ps


def test_exit_code_and_missing_command() -> None:
    assert knet("sandbox", "--", "sh", "-c", "exit 7").returncode == 7
    r = knet("sandbox", "--", "no-such-command-knet")
    assert r.returncode == 127
    assert "no-such-command-knet" in r.stderr
