"""Just enough of Kubernetes' protobuf encoding to accept what kubectl's typed generators
send (`kubectl create namespace|configmap|secret`): client-go posts those as
`application/vnd.kubernetes.protobuf` and never falls back to JSON.

The envelope is the magic `k8s\\x00` + a `runtime.Unknown` {typeMeta, raw}; `raw` is the
object. Only Namespace, ConfigMap and Secret (and the ObjectMeta fields a generator sets)
are decoded, into the same wire dicts JSON gives; anything else is a 415 that says to use
`kubectl create -f` / `kubectl apply -f` (JSON) instead.
"""

from __future__ import annotations

import base64
from typing import Any

from control.errors import BadRequest, UnsupportedMedia

__all__ = ["MAGIC", "decode_object"]

MAGIC = b"k8s\x00"
Fields = list[tuple[int, int, Any]]      # (field number, wire type, value)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise BadRequest("protobuf body is truncated")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes) -> Fields:
    out: Fields = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = buf[i:i + size], i + size
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise BadRequest(f"protobuf body uses unsupported wire type {wire}")
        out.append((num, wire, value))
    return out


def _map(entries: list[bytes], *, binary: bool = False) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in entries:
        key, value = "", b""
        for num, _, v in _fields(entry):
            if num == 1:
                key = v.decode()
            elif num == 2:
                value = v
        out[key] = base64.b64encode(value).decode() if binary else value.decode()
    return out


def _group(fields: Fields) -> dict[int, list[Any]]:
    grouped: dict[int, list[Any]] = {}
    for num, _, value in fields:
        grouped.setdefault(num, []).append(value)
    return grouped


def _metadata(buf: bytes) -> dict[str, Any]:
    f = _group(_fields(buf))
    md: dict[str, Any] = {}
    for num, key in ((1, "name"), (2, "generateName"), (3, "namespace")):
        if num in f and f[num][-1]:
            md[key] = f[num][-1].decode()
    if 11 in f:
        md["labels"] = _map(f[11])
    if 12 in f:
        md["annotations"] = _map(f[12])
    if 14 in f:
        md["finalizers"] = [v.decode() for v in f[14]]
    return md


def _object(kind: str, raw: bytes) -> dict[str, Any]:
    f = _group(_fields(raw))
    obj: dict[str, Any] = {"metadata": _metadata(f[1][-1]) if 1 in f else {}}
    if kind == "ConfigMap":
        if 2 in f:
            obj["data"] = _map(f[2])
        if 3 in f:
            obj["binaryData"] = _map(f[3], binary=True)
        if 4 in f:
            obj["immutable"] = bool(f[4][-1])
    elif kind == "Secret":
        if 2 in f:
            obj["data"] = _map(f[2], binary=True)
        if f.get(3, [b""])[-1]:            # Go sends zero values: "" means unset
            obj["type"] = f[3][-1].decode()
        if 4 in f:
            obj["stringData"] = _map(f[4])
        if 5 in f:
            obj["immutable"] = bool(f[5][-1])
    elif kind == "Namespace" and 2 in f:
        spec = _group(_fields(f[2][-1]))
        if 1 in spec:
            obj["spec"] = {"finalizers": [v.decode() for v in spec[1]]}
    return obj


def decode_object(body: bytes) -> dict[str, Any]:
    if not body.startswith(MAGIC):
        raise BadRequest("protobuf body lacks the k8s\\x00 prefix")
    unknown = _group(_fields(body[len(MAGIC):]))
    type_meta = _group(_fields(unknown.get(1, [b""])[-1]))
    api_version = type_meta.get(1, [b""])[-1].decode()
    kind = type_meta.get(2, [b""])[-1].decode()
    if kind not in ("Namespace", "ConfigMap", "Secret"):
        raise UnsupportedMedia(
            f"{kind or 'this object'}: protobuf bodies are only understood for Namespace, "
            "ConfigMap and Secret; send JSON or YAML instead, e.g. "
            "'kubectl create ... --dry-run=client -o yaml | kubectl apply -f -'")
    obj = _object(kind, unknown.get(2, [b""])[-1])
    return {"apiVersion": api_version, "kind": kind, **obj}
