"""The StatefulSet Basics tutorial (kubernetes.io/docs/tutorials/stateful-application/
basic-stateful-set) on a 2-node cluster with the real kubectl: ordered creation seen through a
watch, stable hostnames, per-pod DNS names from another pod, data on PersistentVolumes kept
across `kubectl delete pod`, scale up and down, a rolling update with a partition, rollout
history/undo; and a claim naming a StorageClass that does not exist."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from clusterkit import Cluster, client_pod

from knet.runtime import images

# The tutorial's image; until the image catalog has nginx-slim, the built-in nginx (any tag).
SLIM = "registry.k8s.io/nginx-slim:0.24"


def _image(ref: str, fallback: str) -> str:
    try:
        images.resolve(ref, None, None)
        return ref
    except images.ImageNotFound:
        return fallback


IMAGE = _image(SLIM, "nginx:1.25")
IMAGE2 = _image("registry.k8s.io/nginx-slim:0.21", "nginx:1.26")

WEB = f"""
apiVersion: v1
kind: Service
metadata:
  name: nginx
  labels:
    app: nginx
spec:
  ports:
  - port: 80
    name: web
  clusterIP: None
  selector:
    app: nginx
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: "nginx"
  replicas: 2
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: {IMAGE}
        ports:
        - containerPort: 80
          name: web
        volumeMounts:
        - name: www
          mountPath: /usr/share/nginx/html
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: [ "ReadWriteOnce" ]
      resources:
        requests:
          storage: 1Gi
"""

WATCH = ('{.metadata.name} {.status.phase} '
         '{.status.conditions[?(@.type=="Ready")].status}{"\\n"}')


def _curl(c: Cluster, host: str) -> str:
    return c.exec("client", "curl", "-s", "-m", "5", f"http://{host}/").stdout.strip()


def test_ordered_creation_seen_by_a_watch(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=client_pod())
    watch = subprocess.Popen(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "--cache-dir",
         str(cluster.cache_dir), "get", "pods", "-w", "-l", "app=nginx", "-o",
         f"jsonpath={WATCH}"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        out = cluster.kubectl("apply", "-f", "-", input=WEB).stdout
        assert "statefulset.apps/web created" in out
        cluster.ready_pods("app=nginx", 2, timeout=90)
    finally:
        watch.terminate()
        lines = [line.split() for line in watch.communicate(timeout=10)[0].splitlines()]
    first_web1 = next(i for i, parts in enumerate(lines) if parts[0] == "web-1")
    assert any(p[:3] == ["web-0", "Running", "True"] for p in lines[:first_web1]), lines
    pods = {p["metadata"]["name"]: p for p in cluster.get("pods", "-l", "app=nginx")["items"]}
    assert sorted(pods) == ["web-0", "web-1"]
    assert pods["web-0"]["spec"]["hostname"] == "web-0"
    assert pods["web-0"]["spec"]["subdomain"] == "nginx"
    pvcs = cluster.get("pvc", "-l", "app=nginx")["items"]
    assert sorted((p["metadata"]["name"], p["status"]["phase"]) for p in pvcs) == [
        ("www-web-0", "Bound"), ("www-web-1", "Bound")]
    table = cluster.kubectl("get", "pvc", "-l", "app=nginx").stdout
    assert "www-web-0   Bound" in table and "standard" in table and "RWO" in table


def test_stable_hostnames_and_dns(cluster: Cluster) -> None:
    for i in (0, 1):
        assert cluster.exec(f"web-{i}", "sh", "-c", "hostname").stdout.strip() == f"web-{i}"
    cluster.ready_pods("!app", 1)
    ips = {p["metadata"]["name"]: p["status"]["podIP"]
           for p in cluster.get("pods", "-l", "app=nginx")["items"]}
    for name in ("web-0", "web-1"):
        fqdn = f"{name}.nginx.default.svc.cluster.local"
        got = cluster.exec("client", "dig", "+short", fqdn).stdout.split()
        assert got == [ips[name]], (fqdn, got)
        short = cluster.exec("client", "dig", "+short", "+search", f"{name}.nginx").stdout
        assert short.split() == [ips[name]]


def test_data_survives_pod_deletion(cluster: Cluster) -> None:
    for i in (0, 1):
        cluster.exec(f"web-{i}", "sh", "-c",
                     'echo "$(hostname)" > /usr/share/nginx/html/index.html')
    assert _curl(cluster, "web-0.nginx") == "web-0"
    assert _curl(cluster, "web-1.nginx") == "web-1"
    before = {p["metadata"]["name"]: (p["metadata"]["uid"], p["spec"]["nodeName"])
              for p in cluster.get("pods", "-l", "app=nginx")["items"]}
    cluster.kubectl("delete", "pod", "-l", "app=nginx", timeout=90)

    def recreated() -> bool:
        pods = cluster.ready_pods("app=nginx", 2, timeout=90)
        return all(p["metadata"]["uid"] != before[p["metadata"]["name"]][0] for p in pods)
    cluster.wait("web-0 and web-1 re-created", recreated, timeout=90)
    after = {p["metadata"]["name"]: p["spec"]["nodeName"]
             for p in cluster.get("pods", "-l", "app=nginx")["items"]}
    assert after == {n: node for n, (_, node) in before.items()}   # pinned by PV affinity
    cluster.wait("web-0 serves its old page", lambda: _curl(cluster, "web-0.nginx") == "web-0")
    assert _curl(cluster, "web-1.nginx") == "web-1"


def test_scale_up_and_down(cluster: Cluster) -> None:
    cluster.kubectl("scale", "sts", "web", "--replicas=5")
    cluster.ready_pods("app=nginx", 5, timeout=120)
    cluster.kubectl("patch", "sts", "web", "-p", '{"spec":{"replicas":3}}')
    cluster.ready_pods("app=nginx", 3, timeout=90)
    names = sorted(p["metadata"]["name"] for p in cluster.get("pods", "-l", "app=nginx")["items"])
    assert names == ["web-0", "web-1", "web-2"]
    pvcs = sorted(p["metadata"]["name"] for p in cluster.get("pvc", "-l", "app=nginx")["items"])
    assert pvcs == [f"www-web-{i}" for i in range(5)]          # whenScaled: Retain
    events = cluster.kubectl("get", "events", "--field-selector",
                             "involvedObject.name=web").stdout
    assert "delete Pod web-4 in StatefulSet web successful" in events


def _images(c: Cluster) -> dict[str, str]:
    return {p["metadata"]["name"]: p["spec"]["containers"][0]["image"]
            for p in c.get("pods", "-l", "app=nginx")["items"]
            if not p["metadata"].get("deletionTimestamp")}


def test_rolling_update_with_partition_and_undo(cluster: Cluster) -> None:
    cluster.kubectl("patch", "statefulset", "web", "-p",
                    '{"spec":{"updateStrategy":{"type":"RollingUpdate",'
                    '"rollingUpdate":{"partition":2}}}}')
    cluster.kubectl("patch", "statefulset", "web", "--type=json", "-p",
                    '[{"op": "replace", "path": "/spec/template/spec/containers/0/image", '
                    f'"value": "{IMAGE2}"}}]')
    cluster.wait("web-2 updated", lambda: _images(cluster).get("web-2") == IMAGE2, timeout=90)
    cluster.ready_pods("app=nginx", 3, timeout=90)
    assert _images(cluster) == {"web-0": IMAGE, "web-1": IMAGE, "web-2": IMAGE2}
    out = cluster.kubectl("rollout", "status", "sts/web", "--timeout=60s").stdout
    assert "partitioned roll out complete: 1 new pods have been updated" in out
    cluster.kubectl("patch", "statefulset", "web", "-p",
                    '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}')
    out = cluster.kubectl("rollout", "status", "sts/web", "--timeout=120s",
                          timeout=150).stdout
    # kubectl reports partitioned progress whenever a partition is set, even 0 (the default)
    assert "partitioned roll out complete: 3 new pods have been updated" in out
    assert set(_images(cluster).values()) == {IMAGE2}
    history = cluster.kubectl("rollout", "history", "sts/web").stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2"]
    cluster.kubectl("rollout", "undo", "sts/web")
    cluster.kubectl("rollout", "status", "sts/web", "--timeout=120s", timeout=150)
    assert set(_images(cluster).values()) == {IMAGE}
    sts = cluster.get("sts", "web")["status"]
    assert sts["currentRevision"] == sts["updateRevision"] and sts["readyReplicas"] == 3
    # the data outlived three generations of pods
    assert _curl(cluster, "web-0.nginx") == "web-0"


def test_missing_storage_class_stays_pending(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: nowhere}
spec:
  storageClassName: fast
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
""")

    def told() -> str | None:
        out = cluster.kubectl("describe", "pvc", "nowhere").stdout
        return out if 'storageclass.storage.k8s.io "fast" not found' in out else None
    out = cluster.wait("ProvisioningFailed event", told)
    assert "Pending" in out
    cluster.kubectl("delete", "pvc", "nowhere")


PARALLEL = f"""
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: par}}
spec:
  serviceName: par
  replicas: 3
  podManagementPolicy: Parallel
  selector: {{matchLabels: {{app: par}}}}
  template:
    metadata: {{labels: {{app: par}}}}
    spec:
      containers:
      - name: nginx
        image: {IMAGE}
        readinessProbe: {{exec: {{command: ["false"]}}, periodSeconds: 1}}
"""


def test_parallel_does_not_wait_for_readiness(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=PARALLEL)

    def running() -> list[str] | None:
        pods = cluster.get("pods", "-l", "app=par")["items"]
        names = sorted(p["metadata"]["name"] for p in pods
                       if p.get("status", {}).get("phase") == "Running")
        return names if len(names) == 3 else None
    assert cluster.wait("3 pods running", running, timeout=60) == ["par-0", "par-1", "par-2"]
    sts = cluster.get("sts", "par")["status"]
    assert sts["replicas"] == 3 and sts.get("readyReplicas", 0) == 0   # none Ready, all made
    cluster.kubectl("delete", "sts", "par", timeout=60)


VOLUMES = """
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: scratch}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: vols, labels: {tier: demo}}
spec:
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "echo run >> /claim/sub/runs; echo run >> /mem/runs; sleep 1; exit 1"]
    volumeMounts:
    - {name: claim, mountPath: /claim/sub, subPath: nested/dir}
    - {name: mem, mountPath: /mem}
    - {name: host, mountPath: /host}
    - {name: info, mountPath: /info}
  volumes:
  - {name: claim, persistentVolumeClaim: {claimName: scratch}}
  - {name: mem, emptyDir: {medium: Memory, sizeLimit: 8Mi}}
  - {name: host, hostPath: {path: HOSTDIR, type: DirectoryOrCreate}}
  - name: info
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: name, fieldRef: {fieldPath: metadata.name}}
"""


def test_volume_kinds_and_data_across_container_restarts(cluster: Cluster) -> None:
    # outside the state dir: no pod may mount anything inside it
    host_dir = cluster.state_dir.parent / "hostpath-demo"
    cluster.kubectl("apply", "-f", "-",
                    input=VOLUMES.replace("HOSTDIR", str(host_dir)))

    def restarted() -> dict | None:
        pod = cluster.get("pod", "vols")
        statuses = pod["status"].get("containerStatuses") or []
        return pod if statuses and statuses[0].get("restartCount", 0) >= 1 else None
    pod = cluster.wait("a container restart", restarted, timeout=90)
    pv = cluster.get("pv", cluster.get("pvc", "scratch")["spec"]["volumeName"])
    runs = Path(pv["spec"]["hostPath"]["path"]) / "nested" / "dir" / "runs"
    cluster.wait("a second run recorded on the claim",       # kept across a restart
                 lambda: len(runs.read_text().split()) >= 2, timeout=60)
    uid = pod["metadata"]["uid"]
    node = pod["spec"]["nodeName"]
    mem = cluster.state_dir / "pods" / node / f"default_vols_{uid}" / "volumes" / "mem"
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    tmpfs = [m for m in mounts if m[1] == str(mem)]
    assert tmpfs and tmpfs[0][2] == "tmpfs" and "size=8192k" in tmpfs[0][3], tmpfs
    assert len((mem / "runs").read_text().split()) >= 2       # emptyDir outlives containers
    assert host_dir.is_dir()
    info = cluster.state_dir / "pods" / node / f"default_vols_{uid}" / "volumes" / "info"
    assert (info / "name").read_text() == "vols"
    assert (info / "labels").read_text() == 'tier="demo"'
    cluster.kubectl("delete", "pod", "vols", "--grace-period=1", timeout=60)
    assert not any(m[1] == str(mem) for m in
                   (line.split() for line in Path("/proc/mounts").read_text().splitlines()))
    cluster.kubectl("delete", "pvc", "scratch", timeout=60)
    host_dir.rmdir()


def test_delete_statefulset_and_claims_reclaims_volumes(cluster: Cluster) -> None:
    pvs = [p["metadata"]["name"] for p in cluster.get("pv")["items"]]
    dirs = [p["spec"]["hostPath"]["path"] for p in cluster.get("pv")["items"]]
    assert pvs and all(str(cluster.state_dir) in d for d in dirs)
    cluster.kubectl("delete", "sts", "web", timeout=90)
    cluster.wait("pods gone", lambda: not cluster.get("pods", "-l", "app=nginx")["items"],
                 timeout=90)
    cluster.kubectl("delete", "pvc", "-l", "app=nginx", timeout=90)
    cluster.wait("volumes reclaimed", lambda: not cluster.get("pv")["items"], timeout=90)
    import os
    assert not any(os.path.exists(d) for d in dirs)             # reclaim Delete
