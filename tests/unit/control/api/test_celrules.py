"""control.api.celrules without a server: every rule site of the official CRDs knet ships
compiles, and the semantics kube-apiserver gives rules (typing by schema, escaped names,
transition rules on correlated values only, ratcheting, optionalOldSelf, library functions)."""

from __future__ import annotations

from typing import Any

from control.api.celrules import Compiler, compile_rules
from control.crds import mesh_crds
from control.models.fielderrors import FieldErrors


def _sites(s: Any) -> int:
    if isinstance(s, dict):
        return len(s.get("x-kubernetes-validations") or ()) + sum(_sites(v) for v in s.values())
    return sum(_sites(v) for v in s) if isinstance(s, list) else 0


def test_every_rule_site_of_the_shipped_crds_compiles() -> None:
    compiler = Compiler()
    total = compiled = 0
    for crd in mesh_crds():
        for version in crd["spec"]["versions"]:
            schema = version["schema"]["openAPIV3Schema"]
            total += _sites(schema)
            rules = compiler.rules_of(crd, version)
            if rules is not None:
                assert rules.tree is not None and rules.skipped == 0, rules.where
                compiled += rules.compiled
    # Gateway API v1.6.1 (212) and Istio 1.30.3 (159), counted over every served version
    assert (compiled, total) == (371, 371)
    assert len(compiler.programs) == 72      # distinct rule texts, each parsed once


def check(schema: dict[str, Any], obj: Any, old: Any = None) -> tuple[list[str], list[str]]:
    rules = compile_rules(schema, where="test")
    assert rules is not None
    errs = FieldErrors()
    rules.validate(errs, obj, old)
    return [f"{c.field}: {c.message}" for c in errs.causes], errs.warnings


def obj_schema(rules: list[dict[str, Any]], **props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {"spec": {
        "type": "object", "x-kubernetes-validations": rules, "properties": props}}}


def test_schema_typing_escaping_and_library_functions() -> None:
    schema = obj_schema([
        {"rule": "self.ratio + 1.5 > 2.0", "message": "number is a double"},
        {"rule": "self.__namespace__ == 'a' && self.x__dash__y == 1", "message": "escaped"},
        {"rule": "self.path.split('/').join('-') == '-a-b' && self.path.indexOf('b') == 3 "
                 "&& self.path.upperAscii() == '/A/B' && ['x', 'y'].isSorted()",
         "message": "strings"},
        {"rule": "isIP('10.0.0.1') && !isIP('10.0.0.1:80') && isCIDR('10.0.0.0/8') "
                 "&& isURL('https://a/b') && [1, 5, 3].max() == 5 && [1, 2].sum() == 3",
         "message": "k8s library"}],
        ratio={"type": "number"}, namespace={"type": "string"}, **{"x-y": {"type": "integer"}},
        path={"type": "string"})
    causes, _ = check(schema, {"spec": {"ratio": 1, "namespace": "a", "x-y": 1, "path": "/a/b"}})
    assert causes == []
    causes, _ = check(schema, {"spec": {"ratio": 0, "namespace": "b", "x-y": 1, "path": "/a/b"}})
    assert causes == ['spec: Invalid value: "object": number is a double',
                      'spec: Invalid value: "object": escaped']


def test_root_rules_see_name_and_report_nil() -> None:
    schema = {"type": "object", "x-kubernetes-validations": [
        {"rule": "self.metadata.name.startsWith('my-')", "reason": "FieldValueDuplicate"},
        {"rule": "!has(self.metadata.labels)"}],   # only name and generateName are visible
        "properties": {"metadata": {"type": "object"}}}
    causes, _ = check(schema, {"metadata": {"name": "x", "labels": {"a": "b"}}})
    assert causes == ['<nil>: Duplicate value: "object"']


LIST_MAP = {"type": "object", "properties": {"items": {
    "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
    "items": {"type": "object", "properties": {
        "name": {"type": "string"},
        "size": {"type": "integer", "x-kubernetes-validations": [
            {"rule": "self >= oldSelf", "message": "may only grow"},
            {"rule": "self < 100", "message": "too big"}]}}}}}}


def test_set_and_map_lists_compare_regardless_of_order() -> None:
    schema = {"type": "object", "properties": {"tags": {
        "type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"},
        "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "immutable"}]}}}
    assert check(schema, {"tags": ["b", "a"]}, {"tags": ["a", "b"]})[0] == []
    assert check(schema, {"tags": ["a", "c"]}, {"tags": ["a", "b"]})[0] == [
        'tags: Invalid value: "array": immutable']


def test_transition_rules_correlate_list_map_items_by_key() -> None:
    old = {"items": [{"name": "a", "size": 5}, {"name": "b", "size": 5}]}
    new = {"items": [{"name": "b", "size": 4}, {"name": "c", "size": 1}, {"name": "a", "size": 6}]}
    assert check(LIST_MAP, new, old)[0] == ['items[0].size: Invalid value: "integer": may only grow']
    assert check(LIST_MAP, new)[0] == []       # create: no old value, no transition rule


def test_unchanged_values_are_ratcheted_into_warnings() -> None:
    old = {"items": [{"name": "a", "size": 500}]}
    causes, warnings = check(LIST_MAP, {"items": [{"name": "a", "size": 500}], "x": 1}, old)
    assert causes == [] and warnings == ['items[0].size: Invalid value: "integer": too big']
    causes, _ = check(LIST_MAP, {"items": [{"name": "a", "size": 501}]}, old)
    assert causes == ['items[0].size: Invalid value: "integer": too big']


def test_optional_old_self_runs_on_create() -> None:
    schema = obj_schema([{"rule": "!oldSelf.hasValue() ? self.v == 1 : self.v >= oldSelf.value().v",
                          "optionalOldSelf": True, "message": "starts at 1, then grows"}],
                        v={"type": "integer"})
    assert check(schema, {"spec": {"v": 2}})[0] == [
        'spec: Invalid value: "object": starts at 1, then grows']
    assert check(schema, {"spec": {"v": 3}}, {"spec": {"v": 2}})[0] == []


def test_a_rule_that_does_not_compile_is_skipped_and_counted() -> None:
    rules = compile_rules(obj_schema([{"rule": "self.x.frobnicate()"}, {"rule": "self.x > 1"}],
                                     x={"type": "integer"}), where="test")
    assert rules is not None
    errs = FieldErrors()
    rules.validate(errs, {"spec": {"x": 0}}, None)
    assert (rules.compiled, rules.skipped) == (1, 1)
    assert [c.message for c in errs.causes] == ['Invalid value: "object": failed rule: self.x > 1']


def test_the_flattened_parse_tree_evaluates_as_celpy_s_own(monkeypatch: Any) -> None:
    """celrules skips the parse tree's pass-through levels for speed: on mutated Gateways and
    HTTPRoutes every rule outcome equals that of celpy's unflattened tree."""
    import copy
    import random

    from control.api import celrules
    from control.api.crd import storage_version

    crds = {c["spec"]["names"]["kind"]: c for c in mesh_crds()}
    seeds: list[dict[str, Any]] = [{"kind": "Gateway", "spec": {"gatewayClassName": "knet", "listeners": [
                 {"name": "a", "protocol": "HTTPS", "port": 443, "hostname": "a.example",
                  "tls": {"mode": "Terminate", "certificateRefs": [{"name": "c"}]}},
                 {"name": "b", "protocol": "TCP", "port": 80}]}},
             {"kind": "HTTPRoute", "spec": {"parentRefs": [{"name": "gw"}], "rules": [
                 {"matches": [{"path": {"type": "PathPrefix", "value": "/a"}}],
                  "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {
                      "type": "ReplacePrefixMatch", "replacePrefixMatch": "/b"}}}],
                  "backendRefs": [{"name": "web", "port": 80, "kind": "Service"}]}]}}]
    rng = random.Random(7)

    def compiled() -> dict[str, Any]:
        out = {}
        for kind, crd in crds.items():
            if kind in ("Gateway", "HTTPRoute"):
                rules = Compiler().rules_of(crd, storage_version(crd) or {})
                assert rules is not None and rules.tree is not None      # compiled now
                out[kind] = rules
        return out

    flat = compiled()
    with monkeypatch.context() as m:
        m.setattr(celrules, "_flatten", lambda tree: tree)
        plain = compiled()

    def outcomes(rules: Any, obj: dict[str, Any]) -> list[Any]:
        errs = FieldErrors()
        rules.validate(errs, obj, None)
        return [(c.field, c.message) for c in errs.causes]

    failing = 0
    for _ in range(60):
        obj = copy.deepcopy(rng.choice(seeds))
        items = rng.choice([v for v in obj["spec"].values() if isinstance(v, list)])
        item = items[0]
        key = rng.choice(sorted(item))
        if rng.random() < 0.4:
            del item[key]
        elif rng.random() < 0.5:
            items.append(copy.deepcopy(item))
        elif isinstance(item[key], str):
            item[key] = rng.choice(["", "TCP", "HTTP", "x/../y"])
        got = outcomes(flat[obj["kind"]], obj)
        assert got == outcomes(plain[obj["kind"]], obj), obj
        failing += bool(got)
    assert failing > 10        # the mutations do break rules
