"""Issue 10, identities, end to end with the real kubectl: ServiceAccounts (`default` in every
namespace, `kubectl create sa`, `kubectl get sa`), `kubectl create token`, a pod's own bound
token (never the admin's; it authenticates as the pod's ServiceAccount and stops working
when the pod is gone), agents as system:node:NAME, and kube-apiserver's admission answers."""

from __future__ import annotations

import base64
import json
import subprocess

import yaml
from clusterkit import Cluster, client_pod

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def _whoami(c: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return c.kubectl(*args, "auth", "whoami", "-o", "json", check=check)


def _running(c: Cluster, name: str, namespace: str = "default") -> dict:
    def cond() -> dict | None:
        pod = c.get("pod", name, "-n", namespace)
        return pod if pod.get("status", {}).get("phase") == "Running" else None
    return c.wait(f"pod {namespace}/{name} running", cond)


def test_every_namespace_has_a_default_service_account(cluster: Cluster) -> None:
    def accounts() -> set[tuple[str, str]] | None:
        items = cluster.get("serviceaccounts", "-A")["items"]
        found = {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items}
        return found if ("kube-public", "default") in found else None
    found = cluster.wait("default ServiceAccounts", accounts)
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert (ns, "default") in found
    assert ("kube-system", "coredns") in found
    cluster.kubectl("create", "namespace", "team-a")
    first = cluster.wait("team-a/default", lambda: cluster.kubectl(
        "get", "sa", "default", "-n", "team-a", "-o", "json", check=False).stdout)
    uid = json.loads(first)["metadata"]["uid"]
    cluster.kubectl("delete", "sa", "default", "-n", "team-a")

    def recreated() -> bool:
        r = cluster.kubectl("get", "sa", "default", "-n", "team-a", "-o", "json", check=False)
        return r.returncode == 0 and json.loads(r.stdout)["metadata"]["uid"] != uid
    cluster.wait("team-a/default re-created", recreated)


def test_kubectl_create_sa_get_sa_and_create_token(cluster: Cluster) -> None:
    assert cluster.kubectl("create", "serviceaccount", "robot").stdout.strip() == \
        "serviceaccount/robot created"
    lines = cluster.kubectl("get", "sa", "robot").stdout.splitlines()
    assert lines[0].split() == ["NAME", "SECRETS", "AGE"]
    assert lines[1].split()[:2] == ["robot", "0"]
    token = cluster.kubectl("create", "token", "robot", "--duration", "20m").stdout.strip()
    who = json.loads(_whoami(cluster, "--token", token).stdout)["status"]["userInfo"]
    assert who["username"] == "system:serviceaccount:default:robot"
    assert set(who["groups"]) == {"system:serviceaccounts", "system:serviceaccounts:default",
                                  "system:authenticated"}
    short = cluster.kubectl("create", "token", "robot", "--duration", "5m", check=False)
    assert short.returncode != 0
    assert "may not specify a duration less than 10 minutes" in short.stderr
    assert _whoami(cluster, "--token", "not-a-token", check=False).returncode != 0


def test_pod_mounts_its_own_bound_token_never_the_admins(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=client_pod("reader"))
    pod = _running(cluster, "reader")
    token = cluster.exec("reader", "cat", f"{SA_DIR}/token").stdout.strip()
    admin = (cluster.state_dir / "token").read_text().strip()
    assert token and token != admin
    assert token not in (cluster.state_dir / "tokens.csv").read_text()   # no component's
    assert cluster.exec("reader", "cat", f"{SA_DIR}/namespace").stdout == "default"
    kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())
    ca = base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"])
    assert cluster.exec("reader", "cat", f"{SA_DIR}/ca.crt").stdout.encode() == ca
    mounted = cluster.exec("reader", "grep", "-rl", admin, "/var/run/secrets", check=False)
    assert mounted.returncode == 1, f"the admin token is in the pod: {mounted.stdout}"
    who = json.loads(_whoami(cluster, "--token", token).stdout)["status"]["userInfo"]
    assert who["username"] == "system:serviceaccount:default:default"
    assert who["extra"]["authentication.kubernetes.io/pod-name"] == ["reader"]
    assert who["extra"]["authentication.kubernetes.io/pod-uid"] == [pod["metadata"]["uid"]]
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
              "spec": {"token": token}}
    out = json.loads(cluster.kubectl("create", "-f", "-", "-o", "json",
                                     input=json.dumps(review)).stdout)
    assert out["status"]["authenticated"] is True
    # "Accessing the Kubernetes API from a Pod": the mounted CA verifies kubernetes.default.svc
    api = (f"curl -sS --cacert {SA_DIR}/ca.crt -H \"Authorization: Bearer $(cat {SA_DIR}/token)\" "
           "https://kubernetes.default.svc")
    versions = json.loads(cluster.exec("reader", "sh", "-c", f"{api}/api").stdout)
    assert versions["kind"] == "APIVersions" and versions["versions"] == ["v1"]
    denied = json.loads(cluster.exec("reader", "sh", "-c",
                                     f"{api}/api/v1/namespaces/kube-system/pods").stdout)
    assert denied["code"] == 403 and denied["message"] == (
        'pods is forbidden: User "system:serviceaccount:default:default" cannot list resource '
        '"pods" in API group "" in the namespace "kube-system"')
    bound = cluster.kubectl("create", "token", "default", "--bound-object-kind", "Pod",
                            "--bound-object-name", "reader", "--duration", "15m").stdout.strip()
    who = json.loads(_whoami(cluster, "--token", bound).stdout)["status"]["userInfo"]
    assert who["extra"]["authentication.kubernetes.io/pod-name"] == ["reader"]
    cluster.kubectl("delete", "pod", "reader", "--grace-period=1")
    for gone in (token, bound):
        after = _whoami(cluster, "--token", gone, check=False)
        assert after.returncode != 0 and "Unauthorized" in after.stderr
    out = json.loads(cluster.kubectl("create", "-f", "-", "-o", "json",
                                     input=json.dumps(review)).stdout)
    assert not out["status"].get("authenticated") and out["status"]["error"]


def test_automount_false_and_missing_service_account(cluster: Cluster) -> None:
    quiet = client_pod("quiet").replace("spec:\n", "spec:\n  automountServiceAccountToken: false\n")
    cluster.kubectl("apply", "-f", "-", input=quiet)
    assert not _running(cluster, "quiet")["spec"].get("volumes")
    # (the directory may exist: containers share the host's root, where another pod's mount
    # point was made; nothing is mounted on it here)
    assert cluster.exec("quiet", "cat", f"{SA_DIR}/token", check=False).returncode != 0
    ghost = client_pod("ghost").replace("spec:\n", "spec:\n  serviceAccountName: ghost\n")
    r = cluster.kubectl("apply", "-f", "-", input=ghost, check=False)
    assert r.returncode != 0
    assert ('pods "ghost" is forbidden: error looking up service account default/ghost: '
            'serviceaccount "ghost" not found') in r.stderr
    cluster.kubectl("delete", "pod", "quiet", "--grace-period=1")


def test_agents_and_dns_run_with_their_own_identities(cluster: Cluster) -> None:
    node_kubeconfig = cluster.state_dir / "kubeconfig-node-1"
    assert (node_kubeconfig.stat().st_mode & 0o777) == 0o600
    who = json.loads(cluster.kubectl("--kubeconfig", str(node_kubeconfig), "auth", "whoami",
                                     "-o", "json").stdout)["status"]["userInfo"]
    assert who["username"] == "system:node:node-1"
    assert set(who["groups"]) == {"system:nodes", "system:authenticated"}
    for name in ("tokens.csv", "sa.key"):
        assert ((cluster.state_dir / name).stat().st_mode & 0o777) == 0o600
    [dns] = cluster.get("pods", "-n", "kube-system", "-l", "k8s-app=kube-dns")["items"]
    assert dns["spec"]["serviceAccountName"] == "coredns"
    # the DNS server, authenticated only by its projected token, answers for Services
    cluster.kubectl("apply", "-f", "-", input=client_pod("resolver"))
    _running(cluster, "resolver")
    out = cluster.exec("resolver", "nslookup", "kubernetes.default.svc.cluster.local").stdout
    assert "10.96.0.1" in out
