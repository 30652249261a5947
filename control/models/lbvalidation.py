"""Validation of a Service's load-balancer fields, in kube-apiserver's words (ValidateService
and validateServiceExternalTrafficPolicy): `loadBalancerSourceRanges` (CIDRs, space-padding
allowed, only for type LoadBalancer; the field path keeps upstream's historical capital L),
the legacy `service.beta.kubernetes.io/load-balancer-source-ranges` annotation,
`allocateLoadBalancerNodePorts` and `loadBalancerClass` only for LoadBalancer,
`healthCheckNodePort` only for LoadBalancer with `externalTrafficPolicy: Local`, and
`loadBalancerIP` an IP address.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from control.models.fielderrors import FieldErrors

__all__ = ["SOURCE_RANGES_ANNOTATION", "needs_health_check", "source_ranges",
           "validate_load_balancer"]

Obj = dict[str, Any]
SOURCE_RANGES_ANNOTATION = "service.beta.kubernetes.io/load-balancer-source-ranges"
_ONLY_LB = "may only be used when `type` is 'LoadBalancer'"
_CIDR = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"


def needs_health_check(spec: Obj) -> bool:
    """kube-apiserver's NeedsHealthCheck: a LoadBalancer whose external traffic stays local."""
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def _cidr(value: Any) -> bool:
    """Go's ParseCIDR: an address, a slash and a prefix length (host bits may be set)."""
    if not isinstance(value, str) or "/" not in value:
        return False
    try:
        ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return False
    return True


def source_ranges(svc: Obj) -> list[str]:
    """The ranges allowed to reach a LoadBalancer: the field, else the legacy annotation."""
    spec = svc.get("spec") or {}
    ranges = [str(r).strip() for r in spec.get("loadBalancerSourceRanges") or []]
    if not ranges:
        ann = ((svc.get("metadata") or {}).get("annotations") or {}).get(
            SOURCE_RANGES_ANNOTATION) or ""
        ranges = [r.strip() for r in str(ann).split(",") if r.strip()]
    return ranges


def validate_load_balancer(errs: FieldErrors, obj: Obj, kind: str) -> None:
    spec = obj.get("spec") or {}
    meta = obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    annotations = annotations if isinstance(annotations, dict) else {}
    ranges = spec.get("loadBalancerSourceRanges")
    if ranges:
        path = "spec.LoadBalancerSourceRanges"
        if kind != "LoadBalancer":
            errs.forbidden(path, _ONLY_LB)
        for i, value in enumerate(errs.list_of("spec.loadBalancerSourceRanges", ranges)):
            if not _cidr(value):
                errs.invalid(f"{path}[{i}]", value.strip() if isinstance(value, str) else value,
                             _CIDR)
    elif SOURCE_RANGES_ANNOTATION in annotations:
        path = f"metadata.annotations[{SOURCE_RANGES_ANNOTATION}]"
        if kind != "LoadBalancer":
            errs.forbidden(path, _ONLY_LB)
        for value in str(annotations[SOURCE_RANGES_ANNOTATION]).strip().split(","):
            if value.strip() and not _cidr(value):
                errs.invalid(path, value.strip(), _CIDR)
    for key in ("allocateLoadBalancerNodePorts", "loadBalancerClass"):
        if spec.get(key) is not None and kind != "LoadBalancer":
            errs.forbidden(f"spec.{key}", _ONLY_LB)
    hc = spec.get("healthCheckNodePort")
    if hc and not needs_health_check(spec):
        errs.invalid("spec.healthCheckNodePort", hc, "may only be set when `type` is "
                     "'LoadBalancer' and `externalTrafficPolicy` is 'Local'")
    elif hc:
        errs.int_range("spec.healthCheckNodePort", hc, 1, 65535)
    ip = spec.get("loadBalancerIP")
    if ip:
        try:
            ipaddress.ip_address(str(ip))
        except ValueError:
            errs.invalid("spec.loadBalancerIP", ip,
                         "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
