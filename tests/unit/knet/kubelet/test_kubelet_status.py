"""Pod phase and conditions as Kubernetes computes them from container states."""

from __future__ import annotations

from knet.kubelet.status import ContainerView, phase, pod_status


def view(name: str, state: dict, *, ready: bool = False, restarts: int = 0,
         will_restart: bool = True) -> ContainerView:
    return ContainerView(name=name, image="img", state=state, ready=ready,
                         restart_count=restarts, will_restart=will_restart)


RUN = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}


def term(code: int) -> dict:
    return {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}


def test_pending_until_started_and_initialized() -> None:
    assert phase([view("a", {"waiting": {"reason": "ContainerCreating"}})],
                 initialized=True) == "Pending"
    assert phase([view("a", RUN)], initialized=False) == "Pending"


def test_running_when_any_runs_or_restarts() -> None:
    assert phase([view("a", RUN), view("b", term(0), will_restart=False)],
                 initialized=True) == "Running"
    crashloop = view("a", {"waiting": {"reason": "CrashLoopBackOff"}}, restarts=3)
    assert phase([crashloop], initialized=True) == "Running"


def test_succeeded_and_failed_when_done_for_good() -> None:
    assert phase([view("a", term(0), will_restart=False)], initialized=True) == "Succeeded"
    assert phase([view("a", term(0), will_restart=False),
                  view("b", term(2), will_restart=False)], initialized=True) == "Failed"


def test_ready_condition_names_unready_containers() -> None:
    st = pod_status(old={}, containers=[view("web", RUN, ready=True), view("side", RUN)],
                    init=[], initialized=True, pod_ip="10.244.1.5", host_ip="172.18.0.2",
                    start_time=0, now=10)
    cond = {c["type"]: c for c in st["conditions"]}
    assert cond["Ready"]["status"] == "False"
    assert "side" in cond["Ready"]["message"] and "web" not in cond["Ready"]["message"]
    assert st["podIP"] == "10.244.1.5" and st["podIPs"] == [{"ip": "10.244.1.5"}]
    assert st["hostIP"] == "172.18.0.2"
    assert [c["name"] for c in st["containerStatuses"]] == ["web", "side"]


def test_transition_time_kept_while_status_unchanged() -> None:
    first = pod_status(old={}, containers=[view("a", RUN, ready=True)], init=[],
                       initialized=True, pod_ip="10.244.1.5", host_ip="h", start_time=0, now=10)
    again = pod_status(old=first, containers=[view("a", RUN, ready=True)], init=[],
                       initialized=True, pod_ip="10.244.1.5", host_ip="h", start_time=0, now=99)
    t1 = {c["type"]: c["lastTransitionTime"] for c in first["conditions"]}
    t2 = {c["type"]: c["lastTransitionTime"] for c in again["conditions"]}
    assert t1 == t2
    flipped = pod_status(old=first, containers=[view("a", RUN, ready=False)], init=[],
                         initialized=True, pod_ip="10.244.1.5", host_ip="h", start_time=0,
                         now=99)
    t3 = {c["type"]: c["lastTransitionTime"] for c in flipped["conditions"]}
    assert t3["Ready"] != t1["Ready"]


def test_an_init_container_failed_for_good_fails_the_pod() -> None:
    failed = view("init", {"terminated": {"exitCode": 4, "reason": "Error"}})
    failed.will_restart = False
    app = view("app", {"waiting": {"reason": "PodInitializing"}})
    assert phase([app], initialized=False, init=[failed]) == "Failed"
    failed.will_restart = True          # OnFailure/Always: the kubelet retries it
    assert phase([app], initialized=False, init=[failed]) == "Pending"
