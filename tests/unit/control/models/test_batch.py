"""batch/v1 admission and printing: the generated selector, kube-apiserver's messages for bad
Jobs and CronJobs (robfig/cron's for schedules), immutable fields, and the `kubectl get`
cells of jobs and cronjobs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from control.api.objects import ObjectService
from control.errors import Invalid
from control.models.batchprinters import cronjob_cells, job_cells
from control.models.cronschedule import ScheduleError, parse_schedule
from control.models.validation import admit


def _job(**spec) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi",
                                                                  "namespace": "default"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "pi", "image": "perl:5.34.0"}]}}, **spec}}


def _cronjob(schedule: str = "*/1 * * * *", **spec) -> dict:
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "hello", "namespace": "default"},
            "spec": {"schedule": schedule, "jobTemplate": {"spec": _job()["spec"]}, **spec}}


def _message(resource: str, obj: dict) -> str:
    with pytest.raises(Invalid) as e:
        admit(resource, obj)
    return e.value.message


async def test_selector_and_labels_generated_from_the_uid(objects: ObjectService) -> None:
    out = (await objects.create("jobs", _job())).object
    uid = out["metadata"]["uid"]
    assert out["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    want = {"batch.kubernetes.io/controller-uid": uid, "controller-uid": uid,
            "batch.kubernetes.io/job-name": "pi", "job-name": "pi"}
    assert out["spec"]["template"]["metadata"]["labels"] == want
    assert out["metadata"]["labels"] == want


async def test_a_selector_without_manual_selector_is_refused(objects: ObjectService) -> None:
    body = _job(selector={"matchLabels": {"batch.kubernetes.io/controller-uid": "other"}})
    with pytest.raises(Invalid) as e:
        await objects.create("jobs", body)
    assert "spec.selector: Invalid value" in e.value.message
    assert "`selector` not auto-generated" in e.value.message


async def test_manual_selector_must_match_the_template(objects: ObjectService) -> None:
    body = _job(manualSelector=True, selector={"matchLabels": {"app": "x"}})
    with pytest.raises(Invalid) as e:
        await objects.create("jobs", body)
    assert "spec.template.metadata.labels: Invalid value" in e.value.message
    body["spec"]["template"]["metadata"] = {"labels": {"app": "x"}}
    out = (await objects.create("jobs", body)).object
    assert out["spec"]["selector"] == {"matchLabels": {"app": "x"}}
    assert out["spec"]["template"]["metadata"]["labels"] == {"app": "x"}


def test_negative_parallelism_names_the_field() -> None:
    assert _message("jobs", _job(parallelism=-1)) == (
        'Job.batch "pi" is invalid: spec.parallelism: Invalid value: -1: must be greater than '
        "or equal to 0")


def test_job_spec_rules() -> None:
    assert "spec.completions: Required value: when completion mode is Indexed" in _message(
        "jobs", _job(completionMode="Indexed", parallelism=2))
    assert "spec.backoffLimit: Invalid value: -2" in _message("jobs", _job(backoffLimit=-2))
    assert "spec.activeDeadlineSeconds: Invalid value: 0" in _message(
        "jobs", _job(activeDeadlineSeconds=0))
    bad = _job(podFailurePolicy={"rules": [{"action": "FailJob"}]})
    assert "specifying one of OnExitCodes and OnPodConditions is required" in _message(
        "jobs", bad)
    on_failure = _job(podFailurePolicy={"rules": [{"action": "Ignore", "onPodConditions": [
        {"type": "DisruptionTarget"}]}]})
    on_failure["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    assert 'only "Never" is supported when podFailurePolicy is specified' in _message(
        "jobs", on_failure)


async def test_template_is_immutable_unless_suspended(objects: ObjectService) -> None:
    job = (await objects.create("jobs", _job())).object
    changed = {**job, "spec": {**job["spec"], "template": {
        **job["spec"]["template"], "spec": {**job["spec"]["template"]["spec"],
                                            "activeDeadlineSeconds": 5}}}}
    with pytest.raises(Invalid) as e:
        await objects.update("jobs", changed)
    assert "spec.template: Invalid value" in e.value.message
    assert "field is immutable" in e.value.message
    await objects.update("jobs", {**job, "spec": {**job["spec"], "suspend": True}})


def test_bad_schedule_is_422_with_robfigs_message() -> None:
    assert _message("cronjobs", _cronjob("61 * * * *")) == (
        'CronJob.batch "hello" is invalid: spec.schedule: Invalid value: "61 * * * *": end of '
        "range (61) above maximum (59): 61")
    assert "expected exactly 5 fields, found 4: [* * * *]" in _message(
        "cronjobs", _cronjob("* * * *"))
    assert "unrecognized descriptor: @sometimes" in _message("cronjobs", _cronjob("@sometimes"))
    assert "cannot use TZ or CRON_TZ in schedule, use timeZone field instead" in _message(
        "cronjobs", _cronjob("TZ=UTC 0 * * * *"))
    assert "spec.schedule: Required value" in _message("cronjobs", _cronjob(""))


def test_fields_the_controller_ignores_are_kept_with_a_warning() -> None:
    out, warnings = admit("jobs", _job(completionMode="Indexed", completions=2,
                                       backoffLimitPerIndex=1))
    assert out["spec"]["backoffLimitPerIndex"] == 1
    assert warnings == [("spec.backoffLimitPerIndex: kept, but knet's Job controller ignores it "
                        "(backoffLimit and completions decide)")]


def test_cronjob_name_leaves_room_for_the_job_suffix() -> None:
    cj = _cronjob()
    cj["metadata"]["name"] = "x" * 53
    assert "metadata.name: Invalid value" in _message("cronjobs", cj)
    assert "must be no more than 52 characters" in _message("cronjobs", cj)
    cj["metadata"]["name"] = "x" * 52
    admit("cronjobs", cj)


def test_time_zone_must_be_iana() -> None:
    assert 'spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus' in \
        _message("cronjobs", _cronjob(timeZone="Mars/Olympus"))
    assert admit("cronjobs", _cronjob(timeZone="Europe/Paris"))[0]["spec"]["timeZone"] == \
        "Europe/Paris"


def test_cronjob_template_restart_policy() -> None:
    cj = _cronjob()
    cj["spec"]["jobTemplate"]["spec"]["template"]["spec"].pop("restartPolicy")
    assert 'spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: "Always"' in \
        _message("cronjobs", cj)


@pytest.mark.parametrize(("text", "after", "expect"), [
    ("@hourly", datetime(2026, 1, 1, 0, 30, tzinfo=UTC), datetime(2026, 1, 1, 1, tzinfo=UTC)),
    ("@daily", datetime(2026, 1, 1, 0, 30, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)),
    ("@weekly", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 4, tzinfo=UTC)),  # Sunday
    ("5/15 * * * *", datetime(2026, 1, 1, 0, 6, tzinfo=UTC),
     datetime(2026, 1, 1, 0, 20, tzinfo=UTC)),
    ("0 9 * jan mon-fri", datetime(2026, 1, 2, 10, tzinfo=UTC),
     datetime(2026, 1, 5, 9, tzinfo=UTC)),
    ("@every 90s", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 1, 30, tzinfo=UTC)),
])
def test_schedules_fire_as_kubernetes_does(text: str, after: datetime,
                                           expect: datetime) -> None:
    assert parse_schedule(text).next_after(after) == expect


def test_day_of_week_seven_is_refused_as_robfig_does() -> None:
    with pytest.raises(ScheduleError, match=r"end of range \(7\) above maximum \(6\): 7"):
        parse_schedule("0 0 * * 7")


NOW = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)


def test_job_row() -> None:
    job = _job(completions=3, parallelism=2, selector={"matchLabels": {"a": "b"}})
    job["metadata"]["creationTimestamp"] = "2026-01-01T00:59:00Z"
    job["status"] = {"succeeded": 1, "startTime": "2026-01-01T00:59:00Z"}
    assert job_cells(job, NOW) == ["pi", "Running", "1/3", "60s", "60s", "pi", "perl:5.34.0",
                                   "a=b"]
    job["status"].update(succeeded=3, completionTime="2026-01-01T00:59:42Z", conditions=[
        {"type": "SuccessCriteriaMet", "status": "True"},
        {"type": "Complete", "status": "True"}])
    assert job_cells(job, NOW)[1:4] == ["Complete", "3/3", "42s"]
    queue = _job(parallelism=4)
    assert job_cells(queue, NOW)[1:4] == ["Running", "0/1 of 4", ""]
    queue["status"] = {"conditions": [{"type": "Suspended", "status": "True"}]}
    assert job_cells(queue, NOW)[1] == "Suspended"
    queue["status"] = {"conditions": [{"type": "FailureTarget", "status": "True"},
                                      {"type": "Failed", "status": "True"}]}
    assert job_cells(queue, NOW)[1] == "Failed"


def test_cronjob_row() -> None:
    cj = _cronjob(suspend=False)
    cj["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    assert cronjob_cells(cj, NOW)[:7] == ["hello", "*/1 * * * *", "<none>", "False", 0,
                                          "<none>", "60m"]
    cj["spec"]["timeZone"] = "Europe/Paris"
    cj["status"] = {"active": [{"name": "hello-1"}], "lastScheduleTime": "2026-01-01T00:59:00Z"}
    assert cronjob_cells(cj, NOW)[2:6] == ["Europe/Paris", "False", 1, "60s"]
