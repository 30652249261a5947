"""North-south status: GatewayClass `knet`, Gateways of that class, Ingresses of class `knet`.

At start the controller ensures the GatewayClass `knet` (controllerName
`knet.dev/gateway-controller`) and the IngressClass `knet` exist, then keeps statuses level:
the class Accepted=True; each Gateway of the class gets `status.addresses` (the nodes'
InternalIPs: every node proxy serves the Gateway's listeners on its node address, reachable
from the host side over the underlay), Accepted/Programmed conditions, and per listener
Accepted/Programmed/ResolvedRefs, supportedKinds and attachedRoutes; each Ingress of class
`knet` gets `status.loadBalancer.ingress` (the same addresses). The node proxies serve the
traffic and write the HTTPRoutes' parent statuses (knet/mesh/northsouth.py).

The attachment rules (a parentRef selecting a listener, allowedRoutes namespaces, hostname
intersection) are pure functions here, shared with the node proxies' compiler so the
attachedRoutes count and the data path cannot disagree. Writes happen only on a difference.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import UTC
from typing import Any

from control.clientbase import Client, Obj
from control.clock import Clock
from control.controllers.base import Controller
from control.errors import AlreadyExists, ApiError, NotFound
from control.informer import Informer
from control.models.conditions import without_transition_times

__all__ = ["CLASS_NAME", "CONTROLLER_NAME", "GatewayController", "attaches", "hostname_match",
           "intersect", "listener_allows", "node_addresses"]

CLASS_NAME = "knet"
CONTROLLER_NAME = "knet.dev/gateway-controller"
GROUP = "gateway.networking.k8s.io"
INGRESS_DEFAULT_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"


def hostname_match(pattern: str, host: str) -> bool:
    """Does `host` fall under `pattern` (exact, or `*.suffix`: one or more labels before)?"""
    pattern, host = pattern.lower(), host.lower()
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return pattern == host


def intersect(listener: str | None, route: list[str]) -> list[str] | None:
    """The hostnames a route serves on a listener (Gateway API's intersection): [] means any
    host (neither side restricts), None means no intersection (the route does not attach)."""
    if not listener:
        return list(route)
    if not route:
        return [listener]
    out: list[str] = []
    for h in route:
        if hostname_match(listener, h):
            out.append(h)          # the route's host is as specific or more
        elif hostname_match(h, listener) or (h.startswith("*.") and listener.startswith("*.")
                                             and listener.endswith(h[1:])):
            out.append(listener)   # the listener's is the more specific
    out = list(dict.fromkeys(out))
    return out or None


def listener_allows(listener: Mapping[str, Any], gateway_ns: str, route_ns: str,
                    namespace_labels: Mapping[str, Mapping[str, str]]) -> bool:
    """allowedRoutes.namespaces.from: Same (default), All, or Selector (matchLabels)."""
    ns = ((listener.get("allowedRoutes") or {}).get("namespaces") or {})
    frm = ns.get("from") or "Same"
    if frm == "All":
        return True
    if frm == "Selector":
        want = ((ns.get("selector") or {}).get("matchLabels") or {})
        labels = namespace_labels.get(route_ns) or {}
        return all(labels.get(k) == v for k, v in want.items())
    return route_ns == gateway_ns


def _selects(ref: Mapping[str, Any], gw: Obj, route_ns: str) -> bool:
    md = gw.get("metadata") or {}
    return ((ref.get("group") or GROUP) == GROUP and (ref.get("kind") or "Gateway") == "Gateway"
            and ref.get("name") == md.get("name")
            and (ref.get("namespace") or route_ns) == md.get("namespace"))


def attaches(route: Obj, gw: Obj, *, namespace_labels: Mapping[str, Mapping[str, str]],
             ) -> tuple[dict[str, list[str]], str, str]:
    """Which listeners of Gateway `gw` the HTTPRoute attaches to, with the effective
    hostnames on each ({listener name: hostnames}), or why not: (reason, message)."""
    md = route.get("metadata") or {}
    rns = md.get("namespace") or "default"
    spec = route.get("spec") or {}
    hostnames = list(spec.get("hostnames") or [])
    gns = (gw.get("metadata") or {}).get("namespace") or "default"
    listeners = ((gw.get("spec") or {}).get("listeners") or [])
    out: dict[str, list[str]] = {}
    reason, message = "NoMatchingParent", "no parentRef selects a listener of this Gateway"
    for ref in spec.get("parentRefs") or []:
        if not _selects(ref, gw, rns):
            continue
        chosen = [lst for lst in listeners
                  if (ref.get("sectionName") in (None, lst.get("name")))
                  and (ref.get("port") in (None, lst.get("port")))]
        if not chosen:
            message = (f"Gateway {gns}/{(gw.get('metadata') or {}).get('name')} has no listener "
                       f"{ref.get('sectionName') or ''}{':' + str(ref['port']) if ref.get('port') else ''}")
            continue
        allowed = [lst for lst in chosen if listener_allows(lst, gns, rns, namespace_labels)]
        if not allowed:
            reason, message = ("NotAllowedByListeners",
                               f"the listeners do not allow routes from namespace {rns}")
            continue
        for lst in allowed:
            if str(lst.get("protocol", "")).upper() != "HTTP":
                continue
            hosts = intersect(lst.get("hostname"), hostnames)
            if hosts is not None:
                out[str(lst.get("name"))] = hosts
        if not out and reason != "NotAllowedByListeners":
            reason = "NoMatchingListenerHostname"
            message = f"no listener hostname intersects the route's hostnames {hostnames}"
    return out, ("Accepted" if out else reason), ("" if out else message)


def node_addresses(nodes: list[Obj]) -> list[str]:
    """The nodes' InternalIPs, sorted: where every node proxy serves the Gateways."""
    ips = {a.get("address") for n in nodes for a in (n.get("status") or {}).get("addresses") or []
           if a.get("type") == "InternalIP" and a.get("address")}
    return sorted(str(ip) for ip in ips)


def _cond(type_: str, ok: bool, reason: str, message: str, gen: int, now: str,
          old: list[Obj]) -> Obj:
    status = "True" if ok else "False"
    prev = next((c for c in old if c.get("type") == type_), None)
    when = prev.get("lastTransitionTime", now) if prev and prev.get("status") == status else now
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "observedGeneration": gen, "lastTransitionTime": when}


class GatewayController(Controller):
    """Keys: "gatewayclass/NAME", "gateway/NS/NAME", "ingress/NS/NAME"."""
    name = "gateway"

    def __init__(self, client: Client, *, clock: Clock, classes: Informer, gateways: Informer,
                 routes: Informer, ingresses: Informer, nodes: Informer,
                 namespaces: Informer) -> None:
        super().__init__(client, clock=clock, workers=1)
        self.classes, self.gateways, self.routes = classes, gateways, routes
        self.ingresses, self.nodes, self.namespaces = ingresses, nodes, namespaces
        classes.add_handler(on_add=self._key("gatewayclass"),
                            on_update=lambda _o, n: self._key("gatewayclass")(n))
        for inf, kind in ((gateways, "gateway"), (ingresses, "ingress")):
            enqueue = self._key(kind)
            inf.add_handler(on_add=enqueue, on_update=self._second(enqueue))
        routes.add_handler(on_add=self._all_gateways, on_update=lambda _o, n: self._all_gateways(n),
                           on_delete=self._all_gateways)
        nodes.add_handler(on_add=self._everything, on_update=self._node_changed,
                          on_delete=self._everything)

    def _key(self, kind: str) -> Callable[[Obj], None]:
        def enqueue(obj: Obj) -> None:
            md = obj.get("metadata") or {}
            ns = f"{md['namespace']}/" if md.get("namespace") else ""
            self.enqueue(f"{kind}/{ns}{md.get('name', '')}")
        return enqueue

    @staticmethod
    def _second(fn: Callable[[Obj], None]) -> Callable[[Obj, Obj], None]:
        return lambda _old, new: fn(new)

    def _all_gateways(self, _obj: Obj) -> None:
        for gw in self.gateways.list():
            self._key("gateway")(gw)

    def _everything(self, _obj: Obj) -> None:
        self._all_gateways(_obj)
        for ing in self.ingresses.list():
            self._key("ingress")(ing)

    def _node_changed(self, old: Obj, new: Obj) -> None:
        if node_addresses([old]) != node_addresses([new]):
            self._everything(new)

    async def run(self, stop: asyncio.Event) -> None:
        await self._ensure_classes()
        await super().run(stop)

    async def _ensure_classes(self) -> None:
        for resource, obj in (
                ("gatewayclasses", {"apiVersion": f"{GROUP}/v1", "kind": "GatewayClass",
                                    "metadata": {"name": CLASS_NAME},
                                    "spec": {"controllerName": CONTROLLER_NAME,
                                             "description": "knet's node proxies"}}),
                ("ingressclasses", {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                                    "metadata": {"name": CLASS_NAME},
                                    "spec": {"controller": CONTROLLER_NAME}})):
            try:
                await self.client.create(resource, obj)
                self.log.info("%s %s: created", resource, CLASS_NAME)
            except AlreadyExists:
                pass
            except ApiError as exc:
                self.log.warning("%s %s: not created (%s); north-south serving needs it",
                                 resource, CLASS_NAME, exc)

    def _ours(self, class_name: str | None) -> bool:
        gc = self.classes.get(class_name or "")
        return gc is not None and (gc.get("spec") or {}).get("controllerName") == CONTROLLER_NAME

    async def reconcile(self, key: str) -> None:
        kind, _, rest = key.partition("/")
        now = self.clock.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if kind == "gatewayclass":
            await self._class(rest, now)
        elif kind == "gateway":
            await self._gateway(rest, now)
        elif kind == "ingress":
            await self._ingress(rest)

    async def _patch_status(self, resource: str, obj: Obj, status: Obj) -> None:
        md = obj.get("metadata") or {}
        have = {k: (obj.get("status") or {}).get(k) for k in status}
        if without_transition_times(have) == without_transition_times(status):
            return
        try:
            await self.client.patch(resource, md["name"], {"status": status},
                                    namespace=md.get("namespace"), subresource="status")
        except NotFound:
            return

    async def _class(self, name: str, now: str) -> None:
        gc = self.classes.get(name)
        if gc is None or (gc.get("spec") or {}).get("controllerName") != CONTROLLER_NAME:
            return
        gen = int((gc.get("metadata") or {}).get("generation") or 1)
        old = (gc.get("status") or {}).get("conditions") or []
        await self._patch_status("gatewayclasses", gc, {"conditions": [
            _cond("Accepted", True, "Accepted", "served by knet's node proxies", gen, now, old)]})

    async def _gateway(self, key: str, now: str) -> None:
        gw = self.gateways.get(key)
        if gw is None or not self._ours((gw.get("spec") or {}).get("gatewayClassName")):
            return
        gen = int((gw.get("metadata") or {}).get("generation") or 1)
        status = gw.get("status") or {}
        addrs = node_addresses(self.nodes.list())
        labels = {(n.get("metadata") or {}).get("name", ""): (n.get("metadata") or {}).get(
            "labels") or {} for n in self.namespaces.list()}
        counts: dict[str, int] = {}
        for route in self.routes.list():
            got, _, _ = attaches(route, gw, namespace_labels=labels)
            for name in got:
                counts[name] = counts.get(name, 0) + 1
        old_listeners = {ls.get("name"): ls.get("conditions") or []
                         for ls in status.get("listeners") or []}
        listeners = []
        for lst in (gw.get("spec") or {}).get("listeners") or []:
            name = lst.get("name")
            old = old_listeners.get(name, [])
            ok = str(lst.get("protocol", "")).upper() == "HTTP"
            why = "" if ok else f"protocol {lst.get('protocol')} is not served (only HTTP)"
            listeners.append({
                "name": name, "attachedRoutes": counts.get(name, 0) if ok else 0,
                "supportedKinds": [{"group": GROUP, "kind": "HTTPRoute"}] if ok else [],
                "conditions": [
                    _cond("Accepted", ok, "Accepted" if ok else "UnsupportedProtocol",
                          why or "listener accepted", gen, now, old),
                    _cond("Programmed", ok, "Programmed" if ok else "Invalid",
                          why or f"served on port {lst.get('port')} of every node", gen, now,
                          old),
                    _cond("ResolvedRefs", True, "ResolvedRefs", "all references resolved",
                          gen, now, old)]})
        old = status.get("conditions") or []
        programmed = bool(addrs)
        await self._patch_status("gateways", gw, {
            "addresses": [{"type": "IPAddress", "value": ip} for ip in addrs],
            "conditions": [
                _cond("Accepted", True, "Accepted", "accepted by knet", gen, now, old),
                _cond("Programmed", programmed, "Programmed" if programmed else "AddressNotAssigned",
                      "served by every node proxy on its node address" if programmed
                      else "no node has an InternalIP yet", gen, now, old)],
            "listeners": listeners})

    async def _ingress(self, key: str) -> None:
        ing = self.ingresses.get(key)
        if ing is None:
            return
        cls = (ing.get("spec") or {}).get("ingressClassName")
        if cls != CLASS_NAME:
            return
        addrs = node_addresses(self.nodes.list())
        await self._patch_status("ingresses", ing, {
            "loadBalancer": {"ingress": [{"ip": ip} for ip in addrs]}})
