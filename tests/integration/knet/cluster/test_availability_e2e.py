"""Issue 10 end to end (availability): kube-proxy is its own process per node, so a kill -9 of
a node's agent stops neither its Service traffic nor its DNS; `knet status` names what died and
exits non-zero; `knet up` restarts exactly the dead components (the control plane on the same
store, agents, proxies) or adopts a hand-started `knet control`; `knet down` leaves a state dir
that existed before `up` exactly as it was."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clusterkit import WEB_DEPLOYMENT, Cluster, host_state

APP = WEB_DEPLOYMENT + """---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeSelector: {kubernetes.io/hostname: node-1}
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "while true; do t=$(date +%s.%N); c=$(curl -s -m 2 -o /dev/null -w '%{http_code}' http://web/); if nslookup -timeout=2 kubernetes.default >/dev/null 2>&1; then d=ok; else d=fail; fi; echo \\"$t http=$c dns=$d\\"; sleep 0.2; done"]
"""


def _listing(d: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(d)), p.stat().st_mode) for p in d.rglob("*"))


@pytest.fixture(scope="module")
def avail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster in a state dir that existed before `up`, with a file and a folder of the
    user's in it: after `down` the dir must hold exactly those again."""
    base = tmp_path_factory.mktemp("avail")
    c = Cluster(base / "state", base / "kubecache")
    c.state_dir.mkdir(mode=0o700)
    (c.state_dir / "notes.txt").write_text("mine\n")
    (c.state_dir / "mine").mkdir()
    (c.state_dir / "mine" / "data").write_text("x\n")
    before, listing = host_state(c.state_dir), _listing(c.state_dir)
    c.knet("up", "--nodes", "2", "--state-dir", str(c.state_dir), "--timeout", "90")
    try:
        yield c
    finally:
        down = c.knet("down", "--state-dir", str(c.state_dir), check=False)
        assert down.returncode == 0, down.stderr
        assert host_state(c.state_dir) == before, "knet down left something behind"
        assert _listing(c.state_dir) == listing, down.stdout
        assert "removed from" in down.stdout and "tls.key" in down.stdout


def _record(c: Cluster) -> dict:
    return json.loads((c.state_dir / "cluster.json").read_text())


def _status(c: Cluster) -> subprocess.CompletedProcess[str]:
    return c.knet("status", "--state-dir", str(c.state_dir), check=False)


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def _client_lines(c: Cluster) -> list[tuple[float, str]]:
    """The client pod's log (once its node's agent serves it again)."""
    def logs() -> subprocess.CompletedProcess[str] | None:
        r = c.kubectl("logs", "client", check=False)
        return r if r.returncode == 0 else None
    r = c.wait("kubectl logs client", logs, timeout=30)
    out = []
    for line in r.stdout.splitlines():
        t, _, rest = line.partition(" ")
        out.append((float(t), rest))
    return out


def test_setup_proxy_is_its_own_process_with_a_private_flows_socket(avail: Cluster) -> None:
    avail.kubectl("apply", "-f", "-", input=APP)
    avail.ready_pods("app=web", 3)
    avail.ready_pods("!app", 1)
    procs = _record(avail)["procs"]
    assert {"control", "node-1", "node-2", "kube-proxy-node-1", "kube-proxy-node-2"} <= set(procs)
    for node in ("node-1", "node-2"):
        proxy, agent = procs[f"kube-proxy-{node}"], procs[node]
        assert proxy["pid"] != agent["pid"] and _alive(proxy["pid"])
        assert Path(proxy["log"]).name == f"kube-proxy-{node}.log"
        sock = avail.state_dir / "proxy" / f"{node}.sock"
        assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE((avail.state_dir / "proxy").stat().st_mode) == 0o700
    assert _status(avail).returncode == 0


def test_agent_killed_service_and_dns_keep_answering(avail: Cluster) -> None:
    avail.wait("client requests succeeding", lambda: any(
        "http=200 dns=ok" in r for _, r in _client_lines(avail)), timeout=30)
    agent = _record(avail)["procs"]["node-1"]["pid"]
    killed = time.time()
    os.kill(agent, signal.SIGKILL)
    time.sleep(8)
    back = time.time()
    st = _status(avail)
    assert st.returncode != 0
    assert "DEAD: node-1" in st.stdout and "knet up" in st.stdout, st.stdout
    assert "kube-proxy-node-1" not in "".join(ln for ln in st.stdout.splitlines()
                                             if ln.startswith("DEAD"))
    up = avail.knet("up", "--state-dir", str(avail.state_dir))
    assert "restarted node-1" in up.stdout and "control" not in up.stdout.splitlines()[-1], \
        up.stdout
    assert _status(avail).returncode == 0
    during = [r for t, r in _client_lines(avail) if killed + 0.5 < t < back]
    assert len(during) >= 5, during
    assert all(r == "http=200 dns=ok" for r in during), during
    assert _record(avail)["procs"]["node-1"]["pid"] != agent


def test_flows_still_come_from_the_proxy_process(avail: Cluster) -> None:
    r = avail.knet("flows", "--state-dir", str(avail.state_dir), "--service", "default/web",
                   "--last", "5", "-o", "json")
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert rows and all(f["service"] == "default/web" for f in rows), r.stdout + r.stderr
    assert any(f["node"] == "node-1" and f["client_pod"] == "default/client" for f in rows)


def test_up_on_a_live_cluster_says_already_up(avail: Cluster) -> None:
    up = avail.knet("up", "--state-dir", str(avail.state_dir))
    assert "already up" in up.stdout
    assert avail.knet("up", "--state-dir", str(avail.state_dir), "--nodes", "3",
                      check=False).returncode != 0


def test_proxy_killed_status_names_it_and_up_restarts_only_it(avail: Cluster) -> None:
    procs = _record(avail)["procs"]
    os.kill(procs["kube-proxy-node-1"]["pid"], signal.SIGKILL)
    st = _status(avail)
    assert st.returncode != 0 and "DEAD: kube-proxy-node-1" in st.stdout, st.stdout
    assert "DEAD: node-1:" not in st.stdout
    up = avail.knet("up", "--state-dir", str(avail.state_dir))
    assert "restarted kube-proxy-node-1; API" in up.stdout, up.stdout
    after = _record(avail)["procs"]
    assert after["kube-proxy-node-1"]["pid"] != procs["kube-proxy-node-1"]["pid"]
    assert {r: p["pid"] for r, p in after.items() if r != "kube-proxy-node-1"} == \
        {r: p["pid"] for r, p in procs.items() if r != "kube-proxy-node-1"}
    started = time.time()

    def fresh_ok() -> bool:
        return any(t > started and r == "http=200 dns=ok" for t, r in _client_lines(avail))
    avail.wait("the client's requests succeeding through the new proxy", fresh_ok, timeout=30)


def test_control_plane_killed_up_brings_it_back_on_the_same_store(avail: Cluster) -> None:
    before = {p["metadata"]["name"]: (p["metadata"]["uid"], p["status"]["podIP"])
              for p in avail.get("pods")["items"]}
    os.kill(_record(avail)["procs"]["control"]["pid"], signal.SIGKILL)
    st = _status(avail)
    assert st.returncode != 0 and "DEAD: control" in st.stdout, st.stdout
    up = avail.knet("up", "--state-dir", str(avail.state_dir))
    assert "restarted control" in up.stdout, up.stdout
    after = {p["metadata"]["name"]: (p["metadata"]["uid"], p["status"]["podIP"])
             for p in avail.get("pods")["items"]}
    assert after == before
    out = avail.exec("client", "curl", "-s", "-m", "3", "http://web/").stdout
    assert "Hostname: web-" in out
    # the agents reconnected: a new pod is run on each node
    avail.kubectl("scale", "deployment/web", "--replicas=4")
    avail.ready_pods("app=web", 4, timeout=60)
    assert _status(avail).returncode == 0


def test_hand_started_control_is_adopted_and_stopped_by_down(avail: Cluster) -> None:
    rec = _record(avail)
    os.kill(rec["procs"]["control"]["pid"], signal.SIGKILL)
    time.sleep(0.5)
    log = open(avail.state_dir / "logs" / "hand-control.log", "ab")  # noqa: SIM115
    hand = subprocess.Popen([sys.executable, "-m", "knet.cli.main", "control", "--state-dir",
                             str(avail.state_dir), "--listen", "172.18.0.1:6443", "--store",
                             rec["store"]], stdout=log, stderr=log, start_new_session=True)
    try:
        avail.wait("the hand-started control serving",
                   lambda: avail.kubectl("get", "ns", "default", check=False).returncode == 0,
                   timeout=30)
        up = avail.knet("up", "--state-dir", str(avail.state_dir))
        assert "adopted" in up.stdout, up.stdout
        assert _record(avail)["procs"]["control"]["pid"] == hand.pid
        assert _status(avail).returncode == 0
    finally:
        log.close()
        if hand.poll() is None and _record(avail)["procs"]["control"]["pid"] != hand.pid:
            hand.terminate()
    # `knet down` (the fixture) stops it through the record; here we only reap our child
    avail.knet("down", "--state-dir", str(avail.state_dir))
    assert hand.wait(timeout=15) is not None
    assert sorted(os.listdir(avail.state_dir)) == ["mine", "notes.txt"]
    avail.knet("up", "--nodes", "2", "--state-dir", str(avail.state_dir), "--timeout", "90")
