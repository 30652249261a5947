"""Jobs and CronJobs end to end with the real kubectl on a 2-node cluster: the documentation's
`pi` Job (perl computing 2,000 digits), completions with parallelism whose pods really ran at
most two at a time, a failing Job stopped by backoffLimit, an Indexed Job whose pods print
their index, a CronJob every minute whose Job completes, `kubectl create job --from=cronjob`,
and kube-apiserver's 422s for bad specs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from clusterkit import Cluster

pytestmark = pytest.mark.root

PI_JOB = """
apiVersion: batch/v1
kind: Job
metadata:
  name: pi
spec:
  template:
    spec:
      containers:
      - name: pi
        image: perl:5.34.0
        command: ["perl",  "-Mbignum=bpi", "-wle", "print bpi(2000)"]
      restartPolicy: Never
  backoffLimit: 4
"""


def _job(name: str, script: str, **spec: Any) -> str:
    extra = "".join(f"  {k}: {v}\n" for k, v in spec.items())
    return f"""
apiVersion: batch/v1
kind: Job
metadata: {{name: {name}}}
spec:
{extra}  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", {script!r}]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The shared cluster shape, with a 1 s Job back-off so failures are quick to test."""
    base = tmp_path_factory.mktemp("cluster")
    c = Cluster(base / "state", base / "kubecache")
    c.knet("up", "--nodes", "2", "--state-dir", str(c.state_dir), "--timeout", "90",
           env={"KNET_JOB_BACKOFF": "1"})
    try:
        yield c
    finally:
        c.knet("down", "--state-dir", str(c.state_dir), check=False)


def _pods(cluster: Cluster, job: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get(
        "pods", "-l", f"batch.kubernetes.io/job-name={job}")["items"]
    return items


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_pi_job_from_the_docs_computes_2000_digits(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=PI_JOB)
    cluster.kubectl("wait", "--for=condition=complete", "job/pi", "--timeout=120s",
                    timeout=130)
    digits = cluster.kubectl("logs", "job/pi").stdout.strip()
    assert digits.startswith("3.14159265358979323846")
    assert len(digits) == 2001                          # "3." and 1,999 more digits
    out = cluster.kubectl("get", "jobs", "pi").stdout.splitlines()
    assert out[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert out[1].split()[:3] == ["pi", "Complete", "1/1"]
    job = cluster.get("job", "pi")
    assert job["status"]["succeeded"] == 1 and job["status"]["completionTime"]


def test_completions_three_parallelism_two(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=_job("para", "echo worked on $HOSTNAME; sleep 2",
                                                   completions=3, parallelism=2))
    cluster.kubectl("wait", "--for=condition=complete", "job/para", "--timeout=90s",
                    timeout=100)
    pods = _pods(cluster, "para")
    assert len(pods) == 3
    spans = []
    for pod in pods:
        name = pod["metadata"]["name"]
        assert cluster.kubectl("logs", name).stdout.strip() == f"worked on {name}"
        term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert term["exitCode"] == 0
        spans.append((_t(term["startedAt"]), _t(term["finishedAt"])))
    for start, _ in spans:                              # never three at once
        assert sum(1 for s, f in spans if s <= start < f) <= 2
    assert cluster.get("job", "para")["status"]["succeeded"] == 3
    row = cluster.kubectl("get", "job", "para", "--no-headers").stdout.split()
    assert row[1:3] == ["Complete", "3/3"]


def test_failing_job_stops_at_backoff_limit(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=_job("fails", "echo boom; exit 3",
                                                   backoffLimit=1))
    cluster.kubectl("wait", "--for=condition=failed", "job/fails", "--timeout=90s",
                    timeout=100)
    job = cluster.get("job", "fails")
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert job["status"]["failed"] == 2
    pods = _pods(cluster, "fails")
    assert len(pods) == 2 and all(p["status"]["phase"] == "Failed" for p in pods)
    events = cluster.kubectl("get", "events", "--field-selector",
                             "involvedObject.name=fails").stdout
    assert "BackoffLimitExceeded" in events and "Job has reached the specified backoff limit" \
        in events
    assert cluster.kubectl("get", "job", "fails", "--no-headers").stdout.split()[1] == "Failed"


def test_indexed_job_pods_print_their_index(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=_job(
        "idx", "echo index=$JOB_COMPLETION_INDEX host=$(hostname)", completions=3,
        parallelism=3, completionMode="Indexed"))
    cluster.kubectl("wait", "--for=condition=complete", "job/idx", "--timeout=90s",
                    timeout=100)
    seen = set()
    for pod in _pods(cluster, "idx"):
        index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        out = cluster.kubectl("logs", pod["metadata"]["name"]).stdout.strip()
        assert out == f"index={index} host=idx-{index}"
        seen.add(int(index))
    assert seen == {0, 1, 2}
    assert cluster.get("job", "idx")["status"]["completedIndexes"] == "0-2"


CRONJOB = """
apiVersion: batch/v1
kind: CronJob
metadata: {name: hello}
spec:
  schedule: "*/1 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: hello
            image: busybox
            command: ["sh", "-c", "date; echo Hello from the Kubernetes cluster"]
"""


def test_cronjob_every_minute_runs_a_job(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=CRONJOB)

    def completed() -> str | None:
        cj = cluster.get("cronjob", "hello")
        return (cj.get("status") or {}).get("lastSuccessfulTime")
    cluster.wait("a Job of the CronJob completed", completed, timeout=85, every=1)
    [job] = [j for j in cluster.get("jobs")["items"]
             if j["metadata"]["name"].startswith("hello-")]
    minutes = int(job["metadata"]["name"].removeprefix("hello-"))
    stamp = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
    assert int(_t(stamp).timestamp()) == minutes * 60
    logs = cluster.kubectl("logs", f"job/{job['metadata']['name']}").stdout
    assert "Hello from the Kubernetes cluster" in logs
    row = cluster.kubectl("get", "cronjob", "hello", "--no-headers").stdout.split()
    assert row[:8] == ["hello", "*/1", "*", "*", "*", "*", "<none>", "False"]
    assert row[9] != "<none>"                           # LAST SCHEDULE
    header = cluster.kubectl("get", "cronjob", "hello").stdout.splitlines()[0].split()
    assert header == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE",
                      "AGE"]


def test_create_job_from_cronjob(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=CRONJOB.replace("*/1 * * * *", "@yearly")
                    .replace("name: hello", "name: yearly"))
    cluster.kubectl("create", "job", "now", "--from=cronjob/yearly")
    cluster.kubectl("wait", "--for=condition=complete", "job/now", "--timeout=60s",
                    timeout=70)
    job = cluster.get("job", "now")
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    assert "Hello from the Kubernetes cluster" in cluster.kubectl("logs", "job/now").stdout


def test_bad_specs_get_kube_apiservers_422(cluster: Cluster) -> None:
    r = cluster.kubectl("apply", "-f", "-", check=False,
                        input=_job("neg", "true", parallelism=-1))
    assert r.returncode != 0
    assert 'The Job "neg" is invalid: spec.parallelism: Invalid value: -1: must be greater ' \
        "than or equal to 0" in r.stderr
    r = cluster.kubectl("apply", "-f", "-", check=False,
                        input=CRONJOB.replace("*/1 * * * *", "61 * * * *"))
    assert r.returncode != 0
    assert re.search(r'spec.schedule: Invalid value: "61 \* \* \* \*": end of range \(61\) '
                     r"above maximum \(59\): 61", r.stderr), r.stderr


def test_describe_and_delete_the_pi_job(cluster: Cluster) -> None:
    out = cluster.kubectl("describe", "job", "pi").stdout
    assert re.search(r"Pods Statuses:\s+0 Active \(0 Ready\) / 1 Succeeded / 0 Failed", out), out
    assert re.search(r"Completions:\s+1", out) and "Completed" in out
    assert re.search(r"SuccessfulCreate\s+.*Created pod: pi-", out), out
    assert "batch.kubernetes.io/job-name=pi" in out
    cluster.kubectl("delete", "job", "pi")

    def pods_gone() -> bool:
        return not _pods(cluster, "pi")
    cluster.wait("the pi Job's pods deleted with it", pods_gone, timeout=30)


def test_ttl_after_finished_deletes_job_and_pods(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=_job("short", "echo bye",
                                                   ttlSecondsAfterFinished=3))
    cluster.kubectl("wait", "--for=condition=complete", "job/short", "--timeout=60s",
                    timeout=70)

    def gone() -> bool:
        return (not cluster.get("jobs", "--field-selector", "metadata.name=short")["items"]
                and not _pods(cluster, "short"))
    cluster.wait("the Job and its pod deleted after ttlSecondsAfterFinished", gone, timeout=30)


def test_suspend_stops_pods_and_resume_starts_them(cluster: Cluster) -> None:
    manifest = _job("sleepy", "sleep 300", parallelism=2, completions=2).replace(
        "      restartPolicy: Never", "      restartPolicy: Never\n"
        "      terminationGracePeriodSeconds: 1")
    cluster.kubectl("apply", "-f", "-", input=manifest)
    cluster.ready_pods("batch.kubernetes.io/job-name=sleepy", 2)
    cluster.kubectl("patch", "job", "sleepy", "-p", '{"spec":{"suspend":true}}')
    cluster.kubectl("wait", "--for=condition=suspended", "job/sleepy", "--timeout=30s",
                    timeout=40)

    def stopped() -> bool:
        return all(p["status"].get("phase") in ("Failed", "Succeeded")
                   or p["metadata"].get("deletionTimestamp") for p in _pods(cluster, "sleepy")) \
            and not [p for p in _pods(cluster, "sleepy")
                     if not p["metadata"].get("deletionTimestamp")]
    cluster.wait("the suspended Job's pods stopped", stopped, timeout=30)
    row = cluster.kubectl("get", "job", "sleepy", "--no-headers").stdout.split()
    assert row[1] == "Suspended"
    cluster.kubectl("patch", "job", "sleepy", "-p", '{"spec":{"suspend":false}}')
    cluster.ready_pods("batch.kubernetes.io/job-name=sleepy", 2, timeout=60)
    job = cluster.get("job", "sleepy")
    assert job["status"].get("failed", 0) == 0                  # stopped, not failed
    assert cluster.kubectl("get", "job", "sleepy", "--no-headers").stdout.split()[1] == \
        "Running"
    cluster.kubectl("delete", "job", "sleepy", "--wait=false")
