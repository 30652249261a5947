"""The cluster DNS record table: Kubernetes objects in, an immutable `Snapshot` of records out.

`ClusterRecords` keeps the Services and EndpointSlices it is told about (through the same
on_service_*/on_endpointslice_* handler methods the proxy uses) and builds a `Snapshot` on
demand after a change. A `Snapshot` is pure data: `lookup(name, qtype)` answers per the
Kubernetes DNS specification (schema 1.1.0) with no I/O, so it is testable without sockets,
and the server may memoise encoded answers on it because it never changes once built.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any

from dns.rcode import Rcode
from dns.rdatatype import RdataType as T
from dns.reversename import from_address

log = logging.getLogger(__name__)

Obj = dict[str, Any]
TTL = 5
SCHEMA_VERSION = "1.1.0"
_ADDR_TYPES = {4: T.A, 6: T.AAAA}


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record; `name` is absolute and lower case, `data` is the rdata text."""
    name: str
    rtype: T
    data: str
    ttl: int = TTL

    def __str__(self) -> str:
        return f"{self.name} {self.ttl} IN {self.rtype.name} {self.data}"


@dataclass(frozen=True, slots=True)
class Answer:
    """What the zone says about (name, qtype). `outside` means the name is not ours (forward
    it if an upstream is configured); then rcode is NXDOMAIN and authority holds our SOA."""
    rcode: Rcode
    answer: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    outside: bool = False


def _norm(name: str) -> str:
    name = name.lower()
    return name if name.endswith(".") else name + "."


def _addr_type(ip: str) -> T | None:
    try:
        return _ADDR_TYPES[ipaddress.ip_address(ip).version]
    except ValueError:
        return None


def _soa(zone: str, serial: int) -> Record:
    return Record(zone, T.SOA, f"ns.dns.{zone} hostmaster.{zone} {serial} 7200 1800 86400 {TTL}")


def _ptr_name(ip: str) -> str:
    return from_address(ip).to_text().lower()


@dataclass(frozen=True)
class Snapshot:
    """An immutable zone: records by owner name, plus the rules for synthesized names
    (pod A records, dns-version). `memo` is a cache the server fills; it never affects
    answers because the records never change."""
    zone: str
    names: dict[str, dict[T, tuple[Record, ...]]]
    serial: int = 1
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def soa(self) -> Record:
        return self.names[self.zone][T.SOA][0]

    def in_zone(self, name: str) -> bool:
        return name == self.zone or name.endswith("." + self.zone)

    def lookup(self, name: str, qtype: T | int) -> Answer:
        name, qtype = _norm(name), T(qtype)
        rrsets = self.names.get(name)
        if rrsets is None:
            rrsets = self._synthesize(name)
        if rrsets is None:
            ours = self.in_zone(name)
            return Answer(Rcode.NXDOMAIN, authority=(self.soa,) if ours else (),
                          outside=not ours)
        return self._answer(name, qtype, rrsets)

    def _answer(self, name: str, qtype: T, rrsets: dict[T, tuple[Record, ...]]) -> Answer:
        if qtype == T.ANY:
            found = tuple(r for rs in rrsets.values() for r in rs)
            return Answer(Rcode.NOERROR, found) if found else self._nodata()
        if qtype in rrsets:
            return Answer(Rcode.NOERROR, rrsets[qtype], additional=self._glue(rrsets[qtype]))
        if T.CNAME in rrsets:
            return self._chase(rrsets[T.CNAME], qtype)
        return self._nodata()

    def _nodata(self) -> Answer:
        return Answer(Rcode.NOERROR, authority=(self.soa,))

    def _glue(self, records: tuple[Record, ...]) -> tuple[Record, ...]:
        if not records or records[0].rtype != T.SRV:
            return ()
        targets = dict.fromkeys(r.data.rsplit(" ", 1)[1] for r in records)
        return tuple(a for t in targets for k in (T.A, T.AAAA)
                     for a in self.names.get(t, {}).get(k, ()))

    def _chase(self, cname: tuple[Record, ...], qtype: T) -> Answer:
        """ExternalName: the CNAME, followed inside our zone when the target is ours."""
        chain, target, seen = list(cname), cname[0].data, {cname[0].name}
        while self.in_zone(target) and target not in seen and len(chain) < 8:
            seen.add(target)
            rrsets = self.names.get(target) or self._synthesize(target) or {}
            if qtype in rrsets:
                chain.extend(rrsets[qtype])
                break
            if T.CNAME not in rrsets:
                break
            chain.extend(rrsets[T.CNAME])
            target = rrsets[T.CNAME][0].data
        return Answer(Rcode.NOERROR, tuple(chain))

    def _synthesize(self, name: str) -> dict[T, tuple[Record, ...]] | None:
        """`a-b-c-d.<ns>.pod.<zone>` (any namespace, like CoreDNS `pods insecure`) and
        `dns-version.<zone>`."""
        if name == f"dns-version.{self.zone}":
            return {T.TXT: (Record(name, T.TXT, f'"{SCHEMA_VERSION}"'),)}
        suffix = f".pod.{self.zone}"
        if not name.endswith(suffix):
            return None
        labels = name[: -len(suffix)].split(".")
        if len(labels) != 2 or not labels[1]:
            return None
        ip = labels[0].replace("-", ".")
        try:
            if ipaddress.ip_address(ip).version != 4:
                return None
        except ValueError:
            return None
        return {T.A: (Record(name, T.A, ip),)}


@dataclass(frozen=True, slots=True)
class _Endpoint:
    ip: str
    hostname: str | None
    ready: bool


@dataclass(frozen=True, slots=True)
class _Slice:
    service: str  # "ns/name"
    endpoints: tuple[_Endpoint, ...]
    ports: tuple[tuple[str, str, int], ...]  # (name, protocol, port)


def _slice_from(obj: Obj) -> _Slice | None:
    meta = obj.get("metadata") or {}
    svc = (meta.get("labels") or {}).get("kubernetes.io/service-name")
    if not svc:
        return None
    if obj.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
        return None
    eps = []
    for ep in obj.get("endpoints") or []:
        ready = (ep.get("conditions") or {}).get("ready")
        for ip in ep.get("addresses") or []:
            eps.append(_Endpoint(ip, ep.get("hostname") or None, ready is not False))
    ports = tuple((p.get("name") or "", (p.get("protocol") or "TCP").lower(), int(p["port"]))
                  for p in obj.get("ports") or [] if p.get("port") is not None)
    return _Slice(f"{meta.get('namespace', 'default')}/{svc}", tuple(eps), ports)


def _key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', 'default')}/{meta.get('name', '')}"


class _ZoneBuilder:
    """Turns services + slices into owner-name -> type -> records, with empty
    non-terminals, so that NODATA and NXDOMAIN can be told apart."""

    def __init__(self, zone: str) -> None:
        self.zone = zone
        self.names: dict[str, dict[T, list[Record]]] = {}

    def add(self, name: str, rtype: T, data: str) -> None:
        rs = self.names.setdefault(name, {}).setdefault(rtype, [])
        rec = Record(name, rtype, data)
        if rec not in rs:
            rs.append(rec)

    def service(self, svc: Obj, slices: list[_Slice]) -> None:
        meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        base = f"{meta.get('name')}.{meta.get('namespace', 'default')}.svc.{self.zone}".lower()
        if spec.get("type") == "ExternalName":
            if spec.get("externalName"):
                self.add(base, T.CNAME, _norm(spec["externalName"]))
            return
        self.names.setdefault(base, {})
        ips = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")])
               if ip and ip != "None"]
        if ips:
            self._cluster_ip(base, ips, spec)
        elif spec.get("clusterIP") == "None" or spec.get("clusterIPs") == ["None"]:
            publish = bool(spec.get("publishNotReadyAddresses"))
            self._headless(base, slices, publish)

    def _cluster_ip(self, base: str, ips: list[str], spec: Obj) -> None:
        for ip in ips:
            if (rtype := _addr_type(ip)) is not None:
                self.add(base, rtype, ip)
                self.add(_ptr_name(ip), T.PTR, base)
        for p in spec.get("ports") or []:
            if p.get("name"):
                proto = (p.get("protocol") or "TCP").lower()
                self.add(f"_{p['name']}._{proto}.{base}".lower(), T.SRV,
                         f"0 100 {int(p['port'])} {base}")

    def _headless(self, base: str, slices: list[_Slice], publish: bool) -> None:
        srv: dict[str, dict[str, None]] = {}
        for sl in slices:
            for ep in sl.endpoints:
                if not (ep.ready or publish) or (rtype := _addr_type(ep.ip)) is None:
                    continue
                host = (ep.hostname or ep.ip.replace(".", "-").replace(":", "-")).lower()
                target = f"{host}.{base}"
                self.add(base, rtype, ep.ip)
                self.add(target, rtype, ep.ip)
                if ep.hostname:
                    self.add(_ptr_name(ep.ip), T.PTR, target)
                for name, proto, port in sl.ports:
                    if name:
                        srv.setdefault(f"_{name}._{proto}.{base}".lower(), {})[
                            f"{port} {target}"] = None
        for owner, datas in srv.items():
            weight = max(1, 100 // len(datas))
            for d in datas:
                self.add(owner, T.SRV, f"0 {weight} {d}")

    def build(self, serial: int) -> Snapshot:
        self.names.setdefault(self.zone, {})[T.SOA] = []
        for name in list(self.names):
            parent = name
            while parent != self.zone and parent.endswith("." + self.zone):
                parent = parent.split(".", 1)[1]
                self.names.setdefault(parent, {})
        frozen = {n: {t: tuple(rs) for t, rs in v.items() if rs} for n, v in self.names.items()}
        frozen[self.zone][T.SOA] = (_soa(self.zone, serial),)
        return Snapshot(self.zone, frozen, serial)


class ClusterRecords:
    """The mutable side: handler methods record objects; `snapshot()` returns the current
    immutable Snapshot, rebuilt only when something changed since the last call."""

    def __init__(self, *, cluster_domain: str = "cluster.local") -> None:
        self.zone = _norm(cluster_domain)
        self._services: dict[str, Obj] = {}
        self._slices: dict[str, _Slice] = {}
        self._serial = 0
        self._current: Snapshot | None = None
        self.services_synced = False
        self.endpointslices_synced = False

    def __repr__(self) -> str:
        return (f"<ClusterRecords {self.zone} services={len(self._services)} "
                f"slices={len(self._slices)} serial={self._serial}>")

    @property
    def synced(self) -> bool:
        return self.services_synced and self.endpointslices_synced

    def snapshot(self) -> Snapshot:
        if self._current is None:
            self._serial += 1
            b = _ZoneBuilder(self.zone)
            by_svc: dict[str, list[_Slice]] = {}
            for sl in self._slices.values():
                by_svc.setdefault(sl.service, []).append(sl)
            for key, svc in sorted(self._services.items()):
                b.service(svc, by_svc.get(key, []))
            self._current = b.build(self._serial)
        return self._current

    def _changed(self) -> None:
        self._current = None

    # Service handlers
    def on_service_add(self, svc: Obj) -> None:
        self._services[_key(svc)] = svc
        self._changed()

    def on_service_update(self, old: Obj, new: Obj) -> None:
        self._services.pop(_key(old), None)
        self.on_service_add(new)

    def on_service_delete(self, svc: Obj) -> None:
        self._services.pop(_key(svc), None)
        self._changed()

    def on_service_synced(self) -> None:
        self.services_synced = True
        log.info("%s: services synced (%d)", self.zone, len(self._services))

    # EndpointSlice handlers
    def on_endpointslice_add(self, obj: Obj) -> None:
        sl = _slice_from(obj)
        if sl is None:
            self._slices.pop(_key(obj), None)
        else:
            self._slices[_key(obj)] = sl
        self._changed()

    def on_endpointslice_update(self, old: Obj, new: Obj) -> None:
        self._slices.pop(_key(old), None)
        self.on_endpointslice_add(new)

    def on_endpointslice_delete(self, obj: Obj) -> None:
        self._slices.pop(_key(obj), None)
        self._changed()

    def on_endpointslice_synced(self) -> None:
        self.endpointslices_synced = True
        log.info("%s: endpointslices synced (%d)", self.zone, len(self._slices))
