"""RBAC with the real kubectl 1.32 against `knet control` (Node,RBAC, the default): `auth
can-i` (and `--list`), the 403 a service account gets in kube-apiserver's exact words,
`create role/clusterrole/rolebinding/clusterrolebinding` (kubectl sends protobuf), the grant
taking effect, `get` columns, escalation refused, and `auth whoami` under impersonation.
There are no service account tokens yet, so the admin impersonates (`--as`), which is how
kubectl users test RBAC anyway."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from simnodes import start_control

KUBECTL = "/usr/bin/kubectl"
SA = "system:serviceaccount:default:default"


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("rbac")
    with start_control(state, extra_args=("--no-controllers",)) as path:
        yield path


class Kubectl:
    def __init__(self, kubeconfig: Path, cache: Path) -> None:
        self.base = [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache)]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.base + list(args), capture_output=True, text=True,
                              timeout=30, check=False)

    def __call__(self, *args: str) -> str:
        out = self.run(*args)
        assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
        return out.stdout


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Kubectl:
    return Kubectl(kubeconfig, tmp_path / "cache")


def eventually(kubectl: Kubectl, *args: str) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + 1.0           # the policy cache follows within a second
    while True:
        out = kubectl.run(*args)
        if out.returncode == 0 or time.monotonic() > deadline:
            return out
        time.sleep(0.05)


def test_can_i_and_the_upstream_403(kubectl: Kubectl) -> None:
    assert kubectl("auth", "can-i", "create", "pods", "-n", "kube-system") == "yes\n"
    out = kubectl.run("auth", "can-i", "create", "pods", "-n", "kube-system", f"--as={SA}")
    assert (out.returncode, out.stdout) == (1, "no\n")
    out = kubectl.run("run", "p", "--image=knet/whoami", "-n", "kube-system", f"--as={SA}")
    assert out.returncode == 1
    assert out.stderr.strip() == (
        'Error from server (Forbidden): pods is forbidden: User '
        '"system:serviceaccount:default:default" cannot create resource "pods" in API group '
        '"" in the namespace "kube-system"')


def test_can_i_list(kubectl: Kubectl) -> None:
    lines = kubectl("auth", "can-i", "--list", f"--as={SA}").splitlines()
    assert lines[0].split() == ["Resources", "Non-Resource", "URLs", "Resource", "Names",
                                "Verbs"]
    rows = [line.split() for line in lines[1:]]
    assert ["selfsubjectaccessreviews.authorization.k8s.io", "[]", "[]", "[create]"] in rows
    assert ["[/version]", "[]", "[get]"] in rows            # system:public-info-viewer
    assert ["[/apis/*]", "[]", "[get]"] in rows             # system:discovery
    assert not any(r[0].startswith("pods") for r in rows)


def test_role_and_binding_then_allowed(kubectl: Kubectl) -> None:
    kubectl("create", "namespace", "rb-team")
    user = "--as=system:serviceaccount:rb-team:ci"
    assert kubectl.run("get", "pods", "-n", "rb-team", user).returncode == 1
    assert kubectl("create", "role", "pod-reader", "--verb=get,list,watch",
                   "--resource=pods,pods/log", "-n", "rb-team") \
        == "role.rbac.authorization.k8s.io/pod-reader created\n"
    assert kubectl("create", "rolebinding", "ci-reads", "--role=pod-reader",
                   "--serviceaccount=rb-team:ci", "-n", "rb-team") \
        == "rolebinding.rbac.authorization.k8s.io/ci-reads created\n"
    out = eventually(kubectl, "get", "pods", "-n", "rb-team", user)
    assert out.returncode == 0, out.stderr
    assert kubectl("auth", "can-i", "get", "pods", "--subresource=log", "-n", "rb-team",
                   user) == "yes\n"
    assert kubectl.run("auth", "can-i", "delete", "pods", "-n", "rb-team", user).stdout \
        == "no\n"
    role = kubectl("get", "role", "pod-reader", "-n", "rb-team", "-o",
                   "jsonpath={.rules[0].verbs} {.rules[0].resources} {.rules[0].apiGroups}")
    assert role == '["get","list","watch"] ["pods","pods/log"] [""]'
    header, row = kubectl("get", "rolebinding", "ci-reads", "-n", "rb-team", "-o",
                          "wide").splitlines()
    assert header.split() == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    assert row.split()[:2] == ["ci-reads", "Role/pod-reader"]
    assert row.split()[-1] == "rb-team/ci"
    # roleRef is immutable, in kube-apiserver's words
    out = kubectl.run("patch", "rolebinding", "ci-reads", "-n", "rb-team", "--type=merge",
                      "-p", '{"roleRef":{"name":"other"}}')
    assert out.returncode == 1
    assert 'roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", ' \
           'Kind:"Role", Name:"other"}: cannot change roleRef' in out.stderr


def test_cluster_role_and_binding(kubectl: Kubectl) -> None:
    assert kubectl("create", "clusterrole", "node-reader", "--verb=get,list",
                   "--resource=nodes") \
        == "clusterrole.rbac.authorization.k8s.io/node-reader created\n"
    assert kubectl("create", "clusterrolebinding", "devs-nodes", "--clusterrole=node-reader",
                   "--group=devs", "--user=jane") \
        == "clusterrolebinding.rbac.authorization.k8s.io/devs-nodes created\n"
    out = eventually(kubectl, "get", "nodes", "--as=bob", "--as-group=devs")
    assert out.returncode == 0, out.stderr
    assert kubectl.run("get", "nodes", "--as=bob").returncode == 1
    header = kubectl("get", "clusterroles").splitlines()[0]
    assert header.split() == ["NAME", "CREATED", "AT"]
    names = kubectl("get", "clusterroles", "-o", "name").split()
    assert {"clusterrole.rbac.authorization.k8s.io/cluster-admin",
            "clusterrole.rbac.authorization.k8s.io/view",
            "clusterrole.rbac.authorization.k8s.io/node-reader"} <= set(names)


def test_escalation_refused(kubectl: Kubectl) -> None:
    kubectl("create", "namespace", "esc")
    kubectl("create", "rolebinding", "erin-admin", "--clusterrole=admin", "--user=erin",
            "-n", "esc")
    out = eventually(kubectl, "get", "roles", "-n", "esc", "--as=erin")
    assert out.returncode == 0, out.stderr
    out = kubectl.run("create", "role", "nodes", "--verb=get", "--resource=nodes", "-n", "esc",
                      "--as=erin")
    assert out.returncode == 1
    assert ('roles.rbac.authorization.k8s.io "nodes" is forbidden: user "erin" '
            '(groups=["system:authenticated"]) is attempting to grant RBAC permissions not '
            'currently held:') in out.stderr
    assert kubectl("create", "role", "pods", "--verb=get", "--resource=pods", "-n", "esc",
                   "--as=erin") == "role.rbac.authorization.k8s.io/pods created\n"


def test_whoami_impersonated(kubectl: Kubectl) -> None:
    out = kubectl("auth", "whoami", "--as=jane", "--as-group=devs")
    rows = [line.split(None, 1) for line in out.splitlines()]
    assert rows[0] == ["ATTRIBUTE", "VALUE"]
    assert ["Username", "jane"] in rows
    assert ["Groups", "[devs system:authenticated]"] in rows


def test_aggregation_rule_from_kubectl(kubectl: Kubectl) -> None:
    kubectl("create", "clusterrole", "monitoring",
            "--aggregation-rule=example.com/aggregate-to-monitoring=true")
    kubectl("create", "clusterrole", "metrics-reader", "--verb=get", "--resource=pods")
    kubectl("label", "clusterrole", "metrics-reader",
            "example.com/aggregate-to-monitoring=true")
    deadline = time.monotonic() + 1.0
    while True:
        rules = kubectl("get", "clusterrole", "monitoring", "-o", "jsonpath={.rules}")
        if rules or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert rules == '[{"apiGroups":[""],"resources":["pods"],"verbs":["get"]}]'
    # the defaults aggregate too: view holds system:aggregate-to-view's rules
    assert "pods/log" in kubectl("get", "clusterrole", "view", "-o", "jsonpath={.rules}")
