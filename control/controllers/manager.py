"""The controller manager: every controller and the scheduler in one process, sharing one
informer per resource.

How `knet control` (control/server.py) runs it, once the API is serving:

    from control.clock import RealClock
    from control.controllers.manager import ControllerOptions, run_all
    stop = asyncio.Event()
    task = asyncio.create_task(run_all(LocalClient(objects), clock=RealClock(), stop=stop,
                                       options=ControllerOptions()))
    ...
    stop.set(); await task          # returns after every controller and informer stopped

`options=None` means `ControllerOptions.from_env()`: defaults, overridden by the environment of
`knet control` (KNET_NODE_MONITOR_GRACE, KNET_POD_EVICTION_GRACE, KNET_NODE_MONITOR_PERIOD:
seconds; KNET_JOB_BACKOFF: a failed Job pod's first back-off; KNET_HPA_SYNC_PERIOD: the
HPA's sync period; KNET_LB_POOL: the LoadBalancer address pool; KNET_CONTROLLERS:
comma-separated subset). `ControllerOptions.controllers` picks
controllers by name (tests use it). run_all raises only if an informer cannot sync within
`sync_timeout`.

Each controller runs as its own supervised task (control/controllers/supervisor.py): one that
crashes is logged with its traceback, reported as a Warning Event `ControllerCrashed`, and
built again and restarted with back-off, while the others keep running. A rebuilt controller
gets every cached object replayed by the shared informers (a full resync, as after a
controller-manager restart); the crashed one's handlers are detached first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from control.addresses import LB_POOL
from control.clientbase import Client, Obj
from control.clock import Clock
from control.controllers.events import EventRecorder
from control.controllers.supervisor import Backoff, Supervisor
from control.informer import Informer

__all__ = ["ALL_CONTROLLERS", "ControllerOptions", "InformerFactory", "build", "build_one",
           "run_all"]

log = logging.getLogger(__name__)

ALL_CONTROLLERS = ("replicaset", "replicationcontroller", "deployment", "endpoints",
                   "endpointslice", "endpointslicemirroring", "garbagecollector", "namespace",
                   "nodelifecycle", "tainteviction", "scheduler", "serviceaccount", "job",
                   "cronjob", "daemonset", "disruption", "statefulset",
                   "persistentvolume-binder", "pvc-protection", "gateway",
                   "horizontalpodautoscaling", "loadbalancer")


@dataclass
class ControllerOptions:
    controllers: tuple[str, ...] = ALL_CONTROLLERS
    node_monitor_grace: float = 40.0      # Lease not renewed this long -> node NotReady
    pod_eviction_grace: float = 5.0       # then pods on it are evicted after this long
    node_monitor_period: float = 1.0
    job_backoff: float = 10.0             # a failed Job pod's first back-off (doubling to 6 min)
    hpa_sync_period: float = 15.0         # --horizontal-pod-autoscaler-sync-period
    lb_pool: str = LB_POOL                # LoadBalancer addresses (KNET_LB_POOL, knet up --lb-pool)
    workers: int = 2
    sync_timeout: float = 30.0
    restart: Backoff = field(default_factory=Backoff)   # a crashed controller's back-off
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ControllerOptions:
        env = os.environ if environ is None else environ
        out = cls()
        for var, attr in (("KNET_NODE_MONITOR_GRACE", "node_monitor_grace"),
                          ("KNET_POD_EVICTION_GRACE", "pod_eviction_grace"),
                          ("KNET_NODE_MONITOR_PERIOD", "node_monitor_period"),
                          ("KNET_JOB_BACKOFF", "job_backoff"),
                          ("KNET_HPA_SYNC_PERIOD", "hpa_sync_period")):
            if env.get(var):
                try:
                    setattr(out, attr, float(env[var]))
                except ValueError:
                    raise ValueError(f"{var}={env[var]!r}: expected a number of seconds, "
                                     "e.g. 40") from None
        if env.get("KNET_LB_POOL"):
            out.lb_pool = env["KNET_LB_POOL"]
        if env.get("KNET_CONTROLLERS"):
            names = tuple(n.strip() for n in env["KNET_CONTROLLERS"].split(",") if n.strip())
            unknown = sorted(set(names) - set(ALL_CONTROLLERS))
            if unknown:
                raise ValueError(f"KNET_CONTROLLERS: unknown {', '.join(unknown)}; known: "
                                 + ", ".join(ALL_CONTROLLERS))
            out.controllers = names
        return out


class Runnable(Protocol):
    name: str

    async def run(self, stop: asyncio.Event) -> None: ...


class _Fns:
    def __init__(self, **fns: Callable[..., Any] | None) -> None:
        self.fns = fns


class _Gate:
    """One controller's handler on a shared informer, until the controller is retired."""

    def __init__(self, owner: str, target: Any) -> None:
        self.owner, self.target = owner, target

    def _call(self, method: str, *args: Any) -> Any:
        t = self.target
        if t is None:
            return None
        fn = t.fns.get(method) if isinstance(t, _Fns) else getattr(t, method, None)
        return fn(*args) if fn is not None else None

    def on_add(self, obj: Obj) -> Any:
        return self._call("on_add", obj)

    def on_update(self, old: Obj, new: Obj) -> Any:
        return self._call("on_update", old, new)

    def on_delete(self, obj: Obj) -> Any:
        return self._call("on_delete", obj)

    def on_synced(self) -> Any:
        return self._call("on_synced")


class _SharedInformer(Informer):
    """An Informer whose handlers are tagged with the controller that added them, so that a
    crashed controller's handlers can be detached before it is built again."""

    def __init__(self, factory: InformerFactory, resource: str, *,
                 namespace: str | None) -> None:
        super().__init__(factory.client, resource, namespace=namespace)
        self._factory = factory
        self._gates: list[_Gate] = []

    def add_handler(self, handler: Any = None, *, on_add: Callable[[Obj], Any] | None = None,
                    on_update: Callable[[Obj, Obj], Any] | None = None,
                    on_delete: Callable[[Obj], Any] | None = None,
                    on_synced: Callable[[], Any] | None = None) -> None:
        target = handler if handler is not None else _Fns(
            on_add=on_add, on_update=on_update, on_delete=on_delete, on_synced=on_synced)
        gate = _Gate(self._factory.owner, target)
        self._gates.append(gate)
        super().add_handler(gate)

    def retire(self, owner: str) -> None:
        for gate in [g for g in self._gates if g.owner == owner]:
            gate.target = None
            self._gates.remove(gate)
            with contextlib.suppress(ValueError):
                self._handlers.remove(gate)


class InformerFactory:
    """One shared Informer per (resource, namespace); all started together."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._informers: dict[tuple[str, str | None], _SharedInformer] = {}
        self.owner = ""     # the controller being built: its handlers are tagged with it

    def get(self, resource: str, *, namespace: str | None = None) -> Informer:
        key = (resource, namespace)
        if key not in self._informers:
            self._informers[key] = _SharedInformer(self, resource, namespace=namespace)
        return self._informers[key]

    @contextlib.contextmanager
    def building(self, owner: str) -> Iterator[None]:
        """Tag the handlers added meanwhile with `owner` (see retire)."""
        self.owner = owner
        try:
            yield
        finally:
            self.owner = ""

    def retire(self, owner: str) -> None:
        """Detach every handler `owner` added: its events go nowhere from now on."""
        for inf in self._informers.values():
            inf.retire(owner)

    def all(self) -> list[Informer]:
        return list(self._informers.values())

    async def start_and_sync(self, timeout: float) -> None:
        for inf in self._informers.values():
            inf.start()
        await asyncio.gather(*(inf.wait_synced(timeout) for inf in self._informers.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(inf.stop() for inf in self._informers.values()))


def build(client: Client, *, clock: Clock, informers: InformerFactory,
          options: ControllerOptions) -> list[Runnable]:
    """Construct the chosen controllers (registering their informer handlers)."""
    from control.controllers.deployment import DeploymentController
    from control.controllers.replicaset import ReplicaSetController

    def recorder(component: str) -> EventRecorder:
        return EventRecorder(client, component=component, clock=clock)

    out: list[Runnable] = []
    chosen = set(options.controllers)
    pods = informers.get("pods")
    if "replicaset" in chosen:
        out.append(ReplicaSetController(
            client, clock=clock, recorder=recorder("replicaset-controller"), pods=pods,
            owners=informers.get("replicasets"), workers=options.workers))
    if "replicationcontroller" in chosen:
        out.append(ReplicaSetController(
            client, clock=clock, recorder=recorder("replication-controller"), pods=pods,
            owners=informers.get("replicationcontrollers"), kind="ReplicationController",
            workers=options.workers))
    if "deployment" in chosen:
        out.append(DeploymentController(
            client, clock=clock, recorder=recorder("deployment-controller"),
            deployments=informers.get("deployments"), replicasets=informers.get("replicasets"),
            pods=pods, workers=options.workers))
    out.extend(_build_more(client, clock=clock, informers=informers, options=options,
                           recorder=recorder))
    from control.controllers.batch import build_batch
    out.extend(build_batch(client, clock=clock, informers=informers, options=options,
                           recorder=recorder))
    from control.controllers.storagebuild import build_storage  # StatefulSet, PV, PVC
    out.extend(build_storage(client, clock=clock, informers=informers, chosen=chosen,
                             recorder=recorder, workers=options.workers))
    if "horizontalpodautoscaling" in chosen:
        from control.controllers.hpa import build_hpa
        out.append(build_hpa(client, clock=clock, informers=informers,
                             recorder=recorder("horizontal-pod-autoscaler"),
                             sync_period=options.hpa_sync_period))
    return out


def _build_more(client: Client, *, clock: Clock, informers: InformerFactory,
                options: ControllerOptions,
                recorder: Callable[[str], EventRecorder]) -> list[Runnable]:
    from control.controllers.endpoints import EndpointsController
    from control.controllers.endpointslice import EndpointSliceController
    from control.controllers.garbagecollector import GC_RESOURCES, GarbageCollector
    from control.controllers.mirroring import EndpointSliceMirroringController
    from control.controllers.namespace import NamespaceController
    from control.controllers.nodelifecycle import NodeLifecycleController
    from control.controllers.serviceaccount import ServiceAccountsController
    from control.controllers.tainteviction import TaintEvictionController
    from control.scheduler import Scheduler

    chosen = set(options.controllers)
    out: list[Runnable] = []
    pods, services = informers.get("pods"), informers.get("services")
    if "endpoints" in chosen:
        out.append(EndpointsController(client, clock=clock, services=services, pods=pods,
                                       endpoints=informers.get("endpoints"),
                                       workers=options.workers))
    if "endpointslice" in chosen:
        out.append(EndpointSliceController(client, clock=clock, services=services, pods=pods,
                                           slices=informers.get("endpointslices"),
                                           workers=options.workers))
    if "endpointslicemirroring" in chosen:
        out.append(EndpointSliceMirroringController(
            client, clock=clock, services=services, endpoints=informers.get("endpoints"),
            slices=informers.get("endpointslices")))
    if "garbagecollector" in chosen:
        registry = getattr(getattr(client, "objects", None), "registry", None)  # LocalClient
        out.append(GarbageCollector(client, clock=clock, workers=options.workers,
                                    informers={r: informers.get(r) for r in GC_RESOURCES},
                                    **({"kinds": registry.by_kind} if registry else {})))
    if "namespace" in chosen:
        out.append(NamespaceController(client, clock=clock,
                                       namespaces=informers.get("namespaces")))
    if "serviceaccount" in chosen:
        out.append(ServiceAccountsController(client, clock=clock,
                                             namespaces=informers.get("namespaces"),
                                             accounts=informers.get("serviceaccounts")))
    if "nodelifecycle" in chosen:
        out.append(NodeLifecycleController(
            client, clock=clock, recorder=recorder("node-controller"),
            nodes=informers.get("nodes"), leases=informers.get("leases"), pods=pods,
            grace=options.node_monitor_grace, eviction_grace=options.pod_eviction_grace,
            period=options.node_monitor_period))
    if "tainteviction" in chosen:
        out.append(TaintEvictionController(client, clock=clock,
                                           recorder=recorder("taint-eviction-controller"),
                                           nodes=informers.get("nodes"), pods=pods))
    if "daemonset" in chosen or "disruption" in chosen:
        from control.controllers.daemonset_wiring import build_daemon_controllers
        out += build_daemon_controllers(client, clock=clock, informers=informers,
                                        chosen=chosen, recorder=recorder)
    if "gateway" in chosen:  # north-south status (GatewayClass/Gateway/Ingress of class knet)
        from control.controllers.gateway import GatewayController
        out.append(GatewayController(
            client, clock=clock, classes=informers.get("gatewayclasses"),
            gateways=informers.get("gateways"), routes=informers.get("httproutes"),
            ingresses=informers.get("ingresses"), nodes=informers.get("nodes"),
            namespaces=informers.get("namespaces")))
    if "loadbalancer" in chosen:  # LoadBalancer Services: addresses, announcing node
        from control.controllers.loadbalancer import LoadBalancerController
        out.append(LoadBalancerController(
            client, clock=clock, recorder=recorder("loadbalancer-controller"),
            services=services, nodes=informers.get("nodes"),
            slices=informers.get("endpointslices"), pool=options.lb_pool))
    if "scheduler" in chosen:
        out.append(Scheduler(client, clock=clock, recorder=recorder("default-scheduler"),
                             pods=pods, nodes=informers.get("nodes"), storage=(
                                 informers.get("persistentvolumeclaims"),
                                 informers.get("persistentvolumes"),
                                 informers.get("storageclasses"))))
    return out


def build_one(client: Client, name: str, *, clock: Clock, informers: InformerFactory,
              options: ControllerOptions) -> list[Runnable]:
    """The controller chosen by `name` (one of ALL_CONTROLLERS), its handlers tagged."""
    with informers.building(name):
        return build(client, clock=clock, informers=informers,
                     options=replace(options, controllers=(name,)))


async def run_all(client: Client, *, clock: Clock, stop: asyncio.Event,
                  options: ControllerOptions | None = None) -> None:
    """Run every chosen controller (and the scheduler) until `stop` is set; one that crashes
    is restarted with back-off (see module docstring)."""
    options = options or ControllerOptions.from_env()
    informers = InformerFactory(client)
    first = {name: build_one(client, name, clock=clock, informers=informers, options=options)
             for name in options.controllers}
    supervisor = Supervisor(clock=clock, stop=stop, backoff=options.restart,
                            recorder=EventRecorder(client, component="kube-controller-manager",
                                                   clock=clock))

    def starter(name: str) -> Callable[[], Any]:
        async def start() -> None:
            runnables = first.pop(name, None)
            if runnables is None:   # a restart: a fresh controller on the shared informers
                informers.retire(name)
                runnables = build_one(client, name, clock=clock, informers=informers,
                                      options=options)
            if not runnables:
                await stop.wait()
            await asyncio.gather(*(r.run(stop) for r in runnables))
        return start

    try:
        await informers.start_and_sync(options.sync_timeout)
        log.info("controllers: %s running", ", ".join(options.controllers))
        tasks = [asyncio.create_task(supervisor.run(name, starter(name)),
                                     name=f"controller-{name}")
                 for name in options.controllers]
        try:
            await stop.wait()
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await informers.stop()
