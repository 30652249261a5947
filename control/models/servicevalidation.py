"""Validation of Services, Endpoints and EndpointSlices.

Port ranges, port names (required when there are several, DNS-1123 labels as Kubernetes
checks Service and endpoint port names (`80-80` is fine; container ports use IANA_SVC_NAME),
unique), protocol
TCP/UDP (SCTP is refused: knet's proxy does not speak it), nodePort a port number (its range
and duplicates across Services are the allocator's, as in kube-apiserver), clusterIP syntax,
IP families (single-stack IPv4), session affinity, and what must not change on update
(clusterIP).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from control.models import names
from control.models.fielderrors import FieldErrors
from control.models.lbvalidation import validate_load_balancer
from control.models.podvalidation import check_port_protocol, check_port_ref
from control.models.workloadvalidation import validate_labels

__all__ = [
    "IGNORED_SERVICE_FIELDS",
    "validate_endpoints",
    "validate_endpointslice",
    "validate_service",
    "validate_service_update",
]

Obj = dict[str, Any]
_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
IGNORED_SERVICE_FIELDS = {
    "trafficDistribution": "ignored",
}


def _ipv4(value: Any) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except (ipaddress.AddressValueError, ValueError, TypeError):
        return False
    return True


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def _service_ports(errs: FieldErrors, spec: Obj, kind: str) -> None:
    ports = spec.get("ports")
    if ports is None:
        ports = []
    if not isinstance(ports, list):
        errs.type_error("spec.ports", ports, "a list")
        return
    if not ports and kind != "ExternalName" and spec.get("clusterIP") != "None":
        errs.required("spec.ports")
    seen_names: set[str] = set()
    seen_ports: set[tuple[Any, Any]] = set()
    seen_node_ports: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        p = f"spec.ports[{i}]"
        if not isinstance(port, dict):
            errs.type_error(p, port, "an object")
            continue
        _one_service_port(errs, p, port, kind, multi=len(ports) > 1)
        name = port.get("name")
        if name and isinstance(name, str):
            if name in seen_names:
                errs.duplicate(f"{p}.name", name)
            seen_names.add(str(name))
        key = (_hashable(port.get("port")), _hashable(port.get("protocol")))
        if key in seen_ports:
            errs.duplicate(p, {"port": key[0], "protocol": key[1]})
        seen_ports.add(key)
        if port.get("nodePort"):
            node_key = (_hashable(port["nodePort"]), _hashable(port.get("protocol")))
            if node_key in seen_node_ports:
                errs.duplicate(f"{p}.nodePort", port["nodePort"])
            seen_node_ports.add(node_key)


def _one_service_port(errs: FieldErrors, p: str, port: Obj, kind: str, *, multi: bool) -> None:
    name = port.get("name")
    if name:
        errs.names(f"{p}.name", name, names.dns1123_label)
    elif multi:
        errs.required(f"{p}.name")
    if "port" not in port:
        errs.required(f"{p}.port")
    else:
        errs.int_range(f"{p}.port", port["port"], 1, 65535)
    check_port_protocol(errs, f"{p}.protocol", port.get("protocol", "TCP"))
    if port.get("targetPort") is not None:
        check_port_ref(errs, f"{p}.targetPort", port["targetPort"])
    node_port = port.get("nodePort")
    if node_port:
        if kind not in ("NodePort", "LoadBalancer"):
            errs.forbidden(f"{p}.nodePort", f"may not be used when `type` is '{kind}'")
        else:                                # the range is the allocator's to check
            errs.int_range(f"{p}.nodePort", node_port, 1, 65535)
    app = port.get("appProtocol")
    if app:
        errs.names(f"{p}.appProtocol", app, names.qualified_name)


def _cluster_ip(errs: FieldErrors, spec: Obj, kind: str) -> None:
    ip, ips = spec.get("clusterIP"), spec.get("clusterIPs")
    if kind == "ExternalName":
        if ip and ip != "None":
            errs.forbidden("spec.clusterIP", "may not be set for ExternalName services")
        external = spec.get("externalName")
        if not external:
            errs.required("spec.externalName")
        else:
            errs.names("spec.externalName", str(external).rstrip("."), names.dns1123_subdomain)
        return
    if ip and ip != "None" and not _ipv4(ip):
        errs.invalid("spec.clusterIP", ip, "must be a valid IPv4 address, '' or 'None'")
    if ip == "None" and kind in ("NodePort", "LoadBalancer"):
        errs.invalid("spec.clusterIP", ip, f"may not be 'None' for {kind} services")
    for i, addr in enumerate(errs.list_of("spec.clusterIPs", ips)):
        if addr != "None" and not _ipv4(addr):
            errs.invalid(f"spec.clusterIPs[{i}]", addr, "must be a valid IPv4 address or 'None'")
    if isinstance(ips, list) and ips and ip and ips[0] != ip:
        errs.invalid("spec.clusterIPs", ips, "must hold spec.clusterIP as its first element")
    for i, addr in enumerate(spec.get("externalIPs") or []):
        if not _ipv4(addr):
            errs.invalid(f"spec.externalIPs[{i}]", addr, "must be a valid IPv4 address")


def _affinity(errs: FieldErrors, spec: Obj) -> None:
    affinity = spec.get("sessionAffinity", "None")
    if not errs.one_of("spec.sessionAffinity", affinity, ("ClientIP", "None")):
        return
    cfg = spec.get("sessionAffinityConfig")
    if affinity == "None":
        if cfg:
            errs.forbidden("spec.sessionAffinityConfig",
                           "must not be set when session affinity is None")
        return
    client = errs.map_of("spec.sessionAffinityConfig", cfg).get("clientIP")
    timeout = errs.map_of("spec.sessionAffinityConfig.clientIP", client).get("timeoutSeconds")
    if timeout is not None:
        errs.int_range("spec.sessionAffinityConfig.clientIP.timeoutSeconds", timeout, 1, 86400)


def _ip_families(errs: FieldErrors, spec: Obj, kind: str) -> None:
    """knet's Service CIDR is single-stack IPv4."""
    policy = spec.get("ipFamilyPolicy")
    if kind == "ExternalName" or policy is None:
        return
    if errs.one_of("spec.ipFamilyPolicy", policy,
                   ("SingleStack", "PreferDualStack", "RequireDualStack")):
        headless_selectorless = spec.get("clusterIP") == "None" and not spec.get("selector")
        if policy == "RequireDualStack" and not headless_selectorless:
            errs.invalid("spec.ipFamilyPolicy", policy,
                         "this cluster is not configured for dual-stack services")
    for i, family in enumerate(errs.list_of("spec.ipFamilies", spec.get("ipFamilies"))):
        if errs.one_of(f"spec.ipFamilies[{i}]", family, ("IPv4", "IPv6")) and family != "IPv4":
            errs.invalid(f"spec.ipFamilies[{i}]", family, "not configured on this cluster")


def validate_service(errs: FieldErrors, obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        errs.required("spec")
        return
    kind = spec.get("type", "ClusterIP")
    if not errs.one_of("spec.type", kind, _TYPES):
        return
    _service_ports(errs, spec, kind)
    _cluster_ip(errs, spec, kind)
    _affinity(errs, spec)
    validate_labels(errs, "spec.selector", spec.get("selector"))
    for key in ("externalTrafficPolicy", "internalTrafficPolicy"):
        if spec.get(key) is not None:
            errs.one_of(f"spec.{key}", spec[key], ("Cluster", "Local"))
    if spec.get("externalTrafficPolicy") and kind not in ("NodePort", "LoadBalancer") \
            and not spec.get("externalIPs"):
        errs.invalid("spec.externalTrafficPolicy", spec["externalTrafficPolicy"],
                     "may only be set for externally-accessible services")
    _ip_families(errs, spec, kind)
    validate_load_balancer(errs, obj, kind)
    for key, why in IGNORED_SERVICE_FIELDS.items():
        if spec.get(key):
            errs.warn(f"spec.{key}", why)


def validate_service_update(errs: FieldErrors, new: Obj, old: Obj) -> None:
    spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    old_ip = old_spec.get("clusterIP")
    changing_type = "ExternalName" in (spec.get("type"), old_spec.get("type"))
    if old_ip and not changing_type and spec.get("clusterIP") != old_ip:
        errs.invalid("spec.clusterIP", spec.get("clusterIP"), "field is immutable")


def _endpoint_ports(errs: FieldErrors, path: str, ports: Any, *, port_required: bool) -> None:
    for i, port in enumerate(errs.list_of(path, ports)):
        p = f"{path}[{i}]"
        if not isinstance(port, dict):
            errs.type_error(p, port, "an object")
            continue
        if port.get("port") is not None or port_required:
            errs.int_range(f"{p}.port", port.get("port"), 1, 65535)
        if port.get("name"):
            errs.names(f"{p}.name", port["name"], names.dns1123_label)
        check_port_protocol(errs, f"{p}.protocol", port.get("protocol", "TCP"))


def validate_endpoints(errs: FieldErrors, obj: Obj) -> None:
    for i, subset in enumerate(errs.list_of("subsets", obj.get("subsets"))):
        path = f"subsets[{i}]"
        if not isinstance(subset, dict):
            errs.type_error(path, subset, "an object")
            continue
        for group in ("addresses", "notReadyAddresses"):
            for j, addr in enumerate(errs.list_of(f"{path}.{group}", subset.get(group))):
                ip = addr.get("ip") if isinstance(addr, dict) else None
                if not _ipv4(ip):
                    errs.invalid(f"{path}.{group}[{j}].ip", ip, "must be a valid IPv4 address")
        _endpoint_ports(errs, f"{path}.ports", subset.get("ports"), port_required=True)


def validate_endpointslice(errs: FieldErrors, obj: Obj) -> None:
    family = obj.get("addressType")
    if not family:
        errs.required("addressType")
    else:
        errs.one_of("addressType", family, ("IPv4", "IPv6", "FQDN"))
    for i, ep in enumerate(errs.list_of("endpoints", obj.get("endpoints"))):
        addrs = ep.get("addresses") if isinstance(ep, dict) else None
        if not isinstance(addrs, list) or not 1 <= len(addrs) <= 100:
            errs.invalid(f"endpoints[{i}].addresses", addrs,
                         "must contain at least 1 and at most 100 addresses")
            continue
        for j, addr in enumerate(addrs):
            if family == "IPv4" and not _ipv4(addr):
                errs.invalid(f"endpoints[{i}].addresses[{j}]", addr,
                             "must be a valid IPv4 address")
    _endpoint_ports(errs, "ports", obj.get("ports"), port_required=False)
