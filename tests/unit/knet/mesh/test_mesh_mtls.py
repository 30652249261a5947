"""The mesh's mTLS hop on loopback, without namespaces: the CA endpoint signs a node-made CSR
for the pod's ServiceAccount only, a PodGuard dials the server side (inbound.py) with the
client workload's certificate, the server reads the verified identity and applies
AuthorizationPolicies at L4 (a denial is a reset), and a peer with a wrong identity or no
certificate is refused."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from control.api.ca import ClusterCA, Identity
from control.api.meshca import workload_certificates
from control.api.reviews import ReviewContext
from control.auth.types import UserInfo
from control.errors import Invalid
from control.models.meshsecurity import AuthorizationPolicy
from knet.dataplane.meshredirect import NftRedirect
from knet.dataplane.nft import FakeNft
from knet.mesh.certs import LocalSigner, WorkloadCert, issue, spiffe_of
from knet.mesh.direct import DirectPods
from knet.mesh.guard import HBONE_PORT, PodGuard, Security, Workload
from knet.mesh.inbound import Inbound
from knet.proxy.balancer import Endpoint, LoadBalancer, SystemClock
from knet.proxy.flows import FlowRing
from knet.proxy.sockets import SocketMaker
from knet.proxy.tcp import ProxyContext

SERVER_IP = "127.0.0.61"


class _Pods:
    async def get(self, resource: str, name: str, *, namespace: str | None = None) -> Any:
        return {"metadata": {"name": name, "namespace": namespace},
                "spec": {"serviceAccountName": "httpbin"}}


async def test_ca_endpoint_signs_for_the_pods_account(tmp_path: Path) -> None:
    ca = ClusterCA.ensure(tmp_path)
    wc = WorkloadCert("foo/httpbin-1")

    class ApiLike:
        async def sign(self, *, namespace: str, pod: str, csr_pem: bytes, seconds: int) -> Any:
            from knet.mesh.certs import Signed
            ctx = ReviewContext(UserInfo("system:kube-proxy"), _Pods(), namespace)  # type: ignore[arg-type]
            st = await workload_certificates(ca)(ctx, {"spec": {
                "pod": pod, "request": csr_pem.decode(), "expirationSeconds": seconds}})
            return Signed(st["identity"], st["certificate"].encode(),
                          st["caCertificate"].encode())

    await issue(ApiLike(), wc, seconds=3600)
    assert wc.identity == "spiffe://cluster.local/ns/foo/sa/httpbin"
    assert 3500 < wc.not_after - wc.not_before < 3700
    assert not wc.due(wc.not_before + 1700) and wc.due(wc.not_before + 1900)  # half life
    ctx = ReviewContext(UserInfo("system:kube-proxy"), _Pods(), "foo")  # type: ignore[arg-type]
    with pytest.raises(Invalid) as exc:
        await workload_certificates(ca)(ctx, {"spec": {"pod": "x", "request": "junk"}})
    assert exc.value.causes[0].field == "spec.request"
    with pytest.raises(Invalid) as exc:
        await workload_certificates(ca)(ctx, {"spec": {"pod": "x", "request": "a",
                                                       "expirationSeconds": 5}})
    assert exc.value.causes[0].field == "spec.expirationSeconds"


async def _echo(ip: str) -> tuple[asyncio.AbstractServer, int]:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(65536):
            w.write(data)
        w.close()
    server = await asyncio.start_server(handle, ip, 0)
    return server, server.sockets[0].getsockname()[1]


class _Upstream(asyncio.Protocol):
    def __init__(self) -> None:
        self.got = b""
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.got += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


@pytest.fixture
async def world(tmp_path: Path) -> Any:
    ca = ClusterCA.ensure(tmp_path)
    signer = LocalSigner(ca, {"foo/sleep": "sleep", "foo/httpbin": "httpbin",
                              "bar/sleep": "sleep"})
    certs = {}
    for key in ("foo/sleep", "foo/httpbin", "bar/sleep"):
        certs[key] = WorkloadCert(key)
        await issue(signer, certs[key], seconds=3600)
    httpbin = Workload("foo", "httpbin", SERVER_IP, "node-2", "httpbin", {"app": "httpbin"},
                       True)
    state = {"sec": Security({SERVER_IP: httpbin})}
    ring = FlowRing()
    sockets = SocketMaker(None)
    server = await asyncio.get_running_loop().create_server(
        lambda: Inbound(node="node-2", workload=httpbin, world=lambda: state["sec"],
                        sockets=sockets, ring=ring, identity=certs["foo/httpbin"].identity),
        SERVER_IP, HBONE_PORT, ssl=certs["foo/httpbin"].server, reuse_address=True)
    echo, port = await _echo(SERVER_IP)
    yield certs, state, ring, port
    server.close()
    echo.close()
    sockets.close()


async def _hop(guard: PodGuard, port: int) -> _Upstream:
    ep = Endpoint(SERVER_IP, port, "foo/httpbin")
    sock = socket.socket()
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, guard.target(ep))
    t, p = await guard.wrap(_Upstream, sock, ep)
    t.write(b"GET /secret-path HTTP/1.1\r\n\r\n")
    await asyncio.sleep(0.2)
    t.close()
    return p  # type: ignore[return-value]


async def test_mtls_hop_carries_the_verified_identity(world: Any) -> None:
    certs, state, ring, port = world
    guard = PodGuard(lambda: state["sec"], certs["foo/sleep"])
    assert guard.target(Endpoint(SERVER_IP, port)) == (SERVER_IP, HBONE_PORT)
    up = await _hop(guard, port)
    assert up.got == b"GET /secret-path HTTP/1.1\r\n\r\n"      # through TLS and back
    await asyncio.sleep(0.1)
    rec = ring.records()[-1]
    assert (rec.mtls, rec.port_name, rec.endpoint_port) == (True, "hbone", port)
    assert rec.source_identity == "spiffe://cluster.local/ns/foo/sa/sleep"
    assert rec.destination_identity == "spiffe://cluster.local/ns/foo/sa/httpbin"


async def test_l4_policy_resets_a_denied_identity(world: Any) -> None:
    certs, state, ring, port = world
    policy = AuthorizationPolicy.model_validate({
        "metadata": {"name": "only-foo", "namespace": "foo"},
        "spec": {"selector": {"matchLabels": {"app": "httpbin"}},
                 "rules": [{"from": [{"source": {"namespaces": ["foo"]}}]}]}})
    state["sec"] = Security(state["sec"].by_ip, (), (policy,))
    up = await _hop(PodGuard(lambda: state["sec"], certs["bar/sleep"]), port)
    assert up.got == b""
    await asyncio.sleep(0.1)
    rec = ring.records()[-1]
    assert (rec.verdict, rec.authz, rec.authz_policy) == ("REFUSED", "DENY", "foo/only-foo")
    assert rec.source_identity == "spiffe://cluster.local/ns/bar/sa/sleep"
    up = await _hop(PodGuard(lambda: state["sec"], certs["foo/sleep"]), port)
    assert up.got.startswith(b"GET /secret-path")


async def test_wrong_server_identity_and_missing_client_cert_are_refused(world: Any) -> None:
    certs, _, _, port = world
    impostor = Workload("foo", "httpbin", SERVER_IP, "node-2", "other", {}, True)
    guard = PodGuard(lambda: Security({SERVER_IP: impostor}), certs["foo/sleep"])
    with pytest.raises(ConnectionRefusedError, match="expected spiffe://cluster.local/ns/foo/"
                       "sa/other"):
        await _hop(guard, port)
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.check_hostname, anonymous.verify_mode = False, ssl.CERT_NONE
    r, w = await asyncio.open_connection(SERVER_IP, HBONE_PORT, ssl=anonymous)
    w.write(b"CONNECT %s:%d HTTP/1.1\r\n\r\n" % (SERVER_IP.encode(), port))
    with pytest.raises((ConnectionError, ssl.SSLError, asyncio.IncompleteReadError)):
        got = await asyncio.wait_for(r.read(100), 2)
        if not got:
            raise ConnectionError("closed")


def test_spiffe_of_reads_the_uri_san(tmp_path: Path) -> None:
    ca = ClusterCA.ensure(tmp_path)
    pem, _ = ca.issue(Identity("x"), client=True)
    der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    assert spiffe_of(der) is None and spiffe_of(None) is None


async def test_a_renewed_certificate_serves_new_hops_and_old_ones_carry_on(world: Any,
                                                                           tmp_path: Path) -> None:
    certs, state, _, port = world
    client = certs["foo/sleep"]
    guard = PodGuard(lambda: state["sec"], client)
    ep = Endpoint(SERVER_IP, port, "foo/httpbin")
    sock = socket.socket()
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, guard.target(ep))
    old_t, old_p = await guard.wrap(_Upstream, sock, ep)
    serial = client.serial
    signer = LocalSigner(ClusterCA.ensure(tmp_path), {"foo/sleep": "sleep"})
    await issue(signer, client, seconds=3600)            # the half-life renewal
    assert client.serial != serial and client.identity.endswith("/sa/sleep")
    up = await _hop(guard, port)                          # a new handshake, the new cert
    assert up.got.startswith(b"GET /secret-path")
    old_t.write(b"still here")                            # the old connection carries on
    await asyncio.sleep(0.2)
    assert old_p.got == b"still here"
    old_t.close()


async def test_pod_ip_destination_goes_over_the_same_mtls_hop(world: Any) -> None:
    """A meshed pod's connection to a pod IP (direct.py): served as a one-endpoint port by
    the pod's TcpListener and PodGuard, so it is HBONE in mutual TLS with both identities
    in its flow record; a pod IP outside the mesh is dialled in plaintext."""
    certs, state, ring, port = world
    ctx = ProxyContext(node="node-1", balancer=LoadBalancer(clock=SystemClock()), ring=ring,
                       sockets=SocketMaker(None),
                       guard=PodGuard(lambda: state["sec"], certs["foo/sleep"]))
    direct = DirectPods(ctx, lambda: state["sec"], "127.0.0.0/24")
    assert direct.serves(SERVER_IP) and not direct.serves("10.96.0.10")
    ln = direct.listener(SERVER_IP, port)
    assert direct.listener(SERVER_IP, port) is ln
    assert (ln.sp.service, ln.sp.endpoints[0].pod) == ("foo/httpbin", "foo/httpbin")
    front = await asyncio.get_running_loop().create_server(ln.protocol, "127.0.0.62", 0)
    try:
        r, w = await asyncio.open_connection("127.0.0.62", front.sockets[0].getsockname()[1])
        w.write(b"GET /by-pod-ip HTTP/1.1\r\n\r\n")
        assert await asyncio.wait_for(r.readexactly(27), 5) == b"GET /by-pod-ip HTTP/1.1\r\n\r\n"
        w.close()
        await asyncio.sleep(0.2)
        recs = [x for x in ring.records() if x.service == "foo/httpbin" and x.port_name ==
                str(port)]
        assert recs and recs[-1].mtls is True and recs[-1].endpoint_ip == SERVER_IP
        assert recs[-1].source_identity == "spiffe://cluster.local/ns/foo/sa/sleep"
        assert recs[-1].destination_identity == "spiffe://cluster.local/ns/foo/sa/httpbin"
        state["sec"] = Security({})       # the destination left the mesh: plaintext
        echo, plain_port = await _echo("127.0.0.63")
        ln2 = direct.listener("127.0.0.63", plain_port)
        assert ln2.sp.service == "/127.0.0.63"
        front2 = await asyncio.get_running_loop().create_server(ln2.protocol, "127.0.0.62", 0)
        r, w = await asyncio.open_connection("127.0.0.62", front2.sockets[0].getsockname()[1])
        w.write(b"plain")
        assert await asyncio.wait_for(r.readexactly(5), 5) == b"plain"
        w.close()
        front2.close()
        echo.close()
    finally:
        front.close()
        await direct.close()
        ctx.sockets.close()


def test_the_in_pod_redirect_takes_pod_ips_but_never_the_proxys_own_dials() -> None:
    rules = NftRedirect("10.96.0.0/12", pod_cidr="10.244.0.0/16").rules("10.244.1.1")
    out = [json.dumps(r, sort_keys=True) for r in rules["output"]]

    def at(*needles: str) -> int:
        (i,) = [n for n, r in enumerate(out) if all(x in r for x in needles)]
        return i

    mark = at('"mark"', '"return"')
    services = at('"addr": "10.96.0.0", "len": 12', '"redirect": {"port": 15001}')
    pods = at('"addr": "10.244.0.0", "len": 16', '"op": "!=", "right": 15008',
              '"redirect": {"port": 15001}')
    assert mark < services and mark < at('"right": "10.244.1.1"', '"return"') < pods
    assert at('"fib"', '"local"', '"return"') < pods
    inbound = [json.dumps(r, sort_keys=True) for r in rules["prerouting"]]
    assert '"field": "saddr"' in inbound[0] and '"return"' in inbound[0]
    assert '"set": [15006, 15008]' in inbound[1] and '"redirect": {"port": 15006}' in inbound[1]
    plain = NftRedirect("10.96.0.0/12").rules("10.244.1.1")
    assert "10.244.0.0" not in json.dumps(plain["output"])


def test_the_in_pod_redirect_is_one_transaction_replaced_in_place_and_removed() -> None:
    async def run() -> None:
        nft = FakeNft()
        redirect = NftRedirect("10.96.0.0/12", pod_cidr="10.244.0.0/16", nft=nft)
        await redirect.install("pod-ns", exempt="10.244.1.1")
        await redirect.install("pod-ns", exempt="10.244.1.1")       # idempotent
        listing = await nft.table("pod-ns", "ip", "knet_mesh")
        assert listing is not None
        chains = {o["chain"]["name"]: o["chain"] for o in listing if "chain" in o}
        assert {n: (c["hook"], c["prio"]) for n, c in chains.items()} == {
            "output": ("output", -100), "prerouting": ("prerouting", -100)}
        assert sum("rule" in o for o in listing) == 7
        await redirect.remove("pod-ns")
        assert await nft.table("pod-ns", "ip", "knet_mesh") is None

    asyncio.run(run())