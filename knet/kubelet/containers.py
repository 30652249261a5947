"""From a pod's container (wire form) to a runtime `ContainerSpec`: the argv from the image
catalog, the environment (value, configMapKeyRef, secretKeyRef, fieldRef, envFrom, and the
Kubernetes service variables), and volumes (emptyDir, configMap, secret) as files in the pod
directory, bind-mounted where the container asks.

The securityContext (pod level, the container's winning field by field) and
resources.limits become the spec's user, capabilities, privileges and cgroup limits.

Errors are `ConfigError(reason, message)` with the Kubernetes waiting reason the kubelet
shows (CreateContainerConfigError, ErrImagePull).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from control.scheduler import parse_quantity
from knet.kubelet.volumes import host_dir, prepare_sub_path
from knet.runtime.base import ContainerSpec, Mount

Obj = dict[str, Any]
Lookup = Callable[[str, str, str], Awaitable[Obj | None]]  # (resource, namespace, name)


class ConfigError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command, args and env values; $$(VAR) escapes."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        m = _VAR.match(text, i)
        if m and m.group(1) in env:
            out.append(env[m.group(1)])
            i = m.end()
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def field_ref(pod: Obj, path: str, *, node_name: str, pod_ip: str, host_ip: str) -> str:
    meta = pod.get("metadata", {})
    simple = {
        "metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""), "spec.nodeName": node_name,
        "spec.serviceAccountName": pod.get("spec", {}).get("serviceAccountName", "default"),
        "status.podIP": pod_ip, "status.podIPs": pod_ip, "status.hostIP": host_ip,
    }
    if path in simple:
        return str(simple[path])
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    raise ConfigError("CreateContainerConfigError",
                      f"fieldRef {path!r} is not supported; use metadata.name, metadata.namespace, "
                      "metadata.uid, metadata.labels['k'], spec.nodeName, status.podIP or "
                      "status.hostIP")


async def _source_data(lookup: Lookup, kind: str, namespace: str, name: str,
                       optional: bool) -> dict[str, str] | None:
    resource = "configmaps" if kind == "configMap" else "secrets"
    obj = await lookup(resource, namespace, name)
    if obj is None:
        if optional:
            return None
        raise ConfigError("CreateContainerConfigError", f'{kind} "{name}" not found')
    if kind == "configMap":
        return {k: str(v) for k, v in (obj.get("data") or {}).items()}
    return {k: base64.b64decode(v).decode(errors="replace")
            for k, v in (obj.get("data") or {}).items()}


async def build_env(pod: Obj, container: Obj, *, lookup: Lookup, node_name: str, pod_ip: str,
                    host_ip: str, service_env: dict[str, str]) -> dict[str, str]:
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = dict(service_env)
    for src in container.get("envFrom") or []:
        kind = "configMap" if "configMapRef" in src else "secret"
        ref = src.get("configMapRef") or src.get("secretRef") or {}
        data = await _source_data(lookup, kind, namespace, ref.get("name", ""),
                                  bool(ref.get("optional")))
        for k, v in (data or {}).items():
            env[src.get("prefix", "") + k] = v
    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item:
            env[name] = expand(str(item.get("value") or ""), env)
            continue
        vf = item.get("valueFrom") or {}
        if "fieldRef" in vf:
            env[name] = field_ref(pod, vf["fieldRef"]["fieldPath"], node_name=node_name,
                                  pod_ip=pod_ip, host_ip=host_ip)
        elif "configMapKeyRef" in vf or "secretKeyRef" in vf:
            kind = "configMap" if "configMapKeyRef" in vf else "secret"
            kref: Obj = vf.get("configMapKeyRef") or vf.get("secretKeyRef") or {}
            data = await _source_data(lookup, kind, namespace, kref["name"], bool(kref.get("optional")))
            if data is None:
                continue
            if kref["key"] not in data:
                if kref.get("optional"):
                    continue
                raise ConfigError("CreateContainerConfigError",
                                  f"couldn't find key {kref['key']} in {kind} "
                                  f"{namespace}/{kref['name']}")
            env[name] = data[kref["key"]]
        elif "resourceFieldRef" in vf:
            env[name] = "0"
        else:
            env[name] = ""
    return env


async def materialize_volumes(pod: Obj, pod_dir: Path, *, lookup: Lookup) -> dict[str, Path]:
    """Write each volume's files under pod_dir/volumes/NAME and return name -> host dir."""
    namespace = pod["metadata"]["namespace"]
    out: dict[str, Path] = {}
    for vol in pod.get("spec", {}).get("volumes") or []:
        special = await host_dir(pod, vol, pod_dir, lookup=lookup)  # PVC, hostPath...
        if special is not None:
            out[vol["name"]] = special
            continue
        path = pod_dir / "volumes" / vol["name"]
        path.mkdir(parents=True, exist_ok=True)
        for kind in ("configMap", "secret"):
            if kind not in vol:
                continue
            src = vol[kind]
            ref = src.get("name") or src.get("secretName", "")
            data = await _source_data(lookup, kind, namespace, ref, bool(src.get("optional")))
            items = src.get("items")
            files = ({i["key"]: i["path"] for i in items if i["key"] in (data or {})}
                     if items else {k: k for k in data or {}})
            for key, rel in files.items():
                target = path / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text((data or {})[key])
                os.chmod(target, int(src.get("defaultMode", 0o644)))
        out[vol["name"]] = path
    return out


def mounts_for(container: Obj, volumes: dict[str, Path]) -> list[Mount]:
    mounts: list[Mount] = []
    for vm in container.get("volumeMounts") or []:
        host = volumes.get(vm["name"])
        if host is None:
            raise ConfigError("CreateContainerConfigError",
                              f"volumeMount {vm['name']!r} names no volume of the pod")
        if vm.get("subPath"):
            host = prepare_sub_path(host, vm["subPath"])
        mounts.append(Mount(host_path=str(host), container_path=vm["mountPath"],
                            read_only=bool(vm.get("readOnly"))))
    return mounts


def image_mounts(container: Obj, pod_dir: Path) -> list[Mount]:
    """The real image's fixed-path programs (`/agnhost`, ...) as knet's wrappers, written
    under pod_dir/images/CONTAINER and mounted read-only (see images.files)."""
    from knet.runtime import images

    out: list[Mount] = []
    for i, (path, script) in enumerate(images.files(container.get("image", "")).items()):
        host = pod_dir / "images" / container["name"] / str(i)
        host.parent.mkdir(parents=True, exist_ok=True)
        host.write_text(script)
        host.chmod(0o755)
        out.append(Mount(host_path=str(host), container_path=path, read_only=True))
    return out


def resolve_argv(container: Obj, env: dict[str, str]) -> list[str]:
    from knet.runtime import images

    command = container.get("command")
    args = container.get("args")
    try:
        argv = images.resolve(container.get("image", ""), command, args)
    except images.ImageNotFound as exc:
        raise ConfigError("ErrImagePull", str(exc)) from None
    return [expand(a, env) for a in argv]


def _pod_ref(pod: Obj) -> str:
    meta = pod["metadata"]
    return f"{meta['name']}_{meta['namespace']}({meta.get('uid', '')})"


def security(pod: Obj, container: Obj) -> dict[str, Any]:
    """The ContainerSpec fields of the securityContext; refuses runAsNonRoot with root as
    the kubelet does (every built-in image runs as root: it has no USER)."""
    psc = pod.get("spec", {}).get("securityContext") or {}
    csc = container.get("securityContext") or {}

    def pick(field: str) -> Any:
        return csc[field] if csc.get(field) is not None else psc.get(field)

    uid, gid = pick("runAsUser"), pick("runAsGroup")
    if pick("runAsNonRoot"):
        where = f"(pod: {_pod_ref(pod)!r}, container: {container['name']})".replace("'", '"')
        if uid is not None and int(uid) == 0:
            raise ConfigError("CreateContainerConfigError",
                              f"container's runAsUser breaks non-root policy {where}")
        if uid is None:
            raise ConfigError("CreateContainerConfigError",
                              f"container has runAsNonRoot and image will run as root {where}")
    capabilities = csc.get("capabilities") or {}
    return {"run_as_user": None if uid is None else int(uid),
            "run_as_group": None if gid is None else int(gid),
            "privileged": bool(csc.get("privileged")),
            "read_only_root": bool(csc.get("readOnlyRootFilesystem")),
            "cap_add": tuple(capabilities.get("add") or ()),
            "cap_drop": tuple(capabilities.get("drop") or ())}


def limits(container: Obj) -> dict[str, Any]:
    """resources.limits as bytes of memory and millicores of CPU (None: no limit)."""
    lim = (container.get("resources") or {}).get("limits") or {}
    try:
        memory = int(parse_quantity(lim["memory"])) if "memory" in lim else None
        cpu = int(parse_quantity(lim["cpu"]) * 1000) if "cpu" in lim else None
    except ValueError as exc:
        raise ConfigError("CreateContainerConfigError", f"resources.limits: {exc}") from None
    return {"memory_limit": memory, "cpu_limit_millis": cpu}


async def container_spec(pod: Obj, container: Obj, *, lookup: Lookup, node_name: str,
                         pod_ip: str, host_ip: str, service_env: dict[str, str],
                         volumes: dict[str, Path],
                         pod_dir: Path | None = None) -> ContainerSpec:
    env = await build_env(pod, container, lookup=lookup, node_name=node_name, pod_ip=pod_ip,
                          host_ip=host_ip, service_env=service_env)
    env.setdefault("HOSTNAME", pod.get("spec", {}).get("hostname") or pod["metadata"]["name"])
    return ContainerSpec(name=container["name"], argv=resolve_argv(container, env), env=env,
                         workdir=container.get("workingDir"),
                         mounts=[*(image_mounts(container, pod_dir) if pod_dir else []),
                                 *mounts_for(container, volumes)],
                         stdin=bool(container.get("stdin")),
                         stdin_once=bool(container.get("stdinOnce")),
                         tty=bool(container.get("tty")),
                         pid_target=container.get("targetContainerName") or None,
                         **security(pod, container), **limits(container))


def service_env(services: list[Obj], namespace: str) -> dict[str, str]:
    """The docker-links style variables Kubernetes gives every container for the Services
    of its namespace (and `kubernetes` in default): WEB_SERVICE_HOST, WEB_SERVICE_PORT..."""
    env: dict[str, str] = {}
    for svc in services:
        meta, spec = svc.get("metadata", {}), svc.get("spec", {})
        if meta.get("namespace") != namespace and not (
                meta.get("namespace") == "default" and meta.get("name") == "kubernetes"):
            continue
        ip = spec.get("clusterIP")
        ports = spec.get("ports") or []
        if not ip or ip == "None" or not ports:
            continue
        prefix = meta["name"].upper().replace("-", "_")
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for p in ports:
            if p.get("name"):
                env[f"{prefix}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p["port"])
    return env
