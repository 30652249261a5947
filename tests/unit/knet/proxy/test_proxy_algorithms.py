"""The balancing algorithms (round-robin, random, least-connections, source-hash), pure, with
a fake clock and a seeded random source: each one's distribution or stickiness, what its
picks say, and how ClientIP affinity and retries sit on top of them."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from knet.proxy.balancer import (
    ALGORITHMS,
    Endpoint,
    LoadBalancer,
    check_algorithm,
    source_bucket,
)

KEY = "default/web:http"
EPS = [Endpoint(f"10.244.1.{i}", 8080, f"default/web-{i}") for i in range(1, 5)]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def lb_with(algorithm: str, *, per_service: bool = False, seed: int = 7) -> LoadBalancer:
    lb = LoadBalancer(clock=FakeClock(), rng=random.Random(seed),
                      algorithm="round-robin" if per_service else algorithm)
    lb.update(KEY, EPS, algorithm=algorithm if per_service else None)
    return lb


def test_unknown_algorithm_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="'fastest' is not one of round-robin, random, "
                       "least-connections, source-hash"):
        check_algorithm("fastest")
    with pytest.raises(ValueError):
        LoadBalancer(clock=FakeClock(), algorithm="wrr")


def test_round_robin_is_exactly_even_and_in_order() -> None:
    lb = lb_with("round-robin")
    picks = [lb.next_endpoint(KEY, "10.0.0.1") for _ in range(8)]
    assert [p.endpoint for p in picks] == EPS * 2
    assert {p.algorithm for p in picks} == {"round-robin"}


def test_random_spreads_evenly_but_not_in_order() -> None:
    lb = lb_with("random")
    picks = [lb.next_endpoint(KEY, "10.0.0.1") for _ in range(4000)]
    counts = Counter(p.endpoint for p in picks)
    assert set(counts) == set(EPS)
    assert all(850 < n < 1150 for n in counts.values()), counts  # 1000 each, ±15%
    assert [p.endpoint for p in picks[:8]] != EPS * 2
    assert picks[0].algorithm == "random" and picks[0].reason.startswith("random ")
    assert picks[0].reason.endswith("/4")


def test_random_is_reproducible_with_the_same_seed() -> None:
    a, b = lb_with("random", seed=3), lb_with("random", seed=3)
    assert ([a.next_endpoint(KEY, "c").endpoint for _ in range(20)]
            == [b.next_endpoint(KEY, "c").endpoint for _ in range(20)])


def test_least_connections_fills_the_idle_endpoint() -> None:
    lb = lb_with("least-connections")
    held = [lb.next_endpoint(KEY, "c") for _ in range(4)]  # one each, ties go round-robin
    assert sorted(p.endpoint.ip for p in held) == sorted(e.ip for e in EPS)
    assert held[0].reason == "lc 0 active" and held[0].algorithm == "least-connections"
    lb.release(KEY, Endpoint(EPS[2].ip, EPS[2].port))  # web-3 connection ends
    nxt = lb.next_endpoint(KEY, "c")
    assert nxt.endpoint == EPS[2] and nxt.reason == "lc 0 active"
    after = lb.next_endpoint(KEY, "c")  # now all hold one: the next has 1 active
    assert after.reason == "lc 1 active"


def test_least_connections_long_and_short_connections() -> None:
    # one endpoint keeps its connections (long-lived), the others' end at once: new
    # connections go to the others, never to the loaded one
    lb = lb_with("least-connections")
    for _ in range(3):
        lb.next_endpoint(KEY, "c")  # web-1..web-3 get one long connection each... then:
    for _ in range(12):
        p = lb.next_endpoint(KEY, "c")
        assert p.endpoint == EPS[3]  # web-4, the only one with 0 active
        lb.release(KEY, p.endpoint)
    assert lb.active(KEY, EPS[0]) == 1 and lb.active(KEY, EPS[3]) == 0


def test_active_counts_never_go_negative_and_only_least_connections_keeps_them() -> None:
    lb = lb_with("least-connections")
    p = lb.next_endpoint(KEY, "c")
    assert lb.active(KEY, p.endpoint) == 1
    lb.release(KEY, p.endpoint)
    lb.release(KEY, p.endpoint)
    assert lb.active(KEY, p.endpoint) == 0
    rr = lb_with("round-robin")
    assert rr.active(KEY, rr.next_endpoint(KEY, "c").endpoint) == 0  # no bookkeeping


def test_source_hash_is_sticky_per_client_and_spreads_clients() -> None:
    lb = lb_with("source-hash")
    clients = [f"10.244.{i // 250}.{i % 250 + 1}" for i in range(400)]
    first = {c: lb.next_endpoint(KEY, c) for c in clients}
    for c in clients:  # the same client always lands on the same endpoint
        again = lb.next_endpoint(KEY, c)
        assert again.endpoint == first[c].endpoint and again.reason == first[c].reason
    counts = Counter(p.endpoint for p in first.values())
    assert set(counts) == set(EPS) and min(counts.values()) > 50, counts
    p = first["10.244.0.1"]
    assert p.algorithm == "source-hash" and p.reason == f"sh bucket {source_bucket('10.244.0.1')}"


def test_source_hash_needs_no_clock_and_survives_time() -> None:
    clock = FakeClock()
    lb = LoadBalancer(clock=clock, algorithm="source-hash")
    lb.update(KEY, EPS)
    before = lb.next_endpoint(KEY, "10.244.2.9").endpoint
    clock.now += 10 ** 6
    assert lb.next_endpoint(KEY, "10.244.2.9").endpoint == before


def test_source_bucket_is_ipvs_sh_hash() -> None:
    # ip_vs_sh_hashkey: (ntohl(addr) * 2654435761) >> (32 - 8), within 256 buckets
    assert source_bucket("10.0.0.1") == ((0x0A000001 * 2654435761) & 0xFFFFFFFF) >> 24
    assert all(0 <= source_bucket(f"10.1.2.{i}") < 256 for i in range(256))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_retry_never_returns_the_failed_endpoint(algorithm: str) -> None:
    lb = lb_with(algorithm)
    for client in ("10.0.0.1", "10.0.0.2", "10.9.9.9"):
        first = lb.next_endpoint(KEY, client)
        retry = lb.report_failure(KEY, client, first.endpoint)
        assert retry.endpoint != first.endpoint
        assert (retry.reason, retry.algorithm) == ("retry", algorithm)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_affinity_sits_on_top_of_every_algorithm(algorithm: str) -> None:
    clock = FakeClock()
    lb = LoadBalancer(clock=clock, rng=random.Random(1), algorithm=algorithm)
    lb.update(KEY, EPS, affinity_seconds=60)
    first = lb.next_endpoint(KEY, "10.0.0.1")
    for _ in range(10):
        p = lb.next_endpoint(KEY, "10.0.0.1")
        assert (p.endpoint, p.reason, p.algorithm) == (first.endpoint, "affinity-hit",
                                                       algorithm)
    clock.now += 61
    assert lb.next_endpoint(KEY, "10.0.0.1").reason == "affinity-expired"


def test_per_service_algorithm_overrides_the_cluster_default() -> None:
    lb = LoadBalancer(clock=FakeClock(), algorithm="round-robin")
    lb.update(KEY, EPS, algorithm="source-hash")
    lb.update("default/other", EPS)
    assert lb.next_endpoint(KEY, "10.0.0.1").algorithm == "source-hash"
    assert lb.next_endpoint("default/other", "10.0.0.1").algorithm == "round-robin"
    lb.update(KEY, EPS, algorithm=None)  # the annotation removed: back to the default
    assert lb.next_endpoint(KEY, "10.0.0.1").algorithm == "round-robin"
