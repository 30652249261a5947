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
    body = b"k8s\x00" + _len(1, _len(1, b"apps/v1") + _len(2, b"Deployment"))
    with pytest.raises(UnsupportedMedia, match="kubectl apply -f"):
        decode_object(body)
    with pytest.raises(BadRequest, match="prefix"):
        decode_object(b"{}")
    with pytest.raises(BadRequest, match="truncated"):
        decode_object(b"k8s\x00\x0a\xff")
