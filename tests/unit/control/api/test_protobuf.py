"""Decoding the protobuf bodies kubectl's typed generators send (captured from kubectl 1.32
with -v=9), and refusing other kinds with a 415 that says what to do instead."""

from __future__ import annotations

import pytest

from control.api.protobuf import decode_object
from control.errors import BadRequest, UnsupportedMedia

# kubectl create secret generic s3 --from-literal=a=b
SECRET = bytes.fromhex(
    "6b387300 0a0c0a02 76311206 53656372 6574121e 0a120a02 73331200 1a00 2200"
    "2a003200 38004200 12060a01 61120162 1a00 1a00 2200".replace(" ", ""))


def _len(field: int, payload: bytes) -> bytes:
    return bytes([field << 3 | 2, len(payload)]) + payload


def test_secret_from_kubectl() -> None:
    obj = decode_object(SECRET)
    assert obj == {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3"},
                   "data": {"a": "Yg=="}}


def test_configmap_with_labels() -> None:
    meta = _len(1, b"cfg") + _len(11, _len(1, b"app") + _len(2, b"web"))
    raw = _len(1, meta) + _len(2, _len(1, b"k") + _len(2, b"v"))
    body = b"k8s\x00" + _len(1, _len(1, b"v1") + _len(2, b"ConfigMap")) + _len(2, raw)
    assert decode_object(body) == {"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": "cfg", "labels": {"app": "web"}},
                                   "data": {"k": "v"}}


def test_other_kinds_and_garbage() -> None:
    body = b"k8s\x00" + _len(1, _len(1, b"apps/v1") + _len(2, b"DaemonSet"))
    with pytest.raises(UnsupportedMedia, match="kubectl apply -f"):
        decode_object(body)
    with pytest.raises(BadRequest, match="prefix"):
        decode_object(b"{}")
    with pytest.raises(BadRequest, match="truncated"):
        decode_object(b"k8s\x00\x0a\xff")


# kubectl create deployment web --image=nginx --port=80 --replicas=0
DEPLOYMENT = bytes.fromhex(
    "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412b8010a1f0a0377656212001a002200"
    "2a003200380042005a0a0a0361707012037765621286010800120c0a0a0a036170701203776562"
    "1a6c0a1c0a0012001a0022002a003200380042005a0a0a036170701203776562124c122e0a056e67696e"
    "7812056e67696e782a00320a0a001000185022002a0042006a007200800100880100900100a201001a00"
    "320042004a0052005800600068008201008a01009a0100c2010022020a00280038001a0c080010001800"
    "2000280038001a002200")
# kubectl create service nodeport s2 --tcp=80:http --node-port=30080
SERVICE = bytes.fromhex(
    "6b3873000a0d0a027631120753657276696365126a0a1d0a02733212001a0022002a0032003800420"
    "05a090a036170701202733212450a200a0738302d6874747012035443501850220a080110001a046874"
    "74702880eb0112090a03617070120273321a0022084e6f6465506f72743a00420052005a0060006800"
    "1a020a001a002200")


def test_deployment_from_kubectl_keeps_zero_replicas() -> None:
    obj = decode_object(DEPLOYMENT)
    assert obj["kind"] == "Deployment" and obj["apiVersion"] == "apps/v1"
    spec = obj["spec"]
    assert spec["replicas"] == 0                              # a pointer: zero is kept
    assert spec["selector"] == {"matchLabels": {"app": "web"}}
    assert spec["template"]["metadata"]["labels"] == {"app": "web"}
    assert spec["template"]["spec"]["containers"] == [
        {"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}], "resources": {}}]


def test_service_from_kubectl_with_named_target_port() -> None:
    obj = decode_object(SERVICE)
    assert obj["spec"] == {"ports": [{"name": "80-http", "protocol": "TCP", "port": 80,
                                      "targetPort": "http", "nodePort": 30080}],
                           "selector": {"app": "s2"}, "type": "NodePort"}


def _varint_field(field: int, value: int) -> bytes:
    out, v = bytearray([field << 3]), value
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def test_service_account_and_token_request() -> None:
    """The shapes `kubectl create serviceaccount` and `kubectl create token` send."""
    sa = _len(1, _len(1, b"robot")) + _varint_field(4, 0)          # automount: false (pointer)
    body = b"k8s\x00" + _len(1, _len(1, b"v1") + _len(2, b"ServiceAccount")) + _len(2, sa)
    assert decode_object(body) == {"apiVersion": "v1", "kind": "ServiceAccount",
                                   "metadata": {"name": "robot"},
                                   "automountServiceAccountToken": False}
    ref = _len(1, b"Pod") + _len(2, b"v1") + _len(3, b"web")
    spec = _len(1, b"vault") + _len(3, ref) + _varint_field(4, 1200)
    tr = _len(1, b"") + _len(2, spec)
    body = b"k8s\x00" + _len(1, _len(1, b"authentication.k8s.io/v1")
                             + _len(2, b"TokenRequest")) + _len(2, tr)
    assert decode_object(body) == {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "metadata": {},
        "spec": {"audiences": ["vault"], "expirationSeconds": 1200,
                 "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web"}}}


def test_job_from_cronjob_keeps_its_owner() -> None:
    """`kubectl create job now --from=cronjob/hello` names the CronJob as controller."""
    ref = (_len(1, b"CronJob") + _len(3, b"hello") + _len(4, b"u-1") + _len(5, b"batch/v1")
           + bytes([6 << 3, 1, 7 << 3, 1]))
    meta = (_len(1, b"now") + _len(12, _len(1, b"cronjob.kubernetes.io/instantiate")
                                   + _len(2, b"manual")) + _len(13, ref))
    body = b"k8s\x00" + _len(1, _len(1, b"batch/v1") + _len(2, b"Job")) + _len(2, _len(1, meta))
    assert decode_object(body)["metadata"] == {
        "name": "now", "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
        "ownerReferences": [{"kind": "CronJob", "name": "hello", "uid": "u-1",
                             "apiVersion": "batch/v1", "controller": True,
                             "blockOwnerDeletion": True}]}
