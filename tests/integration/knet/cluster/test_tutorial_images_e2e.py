"""The official tutorials' images on a real 2-node cluster, their YAML applied unchanged with
the real kubectl: the pi Job's perl container (as a Pod), the Configure Probes tutorial's
three liveness pods (exec, http with agnhost, tcp with goproxy) restarting or staying up as
the tutorial shows, the guestbook's redis leader and followers replicating a key behind its frontend, agnhost
netexec's /clientip and /dial between pods, nginx-slim serving a volume, and an image name
with a typo failing with the kubelet's ErrImagePull."""

from __future__ import annotations

import json

from clusterkit import Cluster

PI_POD = """
apiVersion: v1
kind: Pod
metadata: {name: pi}
spec:
  containers:
  - name: pi
    image: perl:5.34.0
    command: ["perl",  "-Mbignum=bpi", "-wle", "print bpi(2000)"]
  restartPolicy: Never
"""

PROBES = """
apiVersion: v1
kind: Pod
metadata:
  labels:
    test: liveness
  name: liveness-exec
spec:
  containers:
  - name: liveness
    image: registry.k8s.io/busybox:1.27.2
    args:
    - /bin/sh
    - -c
    - touch /tmp/healthy; sleep 30; rm -f /tmp/healthy; sleep 600
    livenessProbe:
      exec:
        command:
        - cat
        - /tmp/healthy
      initialDelaySeconds: 5
      periodSeconds: 5
---
apiVersion: v1
kind: Pod
metadata:
  labels:
    test: liveness
  name: liveness-http
spec:
  containers:
  - name: liveness
    image: registry.k8s.io/e2e-test-images/agnhost:2.40
    args:
    - liveness
    livenessProbe:
      httpGet:
        path: /healthz
        port: 8080
        httpHeaders:
        - name: Custom-Header
          value: Awesome
      initialDelaySeconds: 3
      periodSeconds: 3
---
apiVersion: v1
kind: Pod
metadata:
  name: goproxy
  labels:
    app: goproxy
spec:
  containers:
  - name: goproxy
    image: registry.k8s.io/goproxy:0.1
    ports:
    - containerPort: 8080
    readinessProbe:
      tcpSocket:
        port: 8080
      initialDelaySeconds: 15
      periodSeconds: 10
    livenessProbe:
      tcpSocket:
        port: 8080
      initialDelaySeconds: 15
      periodSeconds: 10
"""


def status(cluster: Cluster, pod: str) -> dict:
    return (cluster.get("pod", pod).get("status", {}).get("containerStatuses") or [{}])[0]


def logs(cluster: Cluster, pod: str) -> str:
    return cluster.kubectl("logs", pod).stdout


def test_the_pi_jobs_container_prints_2000_digits(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=PI_POD)
    cluster.wait("pi to succeed",
                 lambda: cluster.get("pod", "pi")["status"].get("phase") == "Succeeded",
                 timeout=120, every=1)
    digits = logs(cluster, "pi").strip()
    assert digits.startswith("3.14159265358979323846264338327950288419716939937510")
    assert len(digits) == 2001 and digits[2:].isdigit()
    assert status(cluster, "pi")["state"]["terminated"]["exitCode"] == 0
    cluster.kubectl("delete", "pod", "pi", "--wait=false")


def test_configure_probes_tutorial(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=PROBES)
    # goproxy: the tcpSocket probes pass after their 15 s delay, and it keeps running
    cluster.wait("goproxy ready", lambda: status(cluster, "goproxy").get("ready"), timeout=60)
    # liveness-http: /healthz turns 500 after 10 s, so the kubelet restarts the container
    cluster.wait("liveness-http restarted",
                 lambda: status(cluster, "liveness-http").get("restartCount", 0) >= 1, timeout=60)
    events = cluster.kubectl("describe", "pod", "liveness-http").stdout
    assert "Liveness probe failed: HTTP probe failed with statuscode: 500" in events
    # liveness-exec: /tmp/healthy goes at 30 s; three failed `cat`s later it is restarted
    cluster.wait("liveness-exec restarted",
                 lambda: status(cluster, "liveness-exec").get("restartCount", 0) >= 1, timeout=90)
    events = cluster.kubectl("describe", "pod", "liveness-exec").stdout
    assert "Liveness probe failed" in events, events
    assert "Container liveness failed liveness probe, will be restarted" in events
    gp = status(cluster, "goproxy")
    assert gp["ready"] and gp["restartCount"] == 0
    cluster.kubectl("delete", "pod", "liveness-exec", "liveness-http", "goproxy", "--wait=false")


GUESTBOOK_REDIS = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: redis-leader
  labels:
    app: redis
    role: leader
    tier: backend
spec:
  replicas: 1
  selector:
    matchLabels:
      app: redis
  template:
    metadata:
      labels:
        app: redis
        role: leader
        tier: backend
    spec:
      containers:
      - name: leader
        image: "docker.io/redis:6.0.5"
        resources:
          requests:
            cpu: 100m
            memory: 100Mi
        ports:
        - containerPort: 6379
---
apiVersion: v1
kind: Service
metadata:
  name: redis-leader
  labels:
    app: redis
    role: leader
    tier: backend
spec:
  ports:
  - port: 6379
    targetPort: 6379
  selector:
    app: redis
    role: leader
    tier: backend
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: redis-follower
  labels:
    app: redis
    role: follower
    tier: backend
spec:
  replicas: 2
  selector:
    matchLabels:
      app: redis
  template:
    metadata:
      labels:
        app: redis
        role: follower
        tier: backend
    spec:
      containers:
      - name: follower
        image: us-docker.pkg.dev/google-samples/containers/gke/gb-redis-follower:v2
        resources:
          requests:
            cpu: 100m
            memory: 100Mi
        ports:
        - containerPort: 6379
---
apiVersion: v1
kind: Service
metadata:
  name: redis-follower
  labels:
    app: redis
    role: follower
    tier: backend
spec:
  ports:
    # the port that this service should serve on
  - port: 6379
  selector:
    app: redis
    role: follower
    tier: backend
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: frontend
spec:
  replicas: 3
  selector:
    matchLabels:
        app: guestbook
        tier: frontend
  template:
    metadata:
      labels:
        app: guestbook
        tier: frontend
    spec:
      containers:
      - name: php-redis
        image: us-docker.pkg.dev/google-samples/containers/gke/gb-frontend:v5
        env:
        - name: GET_HOSTS_FROM
          value: "dns"
        resources:
          requests:
            cpu: 100m
            memory: 100Mi
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: frontend
  labels:
    app: guestbook
    tier: frontend
spec:
  # type: LoadBalancer
  ports:
    # the port that this service should serve on
  - port: 80
  selector:
    app: guestbook
    tier: frontend
"""


def test_guestbook_followers_replicate_the_leader_behind_the_frontend(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=GUESTBOOK_REDIS)
    leader = cluster.ready_pods("role=leader", 1, timeout=90)[0]["metadata"]["name"]
    followers = [p["metadata"]["name"] for p in cluster.ready_pods("role=follower", 2, timeout=90)]
    assert cluster.exec(leader, "redis-cli", "set", "messages", ",hello").stdout.strip() == "OK"

    def replicated() -> bool:
        return all(cluster.exec(f, "redis-cli", "get", "messages", check=False).stdout.strip()
                   == ",hello" for f in followers)
    cluster.wait("both followers to have the key", replicated, timeout=60, every=1)
    role = cluster.exec(followers[0], "redis-cli", "role").stdout.split()
    assert role[:2] == ["slave", "redis-leader"] and "connected" in role
    info = cluster.exec(leader, "redis-cli", "info", "replication").stdout
    assert "connected_slaves:2" in info
    # the frontend writes through the leader and reads from the followers' Service
    cluster.ready_pods("app=guestbook", 3, timeout=90)
    php = "http://frontend/guestbook.php?cmd="
    out = cluster.exec(leader, "curl", "-s", f"{php}set&key=messages&value=,hello,guestbook")
    assert out.stdout == '{"message": "Updated"}'
    cluster.wait("the frontend to read the message back", lambda: cluster.exec(
        leader, "curl", "-s", f"{php}get&key=messages").stdout == '{"data": ",hello,guestbook"}',
        timeout=30, every=1)
    cluster.kubectl("delete", "deployment", "redis-leader", "redis-follower", "frontend",
                    "--wait=false")
    cluster.kubectl("delete", "service", "redis-leader", "redis-follower", "frontend")


NETEXEC = """
apiVersion: v1
kind: Pod
metadata: {name: NAME, labels: {app: netexec}}
spec:
  containers:
  - name: agnhost
    image: registry.k8s.io/e2e-test-images/agnhost:2.40
    args: ["netexec", "--http-port=8080", "--udp-port=8081"]
    readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
"""


def test_agnhost_netexec_clientip_and_dial_between_pods(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input="---".join(
        NETEXEC.replace("NAME", n) for n in ("netexec-a", "netexec-b")))
    pods = {p["metadata"]["name"]: p["status"]["podIP"]
            for p in cluster.ready_pods("app=netexec", 2, timeout=60)}
    a, b = pods["netexec-a"], pods["netexec-b"]
    clientip = cluster.exec("netexec-b", "curl", "-s", f"http://{a}:8080/clientip").stdout
    assert clientip.startswith(f"{b}:")                     # the caller's pod IP, no NAT
    dial = cluster.exec("netexec-b", "curl", "-s", f"http://127.0.0.1:8080/dial?request=hostname"
                        f"&protocol=http&host={a}&port=8080&tries=2").stdout
    assert json.loads(dial) == {"responses": ["netexec-a", "netexec-a"]}
    dial = cluster.exec("netexec-b", "curl", "-s", f"http://127.0.0.1:8080/dial?request=hostname"
                        f"&protocol=udp&host={a}&port=8081&tries=1").stdout
    assert json.loads(dial) == {"responses": ["netexec-a"]}
    connect = cluster.kubectl("exec", "netexec-b", "--", "/agnhost", "connect", f"{a}:8080",
                              "--timeout=3s", check=False)
    assert connect.returncode == 0, connect.stderr
    refused = cluster.kubectl("exec", "netexec-b", "--", "/agnhost", "connect", f"{a}:9999",
                              "--timeout=3s", check=False)
    assert refused.returncode == 1 and "REFUSED" in refused.stderr
    cluster.kubectl("delete", "pod", "netexec-a", "netexec-b", "--wait=false")


NGINX_SLIM = """
apiVersion: v1
kind: Pod
metadata: {name: web-0, labels: {app: nginx-slim}}
spec:
  containers:
  - name: nginx
    image: registry.k8s.io/nginx-slim:0.24
    ports: [{containerPort: 80, name: web}]
    volumeMounts: [{name: www, mountPath: /usr/share/nginx/html}]
  volumes: [{name: www, emptyDir: {}}]
"""


def test_nginx_slim_serves_its_volume(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=NGINX_SLIM)
    ip = cluster.ready_pods("app=nginx-slim", 1)[0]["status"]["podIP"]
    # the StatefulSet tutorial's step: write the hostname into the volume, read it over HTTP
    cluster.exec("web-0", "sh", "-c", 'echo "$(hostname)" > /usr/share/nginx/html/index.html')
    out = cluster.exec("web-0", "curl", "-s", f"http://{ip}/").stdout
    assert out == "web-0\n"
    cluster.kubectl("delete", "pod", "web-0", "--wait=false")


def test_an_image_name_with_a_typo_is_err_image_pull(cluster: Cluster) -> None:
    cluster.kubectl("run", "typo", "--image=registry.k8s.io/busyboxx:1.28", "--restart=Never",
                    "--command", "--", "sleep", "60")
    cluster.kubectl("run", "typo2", "--image=registry.k8s.io/busyboxx:1.28", "--restart=Never")

    def waiting() -> dict | None:
        w = status(cluster, "typo2").get("state", {}).get("waiting") or {}
        return w if w.get("reason") in ("ErrImagePull", "ImagePullBackOff") else None
    w = cluster.wait("typo2 to fail its pull", waiting, timeout=30)
    assert 'image "registry.k8s.io/busyboxx:1.28"' in w["message"]
    assert "busybox" in w["message"]                # the catalog is listed
    # with a command, an unknown image runs the host's binaries (knet's documented rule)
    cluster.wait("typo to run", lambda: status(cluster, "typo").get("state", {}).get("running"),
                 timeout=30)
    cluster.kubectl("delete", "pod", "typo", "typo2", "--wait=false")


DNSUTILS = """
apiVersion: v1
kind: Pod
metadata:
  name: dnsutils
  namespace: default
spec:
  containers:
  - name: dnsutils
    image: registry.k8s.io/e2e-test-images/jessie-dnsutils:1.3
    command:
      - sleep
      - "infinity"
    imagePullPolicy: IfNotPresent
  restartPolicy: Always
"""


def test_debug_dns_with_dnsutils_and_source_ip_with_echoserver(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=DNSUTILS)
    cluster.kubectl("create", "deployment", "source-ip-app",
                    "--image=registry.k8s.io/echoserver:1.4")
    cluster.kubectl("expose", "deployment", "source-ip-app", "--name=clusterip", "--port=80",
                    "--target-port=8080")
    cluster.wait("dnsutils running",
                 lambda: status(cluster, "dnsutils").get("state", {}).get("running"), timeout=60)
    out = cluster.exec("dnsutils", "nslookup", "kubernetes.default").stdout
    assert "Name:\tkubernetes.default.svc.cluster.local\nAddress: 10.96.0.1" in out
    dig = cluster.exec("dnsutils", "dig", "+short", "clusterip.default.svc.cluster.local").stdout
    ip = cluster.get("service", "clusterip")["spec"]["clusterIP"]
    assert dig.strip() == ip
    pod = cluster.ready_pods("app=source-ip-app", 1)[0]
    dnsutils_ip = cluster.get("pod", "dnsutils")["status"]["podIP"]
    body = cluster.exec("dnsutils", "curl", "-s", "--max-time", "5", "http://clusterip/").stdout
    assert body.startswith("CLIENT VALUES:\nclient_address=")
    assert "request_uri=http://clusterip:8080/\n" in body
    # straight to the pod: the client's own pod IP
    direct = cluster.exec("dnsutils", "curl", "-s", f"http://{pod['status']['podIP']}:8080/").stdout
    assert f"\nclient_address={dnsutils_ip}\n" in direct
    cluster.kubectl("delete", "pod", "dnsutils", "--wait=false")
    cluster.kubectl("delete", "deployment", "source-ip-app", "--wait=false")
    cluster.kubectl("delete", "service", "clusterip")
