"""The agent as a CNI runtime: `CniDataplane` wraps the Dataplane so that every pod sandbox is
wired through the node's conflist, as a kubelet's container runtime does.

Per node, in STATE/cni/NODE/: `10-knet.conflist` (the network), `99-loopback.conf`,
`cni.log` (one JSON line per plugin call: environment, stdin, stdout, exit status, time),
`results/` (each pod's ADD result, given back as prevResult on DEL) and `ipam/` (host-local's
leases). Mode `builtin` runs knet's plugin (`knet.cni.plugin`) in-process: the same stdin, env
and result as `python -m knet.cni`, without an exec. Mode `reference` makes the pod's netns
(the runtime's job in CNI), execs loopback, then bridge (+host-local) and portmap from CNI_PATH,
and records the pod's address with the dataplane so `knet down` removes its netns.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from control.addresses import CLUSTER_DNS_IP
from knet.cni import plugin
from knet.cni.spec import (
    CniError,
    builtin_conflist,
    loopback_conf,
    plugin_stdin,
    reference_conflist,
)
from knet.dataplane import names, nsutil
from knet.dataplane.base import NETNS_DIR, Dataplane, NodeInfo, NodeSpec, PodNet
from knet.dataplane.ipam import write_json_atomic
from knet.errors import DataplaneError

__all__ = ["CNI_PATH", "MODES", "CniDataplane", "cni_dataplane", "node_cni_dir"]

log = logging.getLogger(__name__)
CNI_PATH = os.environ.get("KNET_CNI_PATH", "/usr/lib/cni")
MODES = ("builtin", "reference")
DNS_IP = CLUSTER_DNS_IP
PLUGIN_TIMEOUT = 30.0
Obj = dict[str, Any]


def node_cni_dir(state_dir: Path, node: str) -> Path:
    return state_dir / "cni" / node


def cni_dataplane(dp: Dataplane, *, mode: str, node: NodeSpec, state_dir: Path) -> Dataplane:
    """The agent's dataplane with pods wired through CNI (`mode`: builtin | reference)."""
    return CniDataplane(dp, node=node, mode=mode, state_dir=state_dir)


class CniDataplane:
    """A Dataplane whose ensure_pod/delete_pod go through the node's CNI conflist; the
    other calls are the wrapped dataplane's."""

    def __init__(self, dp: Dataplane, *, node: NodeSpec, mode: str, state_dir: Path,
                 cni_path: str = CNI_PATH) -> None:
        if mode not in MODES:
            raise DataplaneError(f"--cni {mode!r}: choose one of {', '.join(MODES)}")
        self.dp, self.node, self.mode, self.cni_path = dp, node, mode, cni_path
        self.dir = node_cni_dir(Path(state_dir), node.name)
        self.dataplane_dir = str(Path(state_dir) / "dataplane")

    def __repr__(self) -> str:
        return f"<CniDataplane {self.node.name} {self.mode} {self.dir}>"

    def __getattr__(self, name: str) -> Any:      # every other Dataplane call
        return getattr(self.dp, name)

    # -- files --------------------------------------------------------------------------
    @property
    def conflist_path(self) -> Path:
        return self.dir / "10-knet.conflist"

    def conflist(self) -> Obj:
        if self.mode == "builtin":
            return builtin_conflist(node=self.node.name, dataplane_dir=self.dataplane_dir,
                                    mtu=self.node.mtu, dns_ip=DNS_IP)
        return reference_conflist(pod_cidr=self.node.pod_cidr, gateway=self.node.gateway,
                                  bridge=names.NODE_BRIDGE, mtu=self.node.mtu,
                                  ipam_dir=str(self.dir / "ipam"), dns_ip=DNS_IP)

    def write_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_json_atomic(self.conflist_path, self.conflist())
        write_json_atomic(self.dir / "99-loopback.conf", loopback_conf())

    async def ensure_node(self, spec: NodeSpec) -> NodeInfo:
        info = await self.dp.ensure_node(spec)
        self.write_config()
        return info

    def _result_path(self, cid: str) -> Path:
        return self.dir / "results" / f"{cid}.json"

    # -- invocations --------------------------------------------------------------------
    def _env(self, command: str, key: str, *, ifname: str = names.POD_IFNAME) -> dict[str, str]:
        ns, name = names.validate_pod_key(key)
        netns = names.pod_netns(self.node.name, key)
        return {"CNI_COMMAND": command, "CNI_CONTAINERID": netns,
                "CNI_NETNS": f"{NETNS_DIR}/{netns}", "CNI_IFNAME": ifname,
                "CNI_PATH": self.cni_path,
                "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name};"
                            f"K8S_POD_INFRA_CONTAINER_ID={netns}"}

    async def _call(self, ptype: str, env: dict[str, str], conf: Obj) -> Obj | None:
        """One plugin call, logged; the parsed stdout, or CniError as the plugin said it."""
        stdin = json.dumps(conf).encode()
        start = time.monotonic()
        if ptype == plugin.PLUGIN_TYPE:
            out, status = await plugin.invoke(env, stdin, lambda _c: self.dp)
        else:
            out, status = await self._exec(ptype, env, stdin)
        self._log(ptype, env, conf, out, status, time.monotonic() - start)
        try:
            parsed = json.loads(out) if out.strip() else None
        except json.JSONDecodeError:
            parsed = None
        if status != 0:
            if isinstance(parsed, dict) and "code" in parsed:
                raise CniError.from_json(parsed)
            raise CniError(999, f"plugin {ptype} exited {status}", out.decode(errors="replace"))
        return parsed if isinstance(parsed, dict) else None

    async def _exec(self, ptype: str, env: dict[str, str], stdin: bytes) -> tuple[bytes, int]:
        exe = next((Path(d) / ptype for d in self.cni_path.split(":")
                    if (Path(d) / ptype).is_file()), None)
        if exe is None:
            raise CniError(999, f"CNI plugin {ptype!r} not found in CNI_PATH {self.cni_path}",
                           "install containernetworking-plugins (scripts/install.sh does)")
        base = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME")}
        # a plugin makes host-side objects (bridge, veth end) in its own netns: the node's,
        # where a real kubelet and its runtime live
        node_ns = nsutil.netns_path(names.node_netns(self.node.name))
        proc = await asyncio.create_subprocess_exec(
            "nsenter", f"--net={node_ns}", "--", str(exe), env={**base, **env},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), PLUGIN_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise CniError(999, f"plugin {ptype} did not answer in {PLUGIN_TIMEOUT:.0f} s") \
                from None
        if err.strip():
            log.debug("%s: plugin %s stderr: %s", self.node.name, ptype, err.decode()[-500:])
        return out, proc.returncode or 0

    def _log(self, ptype: str, env: dict[str, str], conf: Obj, out: bytes, status: int,
             took: float) -> None:
        try:
            result: Any = json.loads(out) if out.strip() else None
        except json.JSONDecodeError:
            result = out.decode(errors="replace")
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "plugin": ptype,
                "env": env, "stdin": conf, "stdout": result, "exit": status,
                "ms": round(took * 1000, 1)}
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.dir / "cni.log", "a") as f:
            f.write(json.dumps(line) + "\n")

    # -- pods ---------------------------------------------------------------------------
    async def ensure_pod(self, node: str, pod_key: str, *, ip: str | None = None) -> PodNet:
        if ip is not None or node != self.node.name:
            return await self.dp.ensure_pod(node, pod_key, ip=ip)
        if not self.conflist_path.exists():
            self.write_config()
        try:
            if self.mode == "builtin":
                return await self._add_builtin(pod_key)
            return await self._add_reference(pod_key)
        except CniError as err:
            raise DataplaneError(f"pod {pod_key}: CNI ADD failed: {err.msg}"
                                 + (f" ({err.details})" if err.details else "")
                                 + f"; see {self.dir / 'cni.log'}") from None

    async def _add_builtin(self, key: str) -> PodNet:
        conflist = json.loads(self.conflist_path.read_text())
        conf = plugin_stdin(conflist, conflist["plugins"][0], None)
        result = await self._call(plugin.PLUGIN_TYPE, self._env("ADD", key), conf)
        self._save(key, result)
        return self._podnet(key, result or {})

    def _podnet(self, key: str, result: Obj) -> PodNet:
        """The sandbox as an ADD result describes it."""
        try:
            ifaces = result["interfaces"]
            ip = result["ips"][0]
            pod = ifaces[ip.get("interface", 1)]
            host = [i for i in ifaces if not i.get("sandbox") and i["name"] != names.NODE_BRIDGE
                    ][-1]
            return PodNet(key=key, netns=Path(pod["sandbox"]).name,
                          ip=ip["address"].split("/")[0], gateway=ip["gateway"],
                          host_ifname=host["name"], node=self.node.name, mac=pod["mac"])
        except (KeyError, IndexError, TypeError, AttributeError):
            raise CniError(999, f"pod {key}: the plugin's result lacks interfaces or ips",
                           json.dumps(result)) from None

    def _save(self, key: str, result: Obj | None) -> None:
        cid = names.pod_netns(self.node.name, key)
        write_json_atomic(self._result_path(cid), {"key": key, "result": result})

    async def _add_reference(self, key: str) -> PodNet:
        netns = names.pod_netns(self.node.name, key)
        done = self._wired(key)
        if done is not None:        # an agent restart adopting a running pod: ADD was done
            return done
        if not nsutil.is_netns(netns):
            try:
                with nsutil.new_netns(netns):
                    pass
            except OSError as exc:
                raise CniError(5, f"pod {key}: cannot make netns {netns}: {exc}") from None
        conflist = json.loads(self.conflist_path.read_text())
        try:
            await self._call("loopback", self._env("ADD", key, ifname="lo"), loopback_conf())
            prev: Obj | None = None
            for p in conflist["plugins"]:
                prev = await self._call(p["type"], self._env("ADD", key),
                                        plugin_stdin(conflist, p, prev))
            address = str(((prev or {}).get("ips") or [{}])[0].get("address", ""))
            if not address:
                raise CniError(999, f"pod {key}: the plugins returned no address")
            self._save(key, prev)
            await self.dp.record_pod(self.node.name, key,  # type: ignore[attr-defined]
                                     address.split("/")[0])
            pod = self._podnet(key, prev or {})
        except BaseException:
            await self._del_reference(key, quiet=True)
            nsutil.remove_netns(netns)
            raise
        return pod

    async def delete_pod(self, node: str, pod_key: str) -> None:
        if node == self.node.name:
            cid = names.pod_netns(node, pod_key)
            path = self._result_path(cid)
            if self.mode == "builtin":
                await self._call(plugin.PLUGIN_TYPE, self._env("DEL", pod_key), plugin_stdin(
                    *self._list_and_plugin(0), None))
            else:
                await self._del_reference(pod_key)
                if await self._recorded(pod_key) is None:
                    nsutil.remove_netns(cid)       # made here, never recorded (a crash)
            path.unlink(missing_ok=True)
        await self.dp.delete_pod(node, pod_key)

    def _wired(self, key: str) -> PodNet | None:
        """The sandbox of an earlier ADD that is still there (result saved, netns alive)."""
        netns = names.pod_netns(self.node.name, key)
        try:
            saved = json.loads(self._result_path(netns).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if not nsutil.is_netns(netns) or not isinstance(saved.get("result"), dict):
            return None
        try:
            return self._podnet(key, saved["result"])
        except CniError:
            return None

    async def _recorded(self, key: str) -> PodNet | None:
        return next((p for p in await self.dp.list_pods(self.node.name) if p.key == key), None)

    def _list_and_plugin(self, i: int) -> tuple[Obj, Obj]:
        if not self.conflist_path.exists():
            self.write_config()
        conflist = json.loads(self.conflist_path.read_text())
        return conflist, conflist["plugins"][i]

    async def _del_reference(self, key: str, *, quiet: bool = False) -> None:
        """DEL through the list in reverse order with the ADD's result as prevResult, then
        loopback; DEL must succeed on what is already gone, so errors are logged, not fatal."""
        path = self._result_path(names.pod_netns(self.node.name, key))
        try:
            prev = json.loads(path.read_text()).get("result")
        except (OSError, json.JSONDecodeError):
            prev = None
        conflist, _ = self._list_and_plugin(0)
        for p in reversed(conflist["plugins"]):
            try:
                await self._call(p["type"], self._env("DEL", key), plugin_stdin(conflist, p, prev))
            except CniError as err:
                if not quiet:
                    log.warning("%s: pod %s: CNI DEL (%s) failed: %s", self.node.name, key,
                                p["type"], err)
        try:
            await self._call("loopback", self._env("DEL", key, ifname="lo"), loopback_conf())
        except CniError as err:
            log.debug("%s: pod %s: loopback DEL: %s", self.node.name, key, err)
