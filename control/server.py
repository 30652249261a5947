"""The `knet control` process: store + API server + controllers, until SIGTERM.

Order of start: open the store, build the app (the object layer rebuilds its allocations),
create the namespaces every cluster has and the `kubernetes` Service (10.96.0.1:443), start
listening over TLS (always on loopback, plus the --listen address; see control.api.tls),
write DIR/kubeconfig (with the cluster CA, DIR/ca.crt, as its authority), DIR/token
and DIR/control.pid (identities: DIR/tokens.csv, the static token file, and DIR/sa.key, the
service-account signing key, both 0600; see `settings`), then run the controller hooks
(`CONTROLLER_HOOKS`, each `async fn(client, *, clock, stop)`, imported only if present) on a
LocalClient, each restarted with back-off if it crashes (control.controllers.supervisor). SIGTERM or
SIGINT stops the controllers, cancels watch streams and closes the store.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import importlib
import ipaddress
import logging
import os
import secrets
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]
from aiohttp import web

from control.addresses import API_PORT, KUBERNETES_IP
from control.api import listen
from control.api.app import OBJECTS, Settings, create_app
from control.api.ca import ClusterCA
from control.api.local import LocalClient
from control.api.metricsapi import METRICS
from control.api.nodeproxy import KUBELET_TLS
from control.api.objects import ObjectService
from control.api.proxysub import POD_NETWORK
from control.api.saadmission import ServiceAccountAdmission
from control.api.tls import (
    ensure_certificate,
    ensure_client_certificates,
    kubelet_client_context,
    server_context,
)
from control.auth.rbacsetup import NodeRBAC
from control.auth.sakey import SigningKey
from control.auth.tokenfile import KUBE_PROXY, TOKENS_FILE, TokenFileAuthn, ensure_tokens
from control.auth.tokens import ADMIN
from control.clock import Clock, RealClock
from control.controllers.events import EventRecorder
from control.controllers.supervisor import Backoff, Supervisor
from control.errors import AlreadyExists
from control.store import open_store

log = logging.getLogger(__name__)

CONTROLLER_HOOKS = ("control.controllers.manager:run_all",)
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
AUTHZ_MODE_ENV = "KNET_AUTHORIZATION_MODE"
METRIC_RESOLUTION_ENV = "KNET_METRIC_RESOLUTION"  # seconds between kubelet metric scrapes
AUTHZ_MODES = ("Node,RBAC", "Authenticated")


@dataclass
class ServerConfig:
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = API_PORT
    store_url: str | None = None
    hooks: tuple[str, ...] = CONTROLLER_HOOKS
    extra: dict[str, Any] = field(default_factory=dict)
    # how the proxy subresources reach pod IPs (control.api.proxysub.PodNetwork); None: from
    # where the API server runs
    pod_network: Any = None
    # kube-apiserver's --authorization-mode: "Node,RBAC", or "Authenticated" (any
    # authenticated user may do anything: knet before RBAC, kept for benchmarks)
    authorization_mode: str = field(
        default_factory=lambda: os.environ.get(AUTHZ_MODE_ENV, "Node,RBAC"))

    @property
    def store(self) -> str:
        return self.store_url or f"sqlite:///{self.state_dir.resolve()}/state.db"

    @property
    def server_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT such as 127.0.0.1:6443")
    host = host.strip("[]") or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"--listen {text!r}: {host!r} is not an IP address") from None
    return host, int(port)


def listen_hosts(host: str) -> list[str]:
    """Loopback always; the --listen address too (a wildcard address covers loopback)."""
    if ipaddress.ip_address(host).is_unspecified:
        return [host]
    return ["127.0.0.1"] + ([host] if host != "127.0.0.1" else [])


def load_token(state_dir: Path) -> str:
    """The bearer token of this state dir: reused across restarts so agents keep working."""
    path = state_dir / "token"
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    _write_private(path, token + "\n")
    return token


PRIVATE_FILES = ("token", "kubeconfig", "tls.key", "state.db", "state.db-wal", "state.db-shm",
                 "state.db.lock")


def make_private(state_dir: Path) -> None:
    """State dir 0700, its secrets and database files 0600: also those an older knet made
    readable by everyone."""
    os.chmod(state_dir, 0o700)
    for name in PRIVATE_FILES:
        try:
            os.chmod(state_dir / name, 0o600)
        except FileNotFoundError:
            pass


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def kubeconfig(server: str, token: str, ca_pem: bytes) -> str:
    cluster = {"server": server,
               "certificate-authority-data": base64.b64encode(ca_pem).decode()}
    doc = {"apiVersion": "v1", "kind": "Config", "preferences": {},
           "clusters": [{"name": "knet", "cluster": cluster}],
           "users": [{"name": "knet-admin", "user": {"token": token}}],
           "contexts": [{"name": "knet", "context": {"cluster": "knet", "user": "knet-admin",
                                                     "namespace": "default"}}],
           "current-context": "knet"}
    return str(yaml.safe_dump(doc, sort_keys=False))


async def bootstrap(objects: ObjectService, *, host: str, port: int) -> None:
    """What every cluster has: the system namespaces, the `kubernetes` Service and, when the
    API server listens on an address pods can reach, its Endpoints and EndpointSlice (kept
    up to date across restarts with another address or port)."""
    for name in SYSTEM_NAMESPACES:
        with contextlib.suppress(AlreadyExists):
            await objects.create("namespaces", {"metadata": {"name": name}})
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "kubernetes", "namespace": "default",
                        "labels": {"component": "apiserver", "provider": "kubernetes"}},
           "spec": {"type": "ClusterIP", "clusterIP": KUBERNETES_IP,
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                               "targetPort": port}],
                    "sessionAffinity": "None"}}
    await objects.patch("services", "kubernetes", svc, patch_type="apply",
                        namespace="default", field_manager="kube-apiserver")
    ip = ipaddress.ip_address(host)
    if ip.is_loopback or ip.is_unspecified:
        return
    # like kube-apiserver: it writes the slice itself, so the mirroring controller must not
    endpoints = {"apiVersion": "v1", "kind": "Endpoints",
                 "metadata": {"name": "kubernetes", "namespace": "default", "labels": {
                     "endpointslice.kubernetes.io/skip-mirror": "true"}},
                 "subsets": [{"addresses": [{"ip": host}],
                              "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}
    await objects.patch("endpoints", "kubernetes", endpoints, patch_type="apply",
                        namespace="default", field_manager="kube-apiserver")
    slice_ = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
              "metadata": {"name": "kubernetes", "namespace": "default", "labels": {
                  "kubernetes.io/service-name": "kubernetes",
                  "endpointslice.kubernetes.io/managed-by": "kube-apiserver"}},
              "addressType": "IPv4",
              "endpoints": [{"addresses": [host], "conditions": {"ready": True}}],
              "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}
    await objects.patch("endpointslices", "kubernetes", slice_, patch_type="apply",
                        namespace="default", field_manager="kube-apiserver")


def settings(state: Path, token: str) -> Settings:
    """The API server's identities: the static token file (admin, kube-proxy, and the nodes
    `knet up` added), the service-account signing key, the ServiceAccount admission plugin."""
    tokens_path = state / TOKENS_FILE
    ensure_tokens(tokens_path, [ADMIN, KUBE_PROXY], admin_token=token)
    static = TokenFileAuthn(tokens_path, {token: ADMIN})   # re-read: nodes join and leave
    return Settings(token=token, authn=static, sa_key=SigningKey.load_or_create(state / "sa.key"),
                    plugins=(ServiceAccountAdmission(),), mesh_ca=ClusterCA.ensure(state),
                    metric_resolution=float(os.environ.get(METRIC_RESOLUTION_ENV) or 15))


async def _run_hooks(hooks: tuple[str, ...], client: LocalClient,
                     stop: asyncio.Event) -> list[asyncio.Task[None]]:
    tasks = []
    for spec in hooks:
        module_name, _, func_name = spec.partition(":")
        try:
            func = getattr(importlib.import_module(module_name), func_name)
        except (ImportError, AttributeError) as exc:
            log.warning("controllers: hook %s not available (%s); running the API server "
                        "without it", spec, exc)
            continue
        tasks.append(asyncio.create_task(_guard(spec, func, client, stop), name=spec))
        log.info("controllers: started %s", spec)
    return tasks


async def _guard(spec: str, func: Any, client: LocalClient, stop: asyncio.Event, *,
                 clock: Clock | None = None, backoff: Backoff | None = None) -> None:
    """Run the hook until stop; when it crashes, log the traceback, record a Warning Event
    and run it again with back-off (1 s doubling to 60 s) while the API server keeps serving."""
    clock = clock or RealClock()
    recorder = EventRecorder(client, component="kube-controller-manager", clock=clock)
    supervisor = Supervisor(clock=clock, stop=stop, recorder=recorder,
                            backoff=backoff or Backoff())
    await supervisor.run(spec, lambda: func(client, clock=clock, stop=stop))


def _app(store: Any, base: Settings, mode: str) -> web.Application:
    """The API app with `base` (identities) and the authorizers of `mode`."""
    if mode == "Authenticated":
        log.warning("authorization: every authenticated user may do anything (%s=%s)",
                    AUTHZ_MODE_ENV, mode)
        return create_app(store, base)
    if mode not in ("Node,RBAC", "RBAC,Node"):
        raise ValueError(f"authorization mode {mode!r} is not one knet has; use one of "
                         f"{', '.join(AUTHZ_MODES)} ({AUTHZ_MODE_ENV})")
    authz = NodeRBAC()
    app = create_app(store, dataclasses.replace(base, **authz.settings()))
    authz.install(app)
    return app


async def serve(config: ServerConfig, *, stop: asyncio.Event | None = None,
                on_ready: Callable[[str], None] | None = None) -> None:
    """Run until `stop` is set (or SIGTERM/SIGINT when running as the main loop)."""
    stop = stop or asyncio.Event()
    state = config.state_dir
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    make_private(state)
    token = load_token(state)
    store = open_store(config.store)
    app = _app(store, settings(state, token), config.authorization_mode)
    ensure_client_certificates(state)           # makes the cluster CA on first start
    app[KUBELET_TLS] = kubelet_client_context(state)
    if config.pod_network is not None:
        app[POD_NETWORK] = config.pod_network
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                           shutdown_timeout=5, **listen.HANDLER_ARGS)
    await runner.setup()
    servers: list[asyncio.AbstractServer] = []
    try:
        objects = app[OBJECTS]
        await bootstrap(objects, host=config.host, port=config.port)
        hosts = listen_hosts(config.host)
        # in-cluster clients reach it as https://10.96.0.1 (KUBERNETES_SERVICE_HOST)
        crt, key = ensure_certificate(state, [h for h in hosts
                                              if not ipaddress.ip_address(h).is_unspecified]
                                      + ["127.0.0.1", KUBERNETES_IP])
        tls = server_context(crt, key)
        for host in hosts:      # each connection under kube-apiserver's header timeout
            servers.append(await listen.listen(runner, host, config.port, ssl_context=tls))
        _write_private(state / "kubeconfig",
                       kubeconfig(config.server_url, token,
                                  ClusterCA.load(state).cert_pem))
        (state / "control.pid").write_text(f"{os.getpid()}\n")
        log.info("knet control: serving on %s (store %s)", ", ".join(
            f"{h}:{config.port}" for h in hosts), config.store)
        if on_ready:
            on_ready(config.server_url)
        tasks = await _run_hooks(config.hooks, LocalClient(objects, metrics=app[METRICS]), stop)
        await _wait_for_stop(stop)
        for task in tasks:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), 5)
            task.cancel()
    finally:
        stop.set()
        for server in servers:
            server.close()
        await runner.cleanup()
        await store.close()
        with contextlib.suppress(FileNotFoundError):
            (state / "control.pid").unlink()
        log.info("knet control: stopped")


async def _wait_for_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def run(config: ServerConfig, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Entry point: serve on uvloop until SIGTERM. Files made from here on are private."""
    import uvloop

    os.umask(0o077)
    uvloop.run(serve(config, on_ready=on_ready))
