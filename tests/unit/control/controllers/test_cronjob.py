"""CronJob controller: Jobs at scheduled times on a fake clock (names, annotation, status),
concurrency policies, history limits, suspend, deadlines, missed starts, time zones, manual
Jobs; the Jobs' own completion is written by hand (no Job controller runs here)."""

from __future__ import annotations

from datetime import UTC, datetime

from ctlharness import ControllerHarness
from jobfixtures import events, job

from control.clock import rfc3339


def cronjob(name: str = "hello", schedule: str = "*/1 * * * *", **spec) -> dict:
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": schedule, "jobTemplate": {
                "metadata": {"labels": {"app": name}}, "spec": job()["spec"]}, **spec}}


async def _jobs(h: ControllerHarness) -> list[dict]:
    items = (await h.client.list("jobs", namespace="default")).items
    return sorted((j for j in items if not j["metadata"].get("deletionTimestamp")),
                  key=lambda j: j["metadata"]["name"])


async def _n_jobs(h: ControllerHarness, n: int) -> list[dict]:
    async def check():
        jobs = await _jobs(h)
        return jobs if len(jobs) == n else None
    return await h.eventually(check, what=f"{n} jobs")


async def _cj(h: ControllerHarness, name: str = "hello") -> dict:
    return await h.client.get("cronjobs", name, namespace="default")


async def _complete(h: ControllerHarness, j: dict, outcome: str = "Complete") -> None:
    cur = await h.client.get("jobs", j["metadata"]["name"], namespace="default")
    now = rfc3339(h.clock.now())
    cur["status"] = {"startTime": now, "conditions": [
        {"type": outcome, "status": "True", "lastTransitionTime": now}]}
    if outcome == "Complete":
        cur["status"]["completionTime"] = now
    await h.client.update("jobs", cur, subresource="status")


def _minutes(dt: datetime) -> int:
    return int(dt.timestamp()) // 60


async def test_job_created_at_the_scheduled_minute(harness: ControllerHarness) -> None:
    await harness.start("cronjob")
    cj = await harness.client.create("cronjobs", cronjob())
    await harness.settle()
    assert await _jobs(harness) == []
    await harness.clock.advance(61)
    [j] = await _n_jobs(harness, 1)
    at = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert j["metadata"]["name"] == f"hello-{_minutes(at)}"
    assert j["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] == \
        "2026-01-01T00:01:00Z"
    assert j["metadata"]["labels"]["app"] == "hello"
    ref = j["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("CronJob",
                                                           cj["metadata"]["uid"], True)
    st = (await _cj(harness))["status"]
    assert [a["name"] for a in st["active"]] == [j["metadata"]["name"]]
    assert st["lastScheduleTime"] == "2026-01-01T00:01:00Z"
    assert [e["message"] for e in await events(harness, "SuccessfulCreate")] == [
        f"Created job {j['metadata']['name']}"]
    await _complete(harness, j)

    async def done():
        st = (await _cj(harness))["status"]
        return st if not st.get("active") and st.get("lastSuccessfulTime") else None
    st = await harness.eventually(done, what="active emptied, lastSuccessfulTime set")
    assert st["lastSuccessfulTime"] == "2026-01-01T00:01:01Z"        # the completionTime
    assert len(await events(harness, "SawCompletedJob")) == 1


async def test_forbid_skips_while_a_job_runs(harness: ControllerHarness) -> None:
    await harness.start("cronjob")
    await harness.client.create("cronjobs", cronjob(concurrencyPolicy="Forbid"))
    await harness.clock.advance(61)
    await _n_jobs(harness, 1)
    await harness.clock.advance(61)
    await harness.eventually(lambda: events(harness, "JobAlreadyActive"), what="event")
    assert len(await _jobs(harness)) == 1


async def test_replace_deletes_the_running_job(harness: ControllerHarness) -> None:
    await harness.start("cronjob")
    await harness.client.create("cronjobs", cronjob(concurrencyPolicy="Replace"))
    await harness.clock.advance(61)
    [first] = await _n_jobs(harness, 1)
    await harness.clock.advance(61)

    async def replaced():
        jobs = await _jobs(harness)
        return jobs if [j["metadata"]["name"] for j in jobs] != [
            first["metadata"]["name"]] and len(jobs) == 1 else None
    [second] = await harness.eventually(replaced, what="the first job replaced")
    st = (await _cj(harness))["status"]
    assert [a["name"] for a in st["active"]] == [second["metadata"]["name"]]


async def test_allow_runs_concurrently(harness: ControllerHarness) -> None:
    await harness.start("cronjob")
    await harness.client.create("cronjobs", cronjob())
    await harness.clock.advance(61)
    await _n_jobs(harness, 1)
    await harness.clock.advance(61)
    await _n_jobs(harness, 2)
    assert len((await _cj(harness))["status"]["active"]) == 2


async def test_history_limits_delete_the_oldest(harness: ControllerHarness) -> None:
    await harness.start("cronjob")
    await harness.client.create("cronjobs", cronjob(successfulJobsHistoryLimit=1,
                                                    failedJobsHistoryLimit=0))
    await harness.clock.advance(61)
    [a] = await _n_jobs(harness, 1)
    await _complete(harness, a)
    await harness.clock.advance(61)
    jobs = await _n_jobs(harness, 2)
    b = next(j for j in jobs if j["metadata"]["name"] != a["metadata"]["name"])
    await _complete(harness, b)

    async def only_b():
        names = [j["metadata"]["name"] for j in await _jobs(harness)]
        return names == [b["metadata"]["name"]]
    await harness.eventually(only_b, what="oldest successful job deleted")
    await harness.clock.advance(61)
    [_, c] = await _n_jobs(harness, 2)
    await _complete(harness, c, "Failed")
    await harness.eventually(lambda: _n_jobs(harness, 1), what="failed job deleted (limit 0)")
    assert next(e["message"] for e in await events(harness, "SuccessfulDelete")) == \
        f"Deleted job {a['metadata']['name']}"


async def test_suspended_cronjob_starts_nothing(harness: ControllerHarness) -> None:
    await harness.start("cronjob")
    await harness.client.create("cronjobs", cronjob(suspend=True))
    await harness.clock.advance(180)
    await harness.settle()
    assert await _jobs(harness) == []
    await harness.client.patch("cronjobs", "hello", {"spec": {"suspend": False}},
                               namespace="default")
    [j] = await _n_jobs(harness, 1)          # the most recent missed time runs at once
    assert j["metadata"]["name"] == f"hello-{_minutes(datetime(2026, 1, 1, 0, 3, tzinfo=UTC))}"


async def test_starting_deadline_skips_old_times(harness: ControllerHarness) -> None:
    await harness.client.create("cronjobs", cronjob(startingDeadlineSeconds=10))
    await harness.clock.advance(150)         # 00:02:30, the controller was down
    await harness.start("cronjob")
    await harness.settle()
    assert await _jobs(harness) == []
    await harness.clock.advance(31)
    await _n_jobs(harness, 1)


async def test_too_many_missed_start_times(harness: ControllerHarness) -> None:
    await harness.client.create("cronjobs", cronjob())
    await harness.clock.advance(200 * 60 + 5)
    await harness.start("cronjob")
    [ev] = await harness.eventually(lambda: events(harness, "TooManyMissedTimes"), what="event")
    assert ev["type"] == "Warning" and ev["message"] == (
        "too many missed start times: 200. Set or decrease .spec.startingDeadlineSeconds or "
        "check clock skew")
    [j] = await _n_jobs(harness, 1)          # only the most recent one is started
    assert j["metadata"]["name"] == f"hello-{_minutes(harness.clock.now())}"


async def test_time_zone(harness: ControllerHarness) -> None:
    await harness.start("cronjob")
    await harness.client.create("cronjobs", cronjob(schedule="30 9 * * *",
                                                    timeZone="Asia/Tokyo"))
    await harness.clock.advance(29 * 60)     # 09:29 in Tokyo
    await harness.settle()
    assert await _jobs(harness) == []
    await harness.clock.advance(61)
    [j] = await _n_jobs(harness, 1)
    assert j["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] == \
        "2026-01-01T09:30:00+09:00"


async def test_manual_job_from_cronjob_is_tracked(harness: ControllerHarness) -> None:
    await harness.start("cronjob")
    cj = await harness.client.create("cronjobs", cronjob(schedule="@yearly"))
    manual = job("manual")
    manual["metadata"]["annotations"] = {"cronjob.kubernetes.io/instantiate": "manual"}
    manual["metadata"]["ownerReferences"] = [{
        "apiVersion": "batch/v1", "kind": "CronJob", "name": "hello",
        "uid": cj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    await harness.client.create("jobs", manual)

    async def tracked():
        st = (await _cj(harness)).get("status") or {}
        return [a["name"] for a in st.get("active") or []] == ["manual"]
    await harness.eventually(tracked, what="manual job in status.active")
