"""Label and field selectors: the string forms kubectl sends and the object forms of specs."""

from __future__ import annotations

import pytest

from control.errors import BadRequest
from control.models.selectors import (
    LabelSelector,
    parse_field_selector,
    parse_label_selector,
    selector_from_labels,
    selector_from_spec,
)

WEB = {"app": "web", "tier": "front", "env": "prod"}


@pytest.mark.parametrize("text,labels,expected", [
    ("app=web", WEB, True),
    ("app==web", WEB, True),
    ("app=db", WEB, False),
    ("app!=db", WEB, True),
    ("app!=web", WEB, False),
    ("missing!=x", WEB, True),
    ("env in (prod,staging)", WEB, True),
    ("env in (staging)", WEB, False),
    ("missing in (a)", WEB, False),
    ("env notin (staging)", WEB, True),
    ("env notin (prod)", WEB, False),
    ("missing notin (prod)", WEB, True),
    ("tier", WEB, True),
    ("missing", WEB, False),
    ("!missing", WEB, True),
    ("!tier", WEB, False),
    ("app=web,tier=front,env in (prod),!x", WEB, True),
    ("app=web,tier=back", WEB, False),
    ("  app = web ,  tier  ", WEB, True),
    ("app=", {"app": ""}, True),
    ("app=", WEB, False),
    ("example.com/role=x", {"example.com/role": "x"}, True),
    ("n>3", {"n": "5"}, True),
    ("n<3", {"n": "5"}, False),
])
def test_string_selector_matches(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(text).matches(labels) is expected


def test_empty_string_selects_everything() -> None:
    sel = parse_label_selector("")
    assert sel.is_empty and sel.matches(None) and sel.matches(WEB)
    assert parse_label_selector("   ").is_empty


def test_matches_none_labels() -> None:
    assert parse_label_selector("!a").matches(None)
    assert not parse_label_selector("a").matches(None)


@pytest.mark.parametrize("text,part", [
    ("app=web,", "trailing"),
    ("app in web", "'('"),
    ("app in (a,b", "')'"),
    ("app=web tier=x", "expected ','"),
    ("=web", "label key"),
    ("!", "key after '!'"),
    ("app=-bad-", "-bad-"),
    ("bad key!/x=1", "bad key"),
    ("a/b/c=1", "a/b/c"),
    ("app foo (x)", "'foo'"),
    ("n>x", "integer"),
])
def test_string_selector_errors_name_the_bad_part(text: str, part: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_label_selector(text)
    assert err.value.code == 400
    assert part in err.value.message
    assert "selector" in err.value.message


def test_str_is_canonical_sorted_form() -> None:
    sel = parse_label_selector("z in (b,a),app==web,!h,g,f notin (z),c!=d")
    assert str(sel) == "app=web,c!=d,f notin (z),g,!h,z in (a,b)"
    assert parse_label_selector(str(sel)) == sel


def test_spec_object_form() -> None:
    sel = selector_from_spec({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "staging"]},
            {"key": "tier", "operator": "NotIn", "values": ["back"]},
            {"key": "tier", "operator": "Exists"},
            {"key": "canary", "operator": "DoesNotExist"},
        ]})
    assert sel.matches(WEB)
    assert not sel.matches({**WEB, "canary": "1"})
    assert not sel.matches({**WEB, "env": "dev"})
    assert str(sel) == "app=web,!canary,env in (prod,staging),tier notin (back),tier"


def test_spec_map_form_and_scale_string() -> None:
    sel = selector_from_spec({"app": "web", "tier": "front"})
    assert sel.matches(WEB) and not sel.matches({"app": "web"})
    assert str(sel) == "app=web,tier=front"
    assert sel.equality_map() == {"app": "web", "tier": "front"}
    assert selector_from_labels({"b": "2", "a": "1"}) == parse_label_selector("a=1,b=2")


def test_empty_spec_matches_everything_nothing_matches_nothing() -> None:
    assert selector_from_spec({}).matches(WEB)
    assert selector_from_spec(None).is_empty
    assert selector_from_spec({"matchLabels": {}}).matches({})
    nothing = LabelSelector.nothing()
    assert not nothing.is_empty and not nothing.matches(WEB) and not nothing.matches({})


@pytest.mark.parametrize("expr,part", [
    ({"key": "a", "operator": "Equals", "values": ["x"]}, "operator"),
    ({"key": "a", "operator": "In"}, "values: Required"),
    ({"key": "a", "operator": "Exists", "values": ["x"]}, "values: Forbidden"),
    ({"operator": "Exists"}, "key: Required"),
])
def test_spec_expression_errors(expr: dict[str, object], part: str) -> None:
    with pytest.raises(BadRequest) as err:
        selector_from_spec({"matchExpressions": [expr]})
    assert f"matchExpressions[0].{part}" in err.value.message


POD = {"metadata": {"name": "web-1", "namespace": "default"},
       "spec": {"nodeName": "node-1", "hostNetwork": False},
       "status": {"phase": "Running"}}
EVENT = {"metadata": {"name": "web-1.17", "namespace": "default"},
         "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default",
                            "uid": "u-1"}, "type": "Normal"}


@pytest.mark.parametrize("obj,text,expected", [
    (POD, "metadata.name=web-1", True),
    (POD, "metadata.name==web-1,metadata.namespace=default", True),
    (POD, "metadata.name=web-2", False),
    (POD, "spec.nodeName=node-1,status.phase!=Succeeded", True),
    (POD, "status.phase!=Running", False),
    (POD, "spec.schedulerName=", True),          # missing field compares as ""
    (POD, "spec.schedulerName!=", False),
    (POD, "spec.hostNetwork=false", True),
    (EVENT, ("involvedObject.name=web-1,involvedObject.namespace=default,"
            "involvedObject.uid=u-1"), True),
    (EVENT, "involvedObject.kind=Service", False),
])
def test_field_selector_matches(obj: dict[str, object], text: str, expected: bool) -> None:
    assert parse_field_selector(text).matches(obj) is expected


def test_field_selector_escapes_and_accessors() -> None:
    sel = parse_field_selector(r"metadata.name=a\,b\=c,spec.nodeName=n")
    assert sel.matches({"metadata": {"name": "a,b=c"}, "spec": {"nodeName": "n"}})
    assert sel.value_for("spec.nodeName") == "n"
    assert sel.value_for("status.phase") is None
    assert str(sel) == r"metadata.name=a\,b\=c,spec.nodeName=n"
    assert parse_field_selector("").is_empty and parse_field_selector("").matches(POD)


@pytest.mark.parametrize("text,part", [
    ("metadata.name", "no operator"),
    ("=x", "no field name"),
    ("metadata.name=a,", "empty term"),
    ("metadata.name=a=b", "unescaped '='"),
    ("metadata.name=a\\x", "escape"),
])
def test_field_selector_errors(text: str, part: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_field_selector(text)
    assert part in err.value.message and text in err.value.message


def test_field_selector_supported_fields_per_resource() -> None:
    parse_field_selector("spec.nodeName=n,status.phase!=Succeeded").check_supported("pods")
    parse_field_selector("involvedObject.uid=x").check_supported("events")
    with pytest.raises(BadRequest) as err:
        parse_field_selector("spec.nodeName=n").check_supported("services")
    assert "field label not supported: spec.nodeName" in err.value.message
