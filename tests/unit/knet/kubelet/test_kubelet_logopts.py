"""The pod log options as kube-apiserver validates them and the kubelet reads them."""

from __future__ import annotations

import pytest

from knet.kubelet.logopts import InvalidLogOptions, parse

NOW = 1_800_000_000 * 10**9


def test_the_options_kubectl_sends() -> None:
    o = parse({"follow": "true", "tailLines": "5", "sinceSeconds": "10", "limitBytes": "100",
               "timestamps": "true", "container": "c"}, pod="p", now_ns=NOW)
    assert (o.follow, o.tail_lines, o.limit_bytes, o.timestamps, o.previous) == \
        (True, 5, 100, True, False)
    assert o.since_ns == NOW - 10 * 10**9
    o = parse({"sinceTime": "2027-01-15T08:00:00Z"}, pod="p", now_ns=NOW)
    assert o.since_ns == NOW                    # 2027-01-15T08:00:00Z is 1.8e9 s


@pytest.mark.parametrize(("query", "message"), [
    ({"tailLines": "-1"}, 'PodLogOptions "p" is invalid: tailLines: Invalid value: -1: must '
                          "be greater than or equal to 0"),
    ({"limitBytes": "0"}, 'PodLogOptions "p" is invalid: limitBytes: Invalid value: 0: must '
                          "be greater than 0"),
    ({"sinceSeconds": "0"}, 'PodLogOptions "p" is invalid: sinceSeconds: Invalid value: 0: '
                            "must be greater than 0"),
    ({"sinceSeconds": "5", "sinceTime": "2027-01-15T08:00:00Z"},
     'PodLogOptions "p" is invalid: Forbidden: at most one of `sinceTime` or `sinceSeconds` '
     "may be specified"),
])
def test_kube_apiserver_refusals(query: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidLogOptions) as err:
        parse(query, pod="p", now_ns=NOW)
    assert str(err.value) == message
