"""`knet demo`: the first thing a newcomer runs. In about a minute on a fresh 2-node cluster:
a backend Deployment (3 replicas) and a frontend pod, DNS from the frontend, 30 real requests
and their round-robin spread, ClientIP affinity pinning them, one request traced hop by hop.

Key choice: every stage checks what it shows (exactly 10 requests per pod; all pinned to one
pod; the trace reaches the backend) and raises DemoFailed naming the stage otherwise, so
the demo is also a smoke test. Output goes through a callback; only knet/cli prints.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable

from knet.errors import KnetError
from knet.labs.kube import Kube, is_ready, live
from knet.labs.runner import knet_has

Say = Callable[[str, str], None]  # (kind: stage | info | table | ok | skip, text)

APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: backend, labels: {app: myapp}}
spec:
  replicas: 3
  selector: {matchLabels: {tier: backend, app: myapp}}
  template:
    metadata: {labels: {tier: backend, app: myapp}}
    spec:
      containers:
      - name: whoami
        image: knet/whoami
        ports: [{containerPort: 80, name: http}]
        readinessProbe: {httpGet: {path: /health, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: backend-service}
spec:
  selector: {tier: backend, app: myapp}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: frontend, labels: {tier: frontend, app: myapp}}
spec:
  containers: [{name: client, image: busybox, command: ["sleep", "86400"]}]
"""

LOOP = "for i in $(seq {n}); do curl -s -m 3 http://backend-service/ | head -1; done"


class DemoFailed(KnetError):
    def __init__(self, stage: str, problem: str) -> None:
        super().__init__(f"demo failed at '{stage}': {problem}")
        self.stage = stage


class Demo:
    """The demo's stages against a running cluster (namespace default)."""

    def __init__(self, kube: Kube, *, say: Say, state_dir: str) -> None:
        self.kube, self.say, self.state_dir = kube.in_namespace("default"), say, state_dir

    def run(self) -> None:
        for stage in (self.deploy, self.dns, self.round_robin, self.affinity, self.trace):
            stage()
        self.say("stage", "where next")
        for line in NEXT:
            self.say("info", line)

    def deploy(self) -> None:
        self.say("stage", "deploy: backend (3 x knet/whoami, tier=backend) + frontend pod")
        self.kube.apply(APP)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            pods = live(self.kube.get_json("pods", "-l", "app=myapp")["items"])
            ready = [p for p in pods if is_ready(p)]
            if len(ready) == len(pods) == 4:
                break
            time.sleep(0.3)
        else:
            raise DemoFailed("deploy", f"{len(ready)} of 4 pods Ready after 90s; see "
                             "'kubectl get pods' and 'kubectl describe pod'")
        for p in sorted(ready, key=lambda p: p["metadata"]["name"]):
            self.say("info", f"{p['metadata']['name']:<24} {p['status']['podIP']:<14} "
                     f"{p['spec']['nodeName']:<8} tier={p['metadata']['labels']['tier']}")
        self._wait_endpoints()

    def _wait_endpoints(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            slices = self.kube.get_json(
                "endpointslices", "-l", "kubernetes.io/service-name=backend-service")["items"]
            if sum(len(s.get("endpoints") or []) for s in slices) == 3:
                return
            time.sleep(0.3)
        raise DemoFailed("deploy", "backend-service does not have 3 endpoints after 30s")

    def dns(self) -> None:
        self.say("stage", "DNS: the frontend resolves backend-service")
        ip = self.kube.run("get", "service", "backend-service", "-o",
                           "jsonpath={.spec.clusterIP}", check=True).stdout.strip()
        out = self._exec("dns", "nslookup backend-service")
        if f"Address: {ip}" not in out:
            raise DemoFailed("dns", f"nslookup backend-service did not answer the ClusterIP "
                             f"{ip}:\n{out}")
        self.say("info", f"backend-service.default.svc.cluster.local -> {ip} (the ClusterIP)")

    def round_robin(self) -> None:
        self.say("stage", "round-robin: 30 requests from the frontend to backend-service")
        seen = self._spread("round-robin", 30)
        if len(seen) != 3 or set(seen.values()) != {10}:
            raise DemoFailed("round-robin", f"expected 3 pods x 10 requests, got {dict(seen)}")
        self.say("ok", "each backend pod answered exactly 10 of the 30 requests")

    def affinity(self) -> None:
        self.say("stage", "session affinity: sessionAffinity=ClientIP, then 20 requests")
        self.kube.run("patch", "service", "backend-service", "-p",
                      '{"spec":{"sessionAffinity":"ClientIP"}}', check=True)
        deadline = time.monotonic() + 10
        while True:
            seen = self._spread("affinity", 20, show=False)
            if len(seen) == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self._table(seen)
        if len(seen) != 1:
            raise DemoFailed("affinity", f"requests not pinned to one pod: {dict(seen)}")
        self.say("ok", f"all 20 requests pinned to {next(iter(seen))}")

    def trace(self) -> None:
        self.say("stage", "trace: one request from frontend to backend-service, hop by hop")
        if not knet_has("trace"):
            self.say("skip", "SKIPPED: this knet has no 'knet trace' command yet")
            return
        r = subprocess.run([sys.executable, "-m", "knet.cli.main", "trace", "frontend",
                            "svc/backend-service:80", "--state-dir", self.state_dir],
                           capture_output=True, text=True, timeout=60, env=self.kube.env(),
                           check=False)
        hops = [ln for ln in r.stdout.splitlines()
                if re.match(r"^(trace |\s*\d+\. |answered )", ln)]
        if r.returncode != 0 or not any(ln.startswith("answered by") for ln in hops):
            raise DemoFailed("trace", "knet trace did not reach a backend:\n"
                             + (r.stdout + r.stderr)[-800:])
        for ln in hops:
            self.say("info", ln.rstrip())

    def _exec(self, stage: str, cmd: str) -> str:
        r = self.kube.run("exec", "frontend", "--", "sh", "-c", cmd, timeout=90)
        if r.returncode != 0:
            raise DemoFailed(stage, f"'{cmd}' in frontend failed: "
                             f"{(r.stderr or r.stdout).strip()[-400:]}")
        return r.stdout

    def _spread(self, stage: str, n: int, *, show: bool = True) -> Counter[str]:
        out = self._exec(stage, LOOP.format(n=n))
        seen = Counter(m.group(1) for m in re.finditer(r"^Hostname: (\S+)", out, re.MULTILINE))
        if sum(seen.values()) != n:
            raise DemoFailed(stage, f"{sum(seen.values())} of {n} requests answered")
        if show:
            self._table(seen)
        return seen

    def _table(self, seen: Counter[str]) -> None:
        total = sum(seen.values())
        self.say("table", f"{'backend pod':<26}{'requests':>9}")
        for pod, n in sorted(seen.items()):
            self.say("table", f"{pod:<26}{n:>9}  {'#' * n}")
        self.say("table", f"{'total':<26}{total:>9}")


NEXT = [
    "kubectl works: export KUBECONFIG=<state dir>/kubeconfig (knet up prints it)",
    "labs: 'knet lab list', then 'knet lab run 01' (narrated) ... 'knet lab check --all'",
    ("see the traffic: 'knet flows', 'knet capture POD', 'knet trace POD svc/NAME:PORT', "
     "'knet topo'"),
    "keep this cluster to play with: 'knet demo --keep' (then 'knet down')",
]
