"""The CNI 1.0 contract, pure: requests from the environment, network configs, results,
errors, and the conflists knet writes for each node (no sockets, no netlink here).

A plugin is run with CNI_COMMAND (ADD, DEL, CHECK, VERSION), CNI_CONTAINERID, CNI_NETNS,
CNI_IFNAME, CNI_ARGS and CNI_PATH in its environment and one network configuration as JSON on
stdin; it answers with a result (ADD), nothing (DEL, CHECK) or a version document on stdout, or
an error `{"cniVersion","code","msg","details"}` and a non-zero exit. Codes 1-99 are the spec's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CNI_VERSION", "COMMANDS", "SUPPORTED_VERSIONS", "CniError", "CniRequest",
    "builtin_conflist", "loopback_conf", "parse_args", "parse_config", "parse_request",
    "plugin_stdin", "reference_conflist",
]

CNI_VERSION = "1.0.0"
SUPPORTED_VERSIONS = ["1.0.0"]
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION")
# the spec's well-known error codes
INCOMPATIBLE_VERSION, UNSUPPORTED_FIELD, UNKNOWN_CONTAINER, INVALID_ENV = 1, 2, 3, 4
IO_FAILURE, DECODE_FAILURE, INVALID_CONFIG, TRY_AGAIN = 5, 6, 7, 11
PLUGIN_FAILURE = 100            # knet's own (codes from 100 are the plugin's)

Obj = dict[str, Any]


class CniError(Exception):
    """A CNI error result: printed as JSON on stdout, with exit status 1."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(f"CNI error {code}: {msg}" + (f" ({details})" if details else ""))
        self.code, self.msg, self.details = code, msg, details

    def to_json(self, version: str = CNI_VERSION) -> Obj:
        return {"cniVersion": version, "code": self.code, "msg": self.msg,
                "details": self.details}

    @classmethod
    def from_json(cls, data: Obj) -> CniError:
        return cls(int(data.get("code", PLUGIN_FAILURE)), str(data.get("msg", "")),
                   str(data.get("details", "")))


@dataclass(frozen=True)
class CniRequest:
    """One plugin invocation's environment."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: dict[str, str] = field(default_factory=dict)
    path: list[str] = field(default_factory=list)


def parse_args(raw: str) -> dict[str, str]:
    """CNI_ARGS: `K1=V1;K2=V2` (the kubelet sends K8S_POD_NAMESPACE, K8S_POD_NAME ...)."""
    out: dict[str, str] = {}
    for part in filter(None, (raw or "").split(";")):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise CniError(INVALID_ENV, f"CNI_ARGS: {part!r} is not KEY=VALUE",
                           "CNI_ARGS is a ';'-separated list of KEY=VALUE pairs")
        out[key] = value
    return out


def parse_request(env: dict[str, str]) -> CniRequest:
    """The request in `env`, checked as the spec says (each variable a command needs)."""
    cmd = env.get("CNI_COMMAND", "")
    if cmd not in COMMANDS:
        raise CniError(INVALID_ENV, f"CNI_COMMAND {cmd!r} is not one of {', '.join(COMMANDS)}")
    if cmd == "VERSION":
        return CniRequest(command=cmd)
    need = ["CNI_CONTAINERID", "CNI_IFNAME"] + (["CNI_NETNS"] if cmd != "DEL" else [])
    missing = [k for k in need if not env.get(k)]
    if missing:
        raise CniError(INVALID_ENV, f"{cmd}: missing environment variable(s) "
                       + ", ".join(missing), "see the CNI spec, section 'Parameters'")
    return CniRequest(command=cmd, container_id=env["CNI_CONTAINERID"],
                      netns=env.get("CNI_NETNS", ""), ifname=env["CNI_IFNAME"],
                      args=parse_args(env.get("CNI_ARGS", "")),
                      path=[p for p in env.get("CNI_PATH", "").split(":") if p])


def parse_config(stdin: bytes | str, *, plugin_type: str | None = None) -> Obj:
    """One plugin's network configuration from stdin, with the fields every plugin needs."""
    try:
        conf = json.loads(stdin or b"")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CniError(DECODE_FAILURE, "network configuration on stdin is not JSON",
                       str(exc)) from None
    if not isinstance(conf, dict):
        raise CniError(DECODE_FAILURE, "network configuration on stdin must be a JSON object")
    for key in ("cniVersion", "name", "type"):
        if not isinstance(conf.get(key), str) or not conf[key]:
            raise CniError(INVALID_CONFIG, f"network configuration: field {key!r} is missing "
                           "or not a string")
    if conf["cniVersion"] not in SUPPORTED_VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION, f"cniVersion {conf['cniVersion']!r} is not "
                       f"supported; this plugin speaks {', '.join(SUPPORTED_VERSIONS)}")
    if plugin_type is not None and conf["type"] != plugin_type:
        raise CniError(INVALID_CONFIG, f"network configuration is for plugin type "
                       f"{conf['type']!r}, this is {plugin_type!r}")
    return conf


def plugin_stdin(conflist: Obj, plugin: Obj, prev: Obj | None) -> Obj:
    """What the runtime gives one plugin of a list: its conf with the list's name and
    cniVersion, and the previous plugin's result as prevResult (spec: 'Network
    configuration lists')."""
    conf = {"cniVersion": conflist["cniVersion"], "name": conflist["name"], **plugin}
    if prev is not None:
        conf["prevResult"] = prev
    return conf


def _dns(service_ip: str) -> Obj:
    return {"nameservers": [service_ip], "search": ["svc.cluster.local", "cluster.local"],
            "options": ["ndots:5"]}


def builtin_conflist(*, node: str, dataplane_dir: str, mtu: int, dns_ip: str) -> Obj:
    """knet's own plugin (`python -m knet.cni`), as the one plugin of the list."""
    return {"cniVersion": CNI_VERSION, "name": "knet", "plugins": [
        {"type": "knet", "node": node, "dataplaneDir": dataplane_dir, "mtu": mtu,
         "dns": _dns(dns_ip)}]}


def reference_conflist(*, pod_cidr: str, gateway: str, bridge: str, mtu: int,
                       ipam_dir: str, dns_ip: str) -> Obj:
    """The reference plugins: bridge (veth on the node's bridge, gateway address) with
    host-local IPAM over the node's pod CIDR, then portmap (hostPort), as flannel's CNI
    config delegates to them. IP masquerade is off: pod traffic keeps its source address."""
    return {"cniVersion": CNI_VERSION, "name": "knet", "plugins": [
        {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
         "hairpinMode": True, "mtu": mtu,
         "ipam": {"type": "host-local", "dataDir": ipam_dir,
                  "ranges": [[{"subnet": pod_cidr, "gateway": gateway}]],
                  "routes": [{"dst": "0.0.0.0/0", "gw": gateway}]},
         "dns": _dns(dns_ip)},
        {"type": "portmap", "capabilities": {"portMappings": True}, "snat": False}]}


def loopback_conf() -> Obj:
    """The loopback network every pod gets first (as containerd does), ifname `lo`."""
    return {"cniVersion": CNI_VERSION, "name": "cni-loopback", "type": "loopback"}
