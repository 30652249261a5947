"""networking.k8s.io/v1 Ingress, IngressClass, NetworkPolicy and policy/v1
PodDisruptionBudget: stored and served like on a cluster (PDBs are enforced by the Eviction
API, control/api/eviction.py; the others' behaviour lives elsewhere).

Each kind gets what `kubectl` shows and what kube-apiserver refuses: defaults
(NetworkPolicy policyTypes and port protocols, the always-present status), validation of the
obvious fields in kube-apiserver's words (an ipBlock cidr must be a CIDR, `except` a strict
subset of it; an Ingress path needs a pathType and a backend; a PDB sets minAvailable or
maxUnavailable, not both), and the printer columns of pkg/printers.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any

from control.models import names
from control.models import printers as p
from control.models.fielderrors import FieldErrors

__all__ = ["CHECKS", "COLUMNS", "DEFAULTS", "NOT_ENFORCED", "PRINTERS"]

Obj = dict[str, Any]
Column = tuple[str, str, int, str]
_NAME: Column = ("Name", "string", 0, "Name must be unique within a namespace.")
_AGE: Column = ("Age", "string", 0, ("CreationTimestamp is a timestamp representing the "
                "server time when this object was created."))
_CIDR_EXAMPLE = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
_PATH_TYPES = ("Exact", "Prefix", "ImplementationSpecific")


def _dicts(value: Any) -> list[Obj]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _spec(obj: Obj) -> Obj:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


# ---- defaults --------------------------------------------------------------------------

def _status(obj: Obj, **fields: Any) -> None:
    status = obj.get("status")
    if status is None:
        status = obj["status"] = {}
    if isinstance(status, dict):
        for key, value in fields.items():
            status.setdefault(key, value)


def _default_networkpolicy(obj: Obj, old: Obj | None) -> None:
    spec = _spec(obj)
    for direction in ("ingress", "egress"):
        for rule in _dicts(spec.get(direction)):
            for port in _dicts(rule.get("ports")):
                port.setdefault("protocol", "TCP")
    if isinstance(obj.get("spec"), dict) and not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])


def _default_ingress(obj: Obj, old: Obj | None) -> None:
    _status(obj, loadBalancer={})


def _default_pdb(obj: Obj, old: Obj | None) -> None:
    _status(obj, disruptionsAllowed=0, currentHealthy=0, desiredHealthy=0, expectedPods=0)


DEFAULTS = {"networkpolicies": _default_networkpolicy, "ingresses": _default_ingress,
            "poddisruptionbudgets": _default_pdb}


# ---- validation ------------------------------------------------------------------------

def _cidr(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if not isinstance(value, str) or "/" not in value:
        return None
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None


def _ip_block(errs: FieldErrors, path: str, block: Obj) -> None:
    cidr = block.get("cidr")
    if not cidr:
        errs.required(f"{path}.cidr")
        return
    net = _cidr(cidr)
    if net is None:
        errs.invalid(f"{path}.cidr", cidr, _CIDR_EXAMPLE)
        return
    for i, raw in enumerate(errs.list_of(f"{path}.except", block.get("except"))):
        sub = _cidr(raw)
        if sub is None:
            errs.invalid(f"{path}.except[{i}]", raw, _CIDR_EXAMPLE)
        elif sub.version != net.version or sub.network_address not in net \
                or net.prefixlen >= sub.prefixlen:
            errs.invalid(f"{path}.except[{i}]", raw, "must be a strict subset of `cidr`")


def _peer(errs: FieldErrors, path: str, peer: Any) -> None:
    if not isinstance(peer, dict):
        errs.type_error(path, peer, "an object")
        return
    selectors = [k for k in ("podSelector", "namespaceSelector") if peer.get(k) is not None]
    block = peer.get("ipBlock")
    if block is not None and selectors:
        errs.forbidden(path, "may not specify both ipBlock and another peer")
    elif block is None and not selectors:
        errs.required(path, "must specify a peer")
    if isinstance(block, dict):
        _ip_block(errs, f"{path}.ipBlock", block)


def _netpol_ports(errs: FieldErrors, path: str, ports: Any) -> None:
    # imported here: podvalidation imports defaults, which imports this module
    from control.models.podvalidation import check_port_protocol, check_port_ref
    for j, port in enumerate(errs.list_of(path, ports)):
        pp = f"{path}[{j}]"
        if not isinstance(port, dict):
            errs.type_error(pp, port, "an object")
            continue
        check_port_protocol(errs, f"{pp}.protocol", port.get("protocol", "TCP"))
        if port.get("port") is not None:
            check_port_ref(errs, f"{pp}.port", port["port"])
        end = port.get("endPort")
        if end is not None:
            if not isinstance(port.get("port"), int):
                errs.required(f"{pp}.port", "must be specified when endPort is specified")
            elif errs.int_range(f"{pp}.endPort", end, 1, 65535) and end < port["port"]:
                errs.invalid(f"{pp}.endPort", end, "must be greater than or equal to `port`")


def _validate_networkpolicy(errs: FieldErrors, obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        errs.required("spec")
        return
    errs.map_of("spec.podSelector", spec.get("podSelector"))
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(errs.list_of(f"spec.{direction}", spec.get(direction))):
            path = f"spec.{direction}[{i}]"
            if not isinstance(rule, dict):
                errs.type_error(path, rule, "an object")
                continue
            _netpol_ports(errs, f"{path}.ports", rule.get("ports"))
            for j, peer in enumerate(errs.list_of(f"{path}.{peers}", rule.get(peers))):
                _peer(errs, f"{path}.{peers}[{j}]", peer)
    types = errs.list_of("spec.policyTypes", spec.get("policyTypes"))
    for i, kind in enumerate(types):
        errs.one_of(f"spec.policyTypes[{i}]", kind, ("Ingress", "Egress"))
    if len(types) > 2:
        errs.invalid("spec.policyTypes", types, "may not specify more than two policyTypes")


def _backend(errs: FieldErrors, path: str, backend: Any) -> None:
    if not isinstance(backend, dict):
        errs.required(path)
        return
    service, resource = backend.get("service"), backend.get("resource")
    if service is not None and resource is not None:
        errs.invalid(path, "", "cannot set both service and resource backends")
        return
    if service is None and resource is None:
        errs.invalid(path, "", "resource or service backend is required")
        return
    if not isinstance(service, dict):
        return
    if not service.get("name"):
        errs.required(f"{path}.service.name")
    else:
        errs.names(f"{path}.service.name", service["name"], names.dns1123_label)
    port = service.get("port")
    port = port if isinstance(port, dict) else {}
    if port.get("name") and port.get("number"):
        errs.invalid(f"{path}.service.port", port.get("name"),
                     "cannot set both port name & port number")
    elif port.get("number") is not None:
        errs.int_range(f"{path}.service.port.number", port["number"], 1, 65535)
    elif port.get("name"):
        errs.names(f"{path}.service.port.name", port["name"], names.iana_svc_name)
    else:
        errs.required(f"{path}.service.port", "port name or number is required")


def _ingress_paths(errs: FieldErrors, path: str, http: Any) -> None:
    paths = http.get("paths") if isinstance(http, dict) else None
    if not paths:
        errs.required(f"{path}.paths")
        return
    for j, entry in enumerate(errs.list_of(f"{path}.paths", paths)):
        pp = f"{path}.paths[{j}]"
        if not isinstance(entry, dict):
            errs.type_error(pp, entry, "an object")
            continue
        kind = entry.get("pathType")
        if not kind:
            errs.required(f"{pp}.pathType", "pathType must be specified")
        elif errs.one_of(f"{pp}.pathType", kind, _PATH_TYPES) and kind != \
                "ImplementationSpecific" and not str(entry.get("path") or "").startswith("/"):
            errs.invalid(f"{pp}.path", entry.get("path", ""), "must be an absolute path")
        _backend(errs, f"{pp}.backend", entry.get("backend"))


def _validate_ingress(errs: FieldErrors, obj: Obj) -> None:
    spec = _spec(obj)
    rules = errs.list_of("spec.rules", spec.get("rules"))
    if not rules and spec.get("defaultBackend") is None:
        errs.invalid("spec", spec, "either `defaultBackend` or `rules` must be specified")
    if spec.get("defaultBackend") is not None:
        _backend(errs, "spec.defaultBackend", spec["defaultBackend"])
    for i, rule in enumerate(rules):
        path = f"spec.rules[{i}]"
        if not isinstance(rule, dict):
            errs.type_error(path, rule, "an object")
            continue
        host = rule.get("host")
        if host:
            try:
                ipaddress.ip_address(host)
                errs.invalid(f"{path}.host", host, "must be a DNS name, not an IP address")
            except ValueError:
                errs.names(f"{path}.host", str(host).removeprefix("*."),
                           names.dns1123_subdomain)
        if rule.get("http") is not None:
            _ingress_paths(errs, f"{path}.http", rule["http"])
    if spec.get("ingressClassName"):
        errs.names("spec.ingressClassName", spec["ingressClassName"], names.dns1123_subdomain)


def _validate_ingressclass(errs: FieldErrors, obj: Obj) -> None:
    controller = _spec(obj).get("controller")
    if not controller:
        errs.required("spec.controller")
    elif isinstance(controller, str) and len(controller) > 250:
        errs.too_long("spec.controller", 250)


def _int_or_percent(errs: FieldErrors, path: str, value: Any) -> None:
    if isinstance(value, bool):
        errs.type_error(path, value, "an integer or a percentage")
    elif isinstance(value, int):
        if value < 0:
            errs.invalid(path, value, "must be greater than or equal to 0")
    elif isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        if int(value[:-1]) > 100:
            errs.invalid(path, value, "must not be greater than 100%")
    else:
        errs.invalid(path, value, "a valid percent string must be a numeric string followed by "
                     "an ending '%' (e.g. '1%',  or '93%', regex used for validation is "
                     "'[0-9]+%')")


def _validate_pdb(errs: FieldErrors, obj: Obj) -> None:
    spec = _spec(obj)
    low, high = spec.get("minAvailable"), spec.get("maxUnavailable")
    if low is not None and high is not None:
        errs.invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set")
    for key, value in (("minAvailable", low), ("maxUnavailable", high)):
        if value is not None:
            _int_or_percent(errs, f"spec.{key}", value)
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None:
        errs.one_of("spec.unhealthyPodEvictionPolicy", policy, ("IfHealthyBudget",
                                                                "AlwaysAllow"))
    errs.map_of("spec.selector", spec.get("selector"))


# The warning a create of each kind gets while knet stores it but does not act on it.
NOT_ENFORCED: dict[str, str] = {}   # NetworkPolicies are enforced by knet/policy on each node

CHECKS = {"networkpolicies": _validate_networkpolicy, "ingresses": _validate_ingress,
          "ingressclasses": _validate_ingressclass, "poddisruptionbudgets": _validate_pdb}


# ---- printers --------------------------------------------------------------------------

COLUMNS: dict[str, list[Column]] = {
    "ingresses": [_NAME,
                  ("Class", "string", 0, ("The name of the IngressClass resource for this "
                   "Ingress.")),
                  ("Hosts", "string", 0, ("Hosts that incoming requests are matched against "
                   "before the ingress rule")),
                  ("Address", "string", 0, ("Address is a list containing ingress points for "
                   "the load-balancer")),
                  ("Ports", "string", 0, "Ports of TLS configurations that open"), _AGE],
    "ingressclasses": [_NAME,
                       ("Controller", "string", 0, ("Controller that is responsible for "
                        "handling this class")),
                       ("Parameters", "string", 0, ("A reference to a resource with additional "
                        "parameters")), _AGE],
    "networkpolicies": [_NAME,
                        ("Pod-Selector", "string", 0, ("Selects the pods to which this "
                         "NetworkPolicy object applies.")), _AGE],
    "poddisruptionbudgets": [_NAME,
                             ("Min Available", "string", 0, ("The minimum number of pods that "
                              "must be available.")),
                             ("Max Unavailable", "string", 0, ("The maximum number of pods "
                              "that may be unavailable.")),
                             ("Allowed Disruptions", "integer", 0, ("Calculated number of "
                              "pods that may be disrupted at this time.")), _AGE],
}


def _name_age(obj: Obj, now: datetime) -> tuple[Any, str]:
    return p.dig(obj, "metadata", "name"), p.age(p.dig(obj, "metadata", "creationTimestamp"),
                                                  now)


def _ingress_cells(obj: Obj, now: datetime) -> list[Any]:
    spec = _spec(obj)
    hosts = [str(r["host"]) for r in _dicts(spec.get("rules")) if r.get("host")]
    shown = ",".join(hosts[:3]) + (f" + {len(hosts) - 3} more..." if len(hosts) > 3 else "")
    lb = p.dig(obj, "status", "loadBalancer", "ingress") or []
    address = ",".join(str(i.get("ip") or i.get("hostname") or "") for i in _dicts(lb))
    name, age = _name_age(obj, now)
    return [name, spec.get("ingressClassName") or p.NONE, shown or "*", address,
            "80, 443" if spec.get("tls") else "80", age]


def _ingressclass_cells(obj: Obj, now: datetime) -> list[Any]:
    spec = _spec(obj)
    params = spec.get("parameters")
    shown = p.NONE
    if isinstance(params, dict):
        group = f".{params['apiGroup']}" if params.get("apiGroup") else ""
        shown = f"{params.get('kind')}{group}/{params.get('name')}"
    name, age = _name_age(obj, now)
    return [name, spec.get("controller") or "", shown, age]


def _networkpolicy_cells(obj: Obj, now: datetime) -> list[Any]:
    name, age = _name_age(obj, now)
    return [name, p.selector_string(_spec(obj).get("podSelector") or {}), age]


def _pdb_cells(obj: Obj, now: datetime) -> list[Any]:
    spec = _spec(obj)
    name, age = _name_age(obj, now)
    low, high = spec.get("minAvailable"), spec.get("maxUnavailable")
    return [name, "N/A" if low is None else str(low), "N/A" if high is None else str(high),
            p.dig(obj, "status", "disruptionsAllowed") or 0, age]


PRINTERS = {"ingresses": _ingress_cells, "ingressclasses": _ingressclass_cells,
            "networkpolicies": _networkpolicy_cells, "poddisruptionbudgets": _pdb_cells}
