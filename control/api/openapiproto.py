"""The protobuf form of `/openapi/v2`: a Swagger 2.0 JSON document as gnostic's
`openapi.v2.Document` (google/gnostic openapiv2/OpenAPIv2.proto), the bytes kube-apiserver
sends for `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf` (its
kube-openapi handler runs gnostic's ParseDocument on the JSON, then proto.Marshal).

kubectl asks for this form, never the JSON one, when it validates on the client side (a
`kind: List`, `--validate` against servers without field validation) and reads the models
with kube-openapi's util/proto. The encoder is table-driven: each message maps JSON keys to
(field number, type) copied from the .proto; `x-*` keys become NamedAny whose Any.yaml is
the value as JSON text (JSON is YAML). Proto3 zero values are left out, except in oneofs
(`additionalProperties: false` must reach the client). Schemas are first made v2 the way
kube-apiserver makes them (`_v2_schema`): `allOf: [{$ref}]` (the v3 idiom) becomes the plain
`$ref` that util/proto follows, and CRD schemas get apiextensions' ToStructuralOpenAPIV2
rules; keys the v2 message lacks (v3's `nullable`, `oneOf`) are dropped.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

__all__ = ["ACCEPTED", "CONTENT_TYPE", "encode_document"]

# kubectl asks with `@v1.0`; kube-openapi's handler (pkg/handler) accepts both spellings and
# answers with the dotted one, since `@` is no MIME token character and Go's
# mime.ParseMediaType (client-go's response decoding) refuses it.
CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
ACCEPTED = (CONTENT_TYPE, "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")

# Scalar codes: s string, b bool, d double, i int64, any Any, [x] repeated x. Anything else
# names a message: in _MESSAGES (fields), _MAPS (a JSON object as repeated Named*) or one of
# the oneof wrappers handled in _special. "x-" gives the field of the message's
# `repeated NamedAny vendor_extension`.
Spec = dict[str, tuple[int, str]]
_COMMON_PARAM = ("required", "in", "description", "name")
_RANGES = ("maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength",
           "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "enum",
           "multipleOf")
_RANGE_TYPES = ("d", "b", "d", "b", "i", "i", "s", "i", "i", "b", "[any]", "d")


def _numbered(names: tuple[str, ...], types: tuple[str, ...], first: int = 1) -> Spec:
    return {n: (first + k, t) for k, (n, t) in enumerate(zip(names, types, strict=True))}


def _simple_param(*, allow_empty: bool) -> Spec:
    """Header/Path (allow_empty False) and Query/FormData (True) parameter sub-schemas."""
    head = _COMMON_PARAM + (("allowEmptyValue",) if allow_empty else ())
    names = head + ("type", "format", "items", "collectionFormat", "default") + _RANGES
    types = ("b", "s", "s", "s") + (("b",) if allow_empty else ()) + (
        "s", "s", "PrimitivesItems", "s", "any") + _RANGE_TYPES
    spec = _numbered(names, types)
    return {**spec, "x-": (len(spec) + 1, "")}


_ITEMS = _numbered(("type", "format", "items", "collectionFormat", "default") + _RANGES,
                   ("s", "s", "PrimitivesItems", "s", "any") + _RANGE_TYPES)
_MESSAGES: dict[str, Spec] = {
    "Document": {"swagger": (1, "s"), "info": (2, "Info"), "host": (3, "s"),
                 "basePath": (4, "s"), "schemes": (5, "[s]"), "consumes": (6, "[s]"),
                 "produces": (7, "[s]"), "paths": (8, "Paths"),
                 "definitions": (9, "Definitions"), "parameters": (10, "ParameterDefinitions"),
                 "responses": (11, "ResponseDefinitions"), "tags": (14, "[Tag]"),
                 "externalDocs": (15, "ExternalDocs"), "x-": (16, "")},
    "Info": {"title": (1, "s"), "version": (2, "s"), "description": (3, "s"),
             "termsOfService": (4, "s"), "contact": (5, "Contact"), "license": (6, "License"),
             "x-": (7, "")},
    "Contact": {"name": (1, "s"), "url": (2, "s"), "email": (3, "s"), "x-": (4, "")},
    "License": {"name": (1, "s"), "url": (2, "s"), "x-": (3, "")},
    "ExternalDocs": {"description": (1, "s"), "url": (2, "s"), "x-": (3, "")},
    "Tag": {"name": (1, "s"), "description": (2, "s"), "externalDocs": (3, "ExternalDocs"),
            "x-": (4, "")},
    "Xml": {"name": (1, "s"), "namespace": (2, "s"), "prefix": (3, "s"),
            "attribute": (4, "b"), "wrapped": (5, "b"), "x-": (6, "")},
    "JsonReference": {"$ref": (1, "s"), "description": (2, "s")},
    "PathItem": {"$ref": (1, "s"), "get": (2, "Operation"), "put": (3, "Operation"),
                 "post": (4, "Operation"), "delete": (5, "Operation"),
                 "options": (6, "Operation"), "head": (7, "Operation"),
                 "patch": (8, "Operation"), "parameters": (9, "[ParametersItem]"),
                 "x-": (10, "")},
    "Operation": {"tags": (1, "[s]"), "summary": (2, "s"), "description": (3, "s"),
                  "externalDocs": (4, "ExternalDocs"), "operationId": (5, "s"),
                  "produces": (6, "[s]"), "consumes": (7, "[s]"),
                  "parameters": (8, "[ParametersItem]"), "responses": (9, "Responses"),
                  "schemes": (10, "[s]"), "deprecated": (11, "b"), "x-": (13, "")},
    "BodyParameter": {"description": (1, "s"), "name": (2, "s"), "in": (3, "s"),
                      "required": (4, "b"), "schema": (5, "Schema"), "x-": (6, "")},
    "HeaderParameterSubSchema": _simple_param(allow_empty=False),
    "FormDataParameterSubSchema": _simple_param(allow_empty=True),
    "QueryParameterSubSchema": _simple_param(allow_empty=True),
    "PathParameterSubSchema": _simple_param(allow_empty=False),
    "PrimitivesItems": {**_ITEMS, "x-": (18, "")},
    "Header": {**_ITEMS, "description": (18, "s"), "x-": (19, "")},
    "Response": {"description": (1, "s"), "schema": (2, "SchemaItem"),
                 "headers": (3, "Headers"), "examples": (4, "Examples"), "x-": (5, "")},
    "FileSchema": {"format": (1, "s"), "title": (2, "s"), "description": (3, "s"),
                   "default": (4, "any"), "required": (5, "[s]"), "type": (6, "s"),
                   "readOnly": (7, "b"), "externalDocs": (8, "ExternalDocs"),
                   "example": (9, "any"), "x-": (10, "")},
    "Schema": {"$ref": (1, "s"), "format": (2, "s"), "title": (3, "s"),
               "description": (4, "s"), "default": (5, "any"), "multipleOf": (6, "d"),
               "maximum": (7, "d"), "exclusiveMaximum": (8, "b"), "minimum": (9, "d"),
               "exclusiveMinimum": (10, "b"), "maxLength": (11, "i"), "minLength": (12, "i"),
               "pattern": (13, "s"), "maxItems": (14, "i"), "minItems": (15, "i"),
               "uniqueItems": (16, "b"), "maxProperties": (17, "i"),
               "minProperties": (18, "i"), "required": (19, "[s]"), "enum": (20, "[any]"),
               "additionalProperties": (21, "AdditionalPropertiesItem"),
               "type": (22, "TypeItem"), "items": (23, "ItemsItem"),
               "allOf": (24, "[Schema]"), "properties": (25, "Properties"),
               "discriminator": (26, "s"), "readOnly": (27, "b"), "xml": (28, "Xml"),
               "externalDocs": (29, "ExternalDocs"), "example": (30, "any"),
               "x-": (31, "")},
}
# JSON object -> message of `repeated Named<V>` at entry field; vendor extension field or 0.
_MAPS: dict[str, tuple[int, str, int]] = {
    "Definitions": (1, "Schema", 0), "Properties": (1, "Schema", 0),
    "ParameterDefinitions": (1, "Parameter", 0), "ResponseDefinitions": (1, "Response", 0),
    "Headers": (1, "Header", 0), "Examples": (1, "any", 0),
    "Paths": (2, "PathItem", 1), "Responses": (1, "ResponseValue", 2),
}
# oneof wrapper -> (which member the JSON value is, that member, the other one)
_ONEOF: dict[str, tuple[Callable[[Any], bool], tuple[int, str], tuple[int, str]]] = {
    "AdditionalPropertiesItem": (lambda v: isinstance(v, bool), (2, "b"), (1, "Schema")),
    "ParametersItem": (lambda v: "$ref" in v, (2, "JsonReference"), (1, "Parameter")),
    "ResponseValue": (lambda v: "$ref" in v, (2, "JsonReference"), (1, "Response")),
    "SchemaItem": (lambda v: v.get("type") == "file", (2, "FileSchema"), (1, "Schema")),
}
_NON_BODY = {"header": (1, "HeaderParameterSubSchema"),
             "formData": (2, "FormDataParameterSubSchema"),
             "query": (3, "QueryParameterSubSchema"), "path": (4, "PathParameterSubSchema")}


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1                  # negative int64: ten bytes, two's complement
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _tag(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _bytes(field: int, data: bytes) -> bytes:
    return _tag(field, 2) + _varint(len(data)) + data


def _any(value: Any) -> bytes:
    """gnostic's Any: the value as YAML text in field 2 (kubectl yaml-unmarshals it)."""
    return _bytes(2, json.dumps(value, separators=(",", ":")).encode())


def _named(field: int, name: str, value: bytes) -> bytes:
    return _bytes(field, _bytes(1, name.encode()) + _bytes(2, value))


def _field(field: int, kind: str, value: Any, *, keep_zero: bool = False) -> bytes:
    if kind.startswith("["):
        items = value if isinstance(value, list) else [value]
        return b"".join(_field(field, kind[1:-1], v, keep_zero=True) for v in items)
    if kind == "s":
        return _bytes(field, str(value).encode()) if value or keep_zero else b""
    if kind == "b":
        return _tag(field, 0) + _varint(1 if value else 0) if value or keep_zero else b""
    if kind == "i":
        return _tag(field, 0) + _varint(int(value)) if value or keep_zero else b""
    if kind == "d":
        return _tag(field, 1) + struct.pack("<d", float(value)) if value or keep_zero else b""
    if kind == "any":
        return _bytes(field, _any(value))
    return _bytes(field, _message(kind, value))


def _message(name: str, value: Any) -> bytes:
    if name in _MAPS:
        entry, kind, ext = _MAPS[name]
        return b"".join(
            _named(ext, k, _any(v)) if ext and k.startswith("x-")
            else _named(entry, k, _any(v) if kind == "any" else _message(kind, v))
            for k, v in value.items())
    special = _special(name, value)
    if special is not None:
        return special
    if name == "Schema":
        value = _v2_schema(value)
    spec = _MESSAGES[name]
    out = [b""] * (len(spec) + 1)
    ext = spec.get("x-", (0, ""))[0]
    order = {field: k for k, (field, _) in enumerate(sorted(spec.values()))}
    extensions = []
    for key, item in value.items():
        if key.startswith("x-") and ext:
            extensions.append(_named(ext, key, _any(item)))
        elif key in spec:
            field, kind = spec[key]
            out[order[field]] += _field(field, kind, item)
    if extensions:
        out[order[ext]] = b"".join(extensions)
    return b"".join(out)


def _special(name: str, value: Any) -> bytes | None:
    """The oneof wrappers and the two `repeated` wrappers whose JSON is a value or a list."""
    if name == "TypeItem":
        return _field(1, "[s]", value)
    if name == "ItemsItem":
        return _field(1, "[Schema]", value)
    if name == "Parameter":         # body_parameter = 1, or non_body_parameter = 2 by `in`
        if value.get("in") == "body":
            return _field(1, "BodyParameter", value)
        field, kind = _NON_BODY.get(value.get("in", ""), _NON_BODY["query"])
        return _bytes(2, _field(field, kind, value))
    if name in _ONEOF:
        test, (field, kind), (other, other_kind) = _ONEOF[name]
        if not test(value):
            field, kind = other, other_kind
        return _field(field, kind, value, keep_zero=True)      # a oneof always has presence
    return None


def _v2_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A v3-style schema as kube-apiserver's v2 document has it: `allOf: [{$ref: X}]` alone
    (the v3 idiom for a described reference) is `$ref: X`; for the CRD schemas, the rules of
    apiextensions-apiserver's ToStructuralOpenAPIV2, so kubectl checks no deeper than the
    server would (junctors dropped; `nullable` loses its type, and with
    `x-kubernetes-preserve-unknown-fields` its properties and items)."""
    out = {k: v for k, v in schema.items() if k not in ("allOf", "nullable")}
    all_of = schema.get("allOf")
    if ("$ref" not in schema and isinstance(all_of, list) and len(all_of) == 1
            and isinstance(all_of[0], dict) and set(all_of[0]) == {"$ref"}):
        out["$ref"] = all_of[0]["$ref"]
    if schema.get("nullable") is True:
        for key in ("type", "items", "properties"):
            out.pop(key, None)
    if schema.get("x-kubernetes-preserve-unknown-fields") is True:
        out.pop("items", None)
        out.pop("properties", None)
    if out.get("type") == "array" and "items" not in out:
        del out["type"]
    props = schema.get("properties")
    if isinstance(props, dict) and isinstance(out.get("required"), list):
        out["required"] = [r for r in out["required"]
                           if not (isinstance(props.get(r), dict) and props[r].get("nullable"))]
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and extra.get("nullable") is True:
        out.pop("required", None)
    return out


def encode_document(doc: dict[str, Any]) -> bytes:
    """A Swagger 2.0 document (parsed JSON) as an encoded `openapi.v2.Document`."""
    return _message("Document", doc)
