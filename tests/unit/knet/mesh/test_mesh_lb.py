"""Endpoint choice inside a backend, pure: policies, the previous-hosts rule, outlier
ejection bounded by max_ejection_percent (at least one, as Envoy), pool limits."""

from __future__ import annotations

from knet.mesh.lb import MeshBalancer
from knet.mesh.types import Backend, ConnectionPool, LoadBalancing, Outlier
from knet.proxy.balancer import Endpoint

EPS = tuple(Endpoint(f"10.0.0.{i}", 80, f"ns/p{i}") for i in range(1, 5))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


def _b(**kw: object) -> Backend:
    return Backend("ns/svc", 80, 1, endpoints=EPS, **kw)  # type: ignore[arg-type]


def test_round_robin_and_previous_hosts() -> None:
    lb = MeshBalancer(clock=Clock(), rng=lambda: 0.0)
    b = _b()
    assert [lb.pick(b)[0].ip for _ in range(5)] == [  # type: ignore[index]
        "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.1"]
    got = lb.pick(b, exclude=set(EPS[:3]))
    assert got is not None and got[0] == EPS[3]
    assert lb.pick(b, exclude=set(EPS)) is None


def test_consistent_hash_is_sticky_per_key() -> None:
    lb = MeshBalancer(clock=Clock(), rng=lambda: 0.5)
    b = _b(lb=LoadBalancing("CONSISTENT_HASH", hash_header="x-user"))
    first = {u: lb.pick(b, headers={"x-user": u}) for u in ("ann", "bob", "cy")}
    for u, got in first.items():
        assert lb.pick(b, headers={"x-user": u}) == got


def test_least_request_prefers_the_idle_endpoint() -> None:
    draws = iter([0.0, 0.3] * 10)
    lb = MeshBalancer(clock=Clock(), rng=lambda: next(draws))
    b = _b(lb=LoadBalancing("LEAST_REQUEST"))
    lb.begin(b, EPS[0])
    assert lb.pick(b) == (EPS[1], "least-request")


def test_outlier_ejects_for_base_time_times_ejections_bounded() -> None:
    clock = Clock()
    lb = MeshBalancer(clock=clock, rng=lambda: 0.0)
    b = _b(outlier=Outlier(consecutive_5xx=2, base_ejection=30, max_ejection_percent=10))
    assert lb.report(b, EPS[0], 500) == ""
    assert lb.report(b, EPS[0], 503).startswith("ejected ns/p1 for 30s")
    # 10% of 4 endpoints rounds to 0: still one may go (Envoy), but not a second
    lb.report(b, EPS[1], 500)
    assert lb.report(b, EPS[1], 500) == ""
    assert EPS[0] not in {lb.pick(b)[0] for _ in range(8)}  # type: ignore[index]
    clock.now += 31
    assert EPS[0] in {lb.pick(b)[0] for _ in range(8)}  # type: ignore[index]
    lb.report(b, EPS[0], 500)
    assert "for 60s" in lb.report(b, EPS[0], 500)  # the second time: twice as long
    assert lb.report(b, EPS[2], 200) == "" and lb.fails.get(EPS[2]) is None


def test_pool_limits() -> None:
    lb = MeshBalancer(clock=Clock(), rng=lambda: 0.0)
    b = _b(pool=ConnectionPool(max_connections=1, max_pending=1))
    assert lb.admit(b)
    lb.begin(b, EPS[0])
    assert lb.admit(b)
    lb.begin(b, EPS[1])
    assert not lb.admit(b)
    lb.end(b, EPS[0])
    assert lb.admit(b)
