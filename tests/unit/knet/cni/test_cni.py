"""The CNI 1.0 contract as knet speaks it: requests and configs checked with the spec's error
codes, knet's plugin (ADD/DEL/CHECK/VERSION) over the fake dataplane with real result JSON, the
conflists, and the agent-as-runtime (CniDataplane) writing them and logging each call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from knet.cni import plugin
from knet.cni.runtime import CniDataplane
from knet.cni.spec import (
    CniError,
    parse_args,
    parse_config,
    parse_request,
    plugin_stdin,
    reference_conflist,
)
from knet.dataplane.base import NodeSpec
from knet.dataplane.fake import FakeDataplane
from knet.errors import DataplaneError

Obj = dict[str, Any]
NETNS_A = "/run/netns/knet-p-46ecb04a23c7"      # names.pod_netns("node-1", "default/a")


def env(cmd: str, **kw: str) -> dict[str, str]:
    base = {"CNI_COMMAND": cmd, "CNI_CONTAINERID": "c1", "CNI_NETNS": NETNS_A,
            "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni",
            "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=a"}
    return {**base, **kw}


def conf(**kw: Any) -> bytes:
    return json.dumps({"cniVersion": "1.0.0", "name": "knet", "type": "knet",
                       "node": "node-1", "mtu": 1500, **kw}).encode()


@pytest.fixture
async def dp(tmp_path: Path) -> FakeDataplane:
    d = FakeDataplane(tmp_path / "dataplane")
    await d.ensure_host()
    await d.ensure_node(NodeSpec.default(1))
    return d


async def call(dp: FakeDataplane, e: dict[str, str], stdin: bytes) -> tuple[Any, int]:
    out, status = await plugin.invoke(e, stdin, lambda _c: dp)
    return (json.loads(out) if out else None), status


def test_cni_args_and_env_are_checked() -> None:
    assert parse_args("A=1;B=x=y") == {"A": "1", "B": "x=y"}
    with pytest.raises(CniError) as err:
        parse_args("oops")
    assert err.value.code == 4
    with pytest.raises(CniError, match="missing environment variable.*CNI_NETNS") as err:
        parse_request({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0"})
    assert err.value.code == 4
    assert parse_request({"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c",
                          "CNI_IFNAME": "eth0"}).netns == ""          # DEL may omit the netns
    with pytest.raises(CniError, match="CNI_COMMAND 'GET'"):
        parse_request({"CNI_COMMAND": "GET"})


@pytest.mark.parametrize(("stdin", "code", "msg"), [
    (b"{broken", 6, "not JSON"),
    (b"[]", 6, "must be a JSON object"),
    (b'{"cniVersion":"1.0.0","type":"knet"}', 7, "'name' is missing"),
    (b'{"cniVersion":"0.2.0","name":"n","type":"knet"}', 1, "cniVersion '0.2.0'"),
])
def test_broken_configs_are_the_specs_errors(stdin: bytes, code: int, msg: str) -> None:
    with pytest.raises(CniError, match=msg) as err:
        parse_config(stdin)
    assert err.value.code == code


async def test_add_with_a_broken_config_prints_cni_error_json(dp: FakeDataplane) -> None:
    out, status = await call(dp, env("ADD"), b'{"cniVersion": "1.0.0", "name": ')
    assert status == 1
    assert set(out) == {"cniVersion", "code", "msg", "details"}
    assert out["code"] == 6 and "not JSON" in out["msg"]
    out, status = await call(dp, env("ADD"), conf(node=None))
    assert status == 1 and out["code"] == 7 and "'node'" in out["msg"]
    assert await dp.list_pods("node-1") == []


async def test_add_check_del_version(dp: FakeDataplane) -> None:
    out, status = await call(dp, env("ADD"), conf(dns={"nameservers": ["10.96.0.10"]}))
    assert status == 0
    assert out["cniVersion"] == "1.0.0"
    assert out["interfaces"][1] == {"name": "eth0", "mac": "0a:58:0a:f4:01:02", "mtu": 1500,
                                    "sandbox": NETNS_A}
    assert out["ips"] == [{"address": "10.244.1.2/24", "gateway": "10.244.1.1", "interface": 1}]
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}]
    assert out["dns"] == {"nameservers": ["10.96.0.10"]}
    pods = await dp.list_pods("node-1")
    assert [(p.key, p.ip) for p in pods] == [("default/a", "10.244.1.2")]
    assert await call(dp, env("CHECK"), conf(prevResult=out)) == (None, 0)
    wrong = {**out, "ips": [{"address": "10.244.1.9/24"}]}
    bad, status = await call(dp, env("CHECK"), conf(prevResult=wrong))
    assert status == 1 and "eth0 has 10.244.1.2, prevResult says 10.244.1.9" in bad["msg"]
    assert await call(dp, env("DEL", CNI_NETNS=""), conf()) == (None, 0)
    assert await call(dp, env("DEL", CNI_NETNS=""), conf()) == (None, 0)   # gone: still fine
    assert await dp.list_pods("node-1") == []
    gone, status = await call(dp, env("CHECK"), conf(prevResult=out))
    assert status == 1 and gone["code"] == 3
    version, status = await call(dp, {"CNI_COMMAND": "VERSION"}, b"")
    assert status == 0 and version == {"cniVersion": "1.0.0", "supportedVersions": ["1.0.0"]}


async def test_add_in_another_netns_or_without_the_pod_is_refused(dp: FakeDataplane) -> None:
    out, _ = await call(dp, env("ADD", CNI_NETNS="/run/netns/other"), conf())
    assert out["code"] == 4 and NETNS_A in out["msg"]
    out, _ = await call(dp, env("ADD", CNI_ARGS=""), conf())
    assert out["code"] == 4 and "K8S_POD_NAME" in out["msg"]


def test_a_list_hands_each_plugin_name_version_and_prev_result() -> None:
    cl = reference_conflist(pod_cidr="10.244.2.0/24", gateway="10.244.2.1", bridge="cni0",
                            mtu=1450, ipam_dir="/s/ipam", dns_ip="10.96.0.10")
    assert [p["type"] for p in cl["plugins"]] == ["bridge", "portmap"]
    assert cl["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.2.0/24",
                                                    "gateway": "10.244.2.1"}]]
    assert cl["plugins"][0]["mtu"] == 1450 and cl["plugins"][0]["ipMasq"] is False
    second = plugin_stdin(cl, cl["plugins"][1], {"ips": []})
    assert second["name"] == "knet" and second["cniVersion"] == "1.0.0"
    assert second["prevResult"] == {"ips": []} and second["type"] == "portmap"


async def test_the_agent_wires_pods_through_the_conflist_and_logs_each_call(
        dp: FakeDataplane, tmp_path: Path) -> None:
    cdp = CniDataplane(dp, node=NodeSpec.default(1), mode="builtin", state_dir=tmp_path)
    await cdp.ensure_node(NodeSpec.default(1))
    d = tmp_path / "cni" / "node-1"
    assert json.loads((d / "10-knet.conflist").read_text())["plugins"][0]["type"] == "knet"
    pod = await cdp.ensure_pod("node-1", "default/a")
    assert (pod.ip, pod.netns, pod.host_ifname) == ("10.244.1.2", "knet-p-46ecb04a23c7",
                                                   "kn46ecb04a23")
    await cdp.delete_pod("node-1", "default/a")
    assert await dp.list_pods("node-1") == []
    calls = [json.loads(line) for line in (d / "cni.log").read_text().splitlines()]
    assert [(c["plugin"], c["env"]["CNI_COMMAND"], c["exit"]) for c in calls] == [
        ("knet", "ADD", 0), ("knet", "DEL", 0)]
    assert calls[0]["stdin"]["node"] == "node-1"
    assert calls[0]["stdout"]["ips"][0]["address"] == "10.244.1.2/24"
    assert "K8S_POD_NAME=a" in calls[0]["env"]["CNI_ARGS"]


async def test_a_missing_reference_plugin_is_a_clear_error(dp: FakeDataplane,
                                                            tmp_path: Path) -> None:
    cdp = CniDataplane(dp, node=NodeSpec.default(1), mode="builtin", state_dir=tmp_path,
                       cni_path=str(tmp_path / "none"))
    with pytest.raises(CniError, match="CNI plugin 'bridge' not found in CNI_PATH"):
        await cdp._exec("bridge", {}, b"{}")
    with pytest.raises(DataplaneError, match="--cni 'calico'"):
        CniDataplane(dp, node=NodeSpec.default(1), mode="calico", state_dir=tmp_path)
