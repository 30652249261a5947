"""batch/v1 admission: a Job's generated selector, and kube-apiserver's validation of Job and
CronJob (pkg/apis/batch/validation), with its messages.

Selector generation is the Job strategy's PrepareForCreate: unless `manualSelector: true`, the
pod template gets `batch.kubernetes.io/controller-uid`, `batch.kubernetes.io/job-name` and the
legacy `controller-uid`/`job-name` labels, and the selector matches the uid label, so a Job's
pods are its own even when two Jobs share labels. CronJob schedules and time zones are checked
by control.models.cronschedule (robfig/cron's and Go's messages).
"""

from __future__ import annotations

from typing import Any

from control.models.batchdefaults import (
    CONTROLLER_UID,
    JOB_NAME,
    LEGACY_CONTROLLER_UID,
    LEGACY_JOB_NAME,
    generate_job_selector,
)
from control.models.cronschedule import ScheduleError, load_zone, parse_schedule
from control.models.fielderrors import FieldErrors
from control.models.podvalidation import validate_pod_spec
from control.models.workloadvalidation import validate_labels, validate_spec_selector

__all__ = ["CONTROLLER_UID", "JOB_NAME", "LEGACY_CONTROLLER_UID", "LEGACY_JOB_NAME",
           "generate_job_selector", "validate_cronjob", "validate_cronjob_update",
           "validate_job", "validate_job_update"]

Obj = dict[str, Any]
_MAX_INDEXED = 100_000
_MAX_CRONJOB_NAME = 52
_IGNORED = ("backoffLimitPerIndex", "maxFailedIndexes", "successPolicy", "managedBy")
_EXIT_OPS = ("In", "NotIn")
_ACTIONS = ("FailJob", "FailIndex", "Ignore", "Count")


def _nonneg(errs: FieldErrors, spec: Obj, path: str, *keys: str) -> None:
    for key in keys:
        if spec.get(key) is not None:
            errs.int_range(f"{path}.{key}", spec[key], 0)


def _selector(errs: FieldErrors, obj: Obj, spec: Obj, path: str, generated: bool) -> None:
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    validate_labels(errs, f"{path}.template.metadata.labels", labels)
    if not generated:                                 # a CronJob's jobTemplate: no selector yet
        if spec.get("selector") is not None:
            validate_spec_selector(errs, f"{path}.selector", spec["selector"])
        return
    uid = (obj.get("metadata") or {}).get("uid")
    if spec.get("selector") is None and not spec.get("manualSelector") and not uid:
        return                      # admitted outside the object layer: nothing generated yet
    selector = validate_spec_selector(errs, f"{path}.selector", spec.get("selector"))
    if selector is None:
        return
    generated_uid = ((spec.get("selector") or {}).get("matchLabels") or {}).get(CONTROLLER_UID)
    if not spec.get("manualSelector") and uid and generated_uid != uid:
        errs.invalid(f"{path}.selector", spec.get("selector"), "`selector` not auto-generated")
        return
    if not selector.matches(labels if isinstance(labels, dict) else None):
        errs.invalid(f"{path}.template.metadata.labels", labels or {},
                     "`selector` does not match template `labels`")


def _pod_failure_policy(errs: FieldErrors, policy: Any, path: str) -> None:
    if not isinstance(policy, dict):
        errs.type_error(path, policy, "an object with rules")
        return
    for i, rule in enumerate(errs.list_of(f"{path}.rules", policy.get("rules"))):
        rp = f"{path}.rules[{i}]"
        if not isinstance(rule, dict):
            errs.type_error(rp, rule, "an object")
            continue
        errs.one_of(f"{rp}.action", rule.get("action"), _ACTIONS)
        codes, conds = rule.get("onExitCodes"), rule.get("onPodConditions")
        if (codes is None) == (conds is None):
            errs.invalid(rp, rule, "specifying one of OnExitCodes and OnPodConditions is "
                         "required")
            continue
        if isinstance(codes, dict):
            errs.one_of(f"{rp}.onExitCodes.operator", codes.get("operator"), _EXIT_OPS)
            values = errs.list_of(f"{rp}.onExitCodes.values", codes.get("values"))
            if not values:
                errs.required(f"{rp}.onExitCodes.values", "at least one value is required")
            for j, v in enumerate(values):
                if isinstance(v, bool) or not isinstance(v, int):
                    errs.type_error(f"{rp}.onExitCodes.values[{j}]", v, "an integer")
                elif v == 0 and codes.get("operator") == "In":
                    errs.invalid(f"{rp}.onExitCodes.values[{j}]", v,
                                 "must not be 0 for the In operator")
            if len(set(map(str, values))) != len(values):
                errs.invalid(f"{rp}.onExitCodes.values", values, "must be unique")
        for j, cond in enumerate(errs.list_of(f"{rp}.onPodConditions", conds)):
            if isinstance(cond, dict):
                errs.one_of(f"{rp}.onPodConditions[{j}].status", cond.get("status", "True"),
                            ("True", "False", "Unknown"))
                if not cond.get("type"):
                    errs.required(f"{rp}.onPodConditions[{j}].type")


def validate_job_spec(errs: FieldErrors, obj: Obj, spec: Any, path: str, *,
                      generated: bool) -> None:
    if not isinstance(spec, dict):
        errs.required(path) if spec is None else errs.type_error(path, spec, "an object")
        return
    _nonneg(errs, spec, path, "parallelism", "completions", "backoffLimit",
            "ttlSecondsAfterFinished")
    if spec.get("activeDeadlineSeconds") is not None:
        errs.int_range(f"{path}.activeDeadlineSeconds", spec["activeDeadlineSeconds"], 1)
    _selector(errs, obj, spec, path, generated)
    mode = spec.get("completionMode", "NonIndexed")
    errs.one_of(f"{path}.completionMode", mode, ("NonIndexed", "Indexed"))
    if mode == "Indexed":
        completions = spec.get("completions")
        if completions is None:
            errs.required(f"{path}.completions", "when completion mode is Indexed")
        elif isinstance(completions, int) and completions > _MAX_INDEXED:
            errs.invalid(f"{path}.completions", completions,
                         f"must be less than or equal to {_MAX_INDEXED} when completion "
                         "mode is Indexed")
        parallelism = spec.get("parallelism")
        if isinstance(parallelism, int) and parallelism > _MAX_INDEXED:
            errs.invalid(f"{path}.parallelism", parallelism,
                         f"must be less than or equal to {_MAX_INDEXED} when completion "
                         "mode is Indexed")
    template = spec.get("template")
    if not isinstance(template, dict):
        errs.required(f"{path}.template")
        return
    pod = template.get("spec")
    validate_pod_spec(errs, pod, f"{path}.template.spec", template=False)
    if isinstance(pod, dict):
        restart = pod.get("restartPolicy")
        known = errs.one_of(f"{path}.template.spec.restartPolicy", restart,
                            ("OnFailure", "Never"))
        if known and spec.get("podFailurePolicy") is not None and restart != "Never":
            errs.invalid(f"{path}.template.spec.restartPolicy", restart,
                         'only "Never" is supported when podFailurePolicy is specified')
    if spec.get("podFailurePolicy") is not None:
        _pod_failure_policy(errs, spec["podFailurePolicy"], f"{path}.podFailurePolicy")
    for key in _IGNORED:
        if spec.get(key) is not None:
            errs.warn(f"{path}.{key}", "kept, but knet's Job controller ignores it (backoffLimit "
                      "and completions decide)")


def validate_job(errs: FieldErrors, obj: Obj) -> None:
    validate_job_spec(errs, obj, obj.get("spec"), "spec", generated=True)


def validate_job_update(errs: FieldErrors, new: Obj, old: Obj) -> None:
    """The Job fields kube-apiserver keeps immutable (the template only while running)."""
    ns, os_ = new.get("spec") or {}, old.get("spec") or {}
    for key in ("selector", "completionMode", "manualSelector", "podFailurePolicy"):
        if ns.get(key) != os_.get(key):
            errs.invalid(f"spec.{key}", ns.get(key), "field is immutable")
    if ns.get("completions") != os_.get("completions") and not (
            ns.get("completionMode") == "Indexed"
            and ns.get("completions") == ns.get("parallelism")):
        errs.invalid("spec.completions", ns.get("completions"), "field is immutable")
    if ns.get("template") != os_.get("template") and not (ns.get("suspend")
                                                          and os_.get("suspend")):
        errs.invalid("spec.template", ns.get("template"), "field is immutable")


def validate_cronjob(errs: FieldErrors, obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        errs.required("spec") if spec is None else errs.type_error("spec", spec, "an object")
        return
    name = (obj.get("metadata") or {}).get("name")
    if isinstance(name, str) and len(name) > _MAX_CRONJOB_NAME:     # + "-<minutes>" for Jobs
        errs.invalid("metadata.name", name,
                     f"must be no more than {_MAX_CRONJOB_NAME} characters")
    schedule = spec.get("schedule")
    if not schedule:
        errs.required("spec.schedule")
    elif not isinstance(schedule, str):
        errs.type_error("spec.schedule", schedule, "a string")
    else:
        try:
            parse_schedule(schedule)
        except ScheduleError as exc:
            errs.invalid("spec.schedule", schedule, str(exc))
        if "TZ" in schedule:
            errs.invalid("spec.schedule", schedule,
                         "cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
    if spec.get("timeZone") is not None:
        try:
            load_zone(str(spec["timeZone"]))
        except ValueError as exc:
            errs.invalid("spec.timeZone", spec["timeZone"], str(exc))
    errs.one_of("spec.concurrencyPolicy", spec.get("concurrencyPolicy", "Allow"),
                ("Allow", "Forbid", "Replace"))
    _nonneg(errs, spec, "spec", "startingDeadlineSeconds", "successfulJobsHistoryLimit",
            "failedJobsHistoryLimit")
    template = spec.get("jobTemplate")
    if not isinstance(template, dict):
        errs.required("spec.jobTemplate")
        return
    validate_job_spec(errs, obj, template.get("spec"), "spec.jobTemplate.spec",
                      generated=False)


def validate_cronjob_update(errs: FieldErrors, new: Obj, old: Obj) -> None:
    """Nothing is immutable in a CronJob; the checks of a create apply (done by admit)."""
