"""The balancer, modelled on kube-proxy's userspace roundrobin tests: order, affinity,
expiry, retries and endpoint changes, with a fake clock."""

from __future__ import annotations

import pytest

from knet.proxy.balancer import Endpoint, LoadBalancer, NoEndpoints

KEY = "default/web:http"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def eps(*addrs: str) -> list[Endpoint]:
    out = []
    for a in addrs:
        ip, port = a.rsplit(":", 1)
        out.append(Endpoint(ip, int(port), f"default/pod-{ip}-{port}"))
    return out


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def lb(clock: FakeClock) -> LoadBalancer:
    return LoadBalancer(clock=clock)


def picks(lb: LoadBalancer, n: int, client: str = "10.0.0.1", key: str = KEY) -> list[str]:
    return [lb.next_endpoint(key, client).endpoint.addr for _ in range(n)]


def test_unknown_service_port_is_no_endpoints(lb: LoadBalancer) -> None:
    with pytest.raises(NoEndpoints, match="default/web:http"):
        lb.next_endpoint(KEY, "10.0.0.1")


def test_service_port_with_empty_endpoints_is_no_endpoints(lb: LoadBalancer) -> None:
    lb.update(KEY, [])
    with pytest.raises(NoEndpoints):
        lb.next_endpoint(KEY, "10.0.0.1")
    with pytest.raises(NoEndpoints):
        lb.report_failure(KEY, "10.0.0.1", Endpoint("10.0.0.9", 80))


def test_one_endpoint_always_picked(lb: LoadBalancer) -> None:
    lb.update(KEY, eps("10.1.0.1:40"))
    assert picks(lb, 3) == ["10.1.0.1:40"] * 3


def test_round_robin_in_stable_sorted_order(lb: LoadBalancer) -> None:
    # given out of order, numerically sorted (10.1.0.9 before 10.1.0.10)
    lb.update(KEY, eps("10.1.0.10:80", "10.1.0.9:80", "10.1.0.9:79"))
    assert picks(lb, 6) == ["10.1.0.9:79", "10.1.0.9:80", "10.1.0.10:80"] * 2


def test_reasons_carry_round_robin_index(lb: LoadBalancer) -> None:
    lb.update(KEY, eps("10.1.0.1:80", "10.1.0.2:80", "10.1.0.3:80"))
    reasons = [lb.next_endpoint(KEY, "c").reason for _ in range(4)]
    assert reasons == ["rr#0", "rr#1", "rr#2", "rr#0"]


def test_round_robin_is_shared_across_clients_without_affinity(lb: LoadBalancer) -> None:
    lb.update(KEY, eps("10.1.0.1:80", "10.1.0.2:80"))
    assert lb.next_endpoint(KEY, "a").endpoint.ip == "10.1.0.1"
    assert lb.next_endpoint(KEY, "b").endpoint.ip == "10.1.0.2"
    assert lb.next_endpoint(KEY, "a").endpoint.ip == "10.1.0.1"


def test_service_ports_are_independent(lb: LoadBalancer) -> None:
    lb.update(KEY, eps("10.1.0.1:80", "10.1.0.2:80"))
    lb.update("default/web:metrics", eps("10.1.0.1:9090", "10.1.0.2:9090"))
    assert picks(lb, 1) == ["10.1.0.1:80"]
    assert picks(lb, 1, key="default/web:metrics") == ["10.1.0.1:9090"]
    assert picks(lb, 1) == ["10.1.0.2:80"]


def test_same_update_keeps_round_robin_position(lb: LoadBalancer) -> None:
    lb.update(KEY, eps("10.1.0.1:80", "10.1.0.2:80", "10.1.0.3:80"))
    picks(lb, 1)
    lb.update(KEY, eps("10.1.0.3:80", "10.1.0.2:80", "10.1.0.1:80"))
    assert picks(lb, 1) == ["10.1.0.2:80"]


def test_changed_endpoints_restart_and_removed_one_never_picked(lb: LoadBalancer) -> None:
    lb.update(KEY, eps("10.1.0.1:80", "10.1.0.2:80", "10.1.0.3:80"))
    picks(lb, 2)
    lb.update(KEY, eps("10.1.0.1:80", "10.1.0.3:80"))
    assert picks(lb, 4) == ["10.1.0.1:80", "10.1.0.3:80"] * 2


def test_affinity_pins_client(lb: LoadBalancer) -> None:
    lb.update(KEY, eps("10.1.0.1:80", "10.1.0.2:80", "10.1.0.3:80"), affinity_seconds=10800)
    first = lb.next_endpoint(KEY, "10.0.0.1")
    assert first.reason == "rr#0"
    again = [lb.next_endpoint(KEY, "10.0.0.1") for _ in range(30)]
    assert {p.endpoint for p in again} == {first.endpoint}
    assert {p.reason for p in again} == {"affinity-hit"}


def test_affinity_clients_balanced_independently(lb: LoadBalancer) -> None:
    lb.update(KEY, eps("10.1.0.1:80", "10.1.0.2:80"), affinity_seconds=60)
    a = lb.next_endpoint(KEY, "10.0.0.1").endpoint
    b = lb.next_endpoint(KEY, "10.0.0.2").endpoint
    assert a != b
    assert lb.next_endpoint(KEY, "10.0.0.1").endpoint == a
    assert lb.next_endpoint(KEY, "10.0.0.2").endpoint == b


def test_affinity_expires_after_timeout_and_says_so(lb: LoadBalancer, clock: FakeClock) -> None:
    lb.update(KEY, eps("10.1.0.1:80", "10.1.0.2:80"), affinity_seconds=2)
    first = lb.next_endpoint(KEY, "c")
    clock.advance(3)
    again = lb.next_endpoint(KEY, "c")
    assert again.reason == "affinity-expired"
    assert again.endpoint != first.endpoint  # the round robin moved on
    assert lb.next_endpoint(KEY, "c") == type(again)(again.endpoint, "affinity-hit")


def test_affinity_window_slides_on_each_use(lb: LoadBalancer, clock: FakeClock) -> None:
    lb.update(KEY, eps("10.1.0.1:80", "10.1.0.2:80"), affinity_seconds=2)
    first = lb.next_endpoint(KEY, "c").endpoint
    for _ in range(5):  # 7.5 s in total, never 2 s of silence
        clock.advance(1.5)
        pick = lb.next_endpoint(KEY, "c")
        assert (pick.endpoint, pick.reason) == (first, "affinity-hit")


def test_affinity_timeout_is_capped_at_a_day(lb: LoadBalancer, clock: FakeClock) -> None:
    lb.update(KEY, eps("10.1.0.1:80", "10.1.0.2:80"), affinity_seconds=10**9)
    lb.next_endpoint(KEY, "c")
    clock.advance(86400 + 1)
    assert lb.next_endpoint(KEY, "c").reason == "affinity-expired"


def test_affinity_entry_to_removed_endpoint_dropped(lb: LoadBalancer) -> None:
    lb.update(KEY, eps("10.1.0.1:80", "10.1.0.2:80"), affinity_seconds=60)
    assert lb.next_endpoint(KEY, "c").endpoint.ip == "10.1.0.1"
    lb.update(KEY, eps("10.1.0.2:80", "10.1.0.3:80"), affinity_seconds=60)
    pick = lb.next_endpoint(KEY, "c")
    assert pick.endpoint.ip == "10.1.0.2" and pick.reason == "rr#0"


def test_affinity_entry_to_kept_endpoint_survives_update(lb: LoadBalancer) -> None:
    lb.update(KEY, eps("10.1.0.1:80", "10.1.0.2:80"), affinity_seconds=60)
    lb.next_endpoint(KEY, "x")
    assert lb.next_endpoint(KEY, "c").endpoint.ip == "10.1.0.2"
    lb.update(KEY, eps("10.1.0.2:80", "10.1.0.3:80"), affinity_seconds=60)
    assert lb.next_endpoint(KEY, "c").reason == "affinity-hit"


def test_turning_affinity_off_forgets_clients(lb: LoadBalancer) -> None:
    lb.update(KEY, eps("10.1.0.1:80", "10.1.0.2:80"), affinity_seconds=60)
    lb.next_endpoint(KEY, "c")
    lb.update(KEY, eps("10.1.0.1:80", "10.1.0.2:80"))
    assert [p.reason for p in (lb.next_endpoint(KEY, "c"), lb.next_endpoint(KEY, "c"))] == [
        "rr#1", "rr#0"]


def test_report_failure_picks_another_endpoint(lb: LoadBalancer) -> None:
    lb.update(KEY, eps("10.1.0.1:80", "10.1.0.2:80", "10.1.0.3:80"))
    first = lb.next_endpoint(KEY, "c").endpoint
    retry = lb.report_failure(KEY, "c", first)
    assert retry.reason == "retry" and retry.endpoint != first


def test_report_failure_skips_the_failed_one_when_it_is_next(lb: LoadBalancer) -> None:
    lb.update(KEY, eps("10.1.0.1:80", "10.1.0.2:80"))
    lb.next_endpoint(KEY, "c")  # .1, next would be .2
    retry = lb.report_failure(KEY, "c", Endpoint("10.1.0.2", 80))
    assert retry.endpoint.ip == "10.1.0.1"


def test_report_failure_moves_affinity(lb: LoadBalancer) -> None:
    lb.update(KEY, eps("10.1.0.1:80", "10.1.0.2:80"), affinity_seconds=60)
    first = lb.next_endpoint(KEY, "c").endpoint
    moved = lb.report_failure(KEY, "c", first).endpoint
    assert moved != first
    assert lb.next_endpoint(KEY, "c") == type(lb.next_endpoint(KEY, "c"))(moved, "affinity-hit")


def test_report_failure_with_single_endpoint_tries_it_again(lb: LoadBalancer) -> None:
    lb.update(KEY, eps("10.1.0.1:80"))
    only = lb.next_endpoint(KEY, "c").endpoint
    assert lb.report_failure(KEY, "c", only).endpoint == only


def test_sweep_drops_only_expired_entries(lb: LoadBalancer, clock: FakeClock) -> None:
    lb.update(KEY, eps("10.1.0.1:80", "10.1.0.2:80"), affinity_seconds=10)
    lb.next_endpoint(KEY, "old")
    clock.advance(8)
    lb.next_endpoint(KEY, "new")
    clock.advance(5)
    assert lb.sweep() == 1
    assert lb.next_endpoint(KEY, "new").reason == "affinity-hit"


def test_remove_forgets_service_port(lb: LoadBalancer) -> None:
    lb.update(KEY, eps("10.1.0.1:80"))
    lb.remove(KEY)
    lb.remove(KEY)
    assert lb.keys() == []
    with pytest.raises(NoEndpoints):
        lb.next_endpoint(KEY, "c")


def test_duplicate_endpoints_counted_once(lb: LoadBalancer) -> None:
    lb.update(KEY, eps("10.1.0.1:80", "10.1.0.1:80", "10.1.0.2:80"))
    assert picks(lb, 4) == ["10.1.0.1:80", "10.1.0.2:80"] * 2
