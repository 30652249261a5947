"""The Job controller's rules, as pure functions: the pod failure policy (which rule a failed
pod matches: FailJob, Ignore, Count), the exponential back-off before replacing failed pods
(base doubling per failure since the last success, capped; 10 s and 6 min upstream), and the
Job's conditions (Complete, Failed, Suspended, SuccessCriteriaMet, FailureTarget) with
upstream's reasons and messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from control.clientbase import Obj
from control.clock import rfc3339
from control.controllers.job_pods import finish_time
from control.controllers.util import meta

__all__ = ["Backoff", "Verdict", "condition", "failure_verdict", "has_condition",
           "set_condition"]

# (type, status) -> (reason, message) of the conditions the controller writes
BACKOFF_EXCEEDED = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")
COMPLETIONS_REACHED = ("CompletionsReached", "Reached expected number of succeeded pods")


@dataclass(frozen=True)
class Verdict:
    """What a failed pod means under the Job's podFailurePolicy."""

    action: str                 # FailJob, Ignore, Count (FailIndex acts as Count here)
    message: str = ""


def _exit_code_match(rule: Obj, pod: Obj) -> str | None:
    codes = rule.get("onExitCodes") or {}
    op, values, only = codes.get("operator"), codes.get("values") or [], codes.get(
        "containerName")
    status = pod.get("status") or {}
    for cs in [*(status.get("initContainerStatuses") or []),
               *(status.get("containerStatuses") or [])]:
        term = (cs.get("state") or {}).get("terminated") or {}
        code = term.get("exitCode")
        if not term or code in (None, 0) or (only and cs.get("name") != only):
            continue
        if (op == "In" and code in values) or (op == "NotIn" and code not in values):
            return f"Container {cs.get('name')} for pod {_pod_key(pod)} failed with exit " \
                   f"code {code} matching {rule.get('action')} rule at index {{index}}"
    return None


def _condition_match(rule: Obj, pod: Obj) -> str | None:
    for pattern in rule.get("onPodConditions") or []:
        want = pattern.get("status") or "True"
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == pattern.get("type") and cond.get("status") == want:
                return f"Pod {_pod_key(pod)} has condition {cond.get('type')} matching " \
                       f"{rule.get('action')} rule at index {{index}}"
    return None


def _pod_key(pod: Obj) -> str:
    return f"{meta(pod).get('namespace')}/{meta(pod).get('name')}"


def failure_verdict(policy: Obj | None, pod: Obj) -> Verdict:
    """The first rule a failed pod matches decides; no match (or no policy) counts it."""
    for index, rule in enumerate((policy or {}).get("rules") or []):
        message = _exit_code_match(rule, pod) if rule.get("onExitCodes") else \
            _condition_match(rule, pod)
        if message is not None:
            action = str(rule.get("action"))
            return Verdict("Count" if action == "FailIndex" else action,
                           message.replace("{index}", str(index)))
    return Verdict("Count")


@dataclass(frozen=True)
class Backoff:
    """The delay before a failed Job pod is replaced: base * 2^(n-1), at most `maximum`,
    n = failures since the last success, counted from the last failure."""

    base: float = 10.0
    maximum: float = 360.0

    def remaining(self, succeeded: list[Obj], failed: list[Obj], now: datetime) -> float:
        last_success = max((finish_time(p, now) for p in succeeded), default=None)
        fails = sorted(t for t in (finish_time(p, now) for p in failed)
                       if last_success is None or t > last_success)
        if not fails or self.base <= 0:
            return 0.0
        delay = min(self.base * 2.0 ** (len(fails) - 1), self.maximum)
        return max(0.0, (fails[-1] - now).total_seconds() + delay)


def condition(job: Obj, ctype: str) -> dict[str, Any] | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return None


def has_condition(job: Obj, ctype: str) -> bool:
    c = condition(job, ctype)
    return bool(c and c.get("status") == "True")


def set_condition(status: Obj, ctype: str, value: str, reason: str, message: str,
                  now: datetime) -> bool:
    """Add or update a condition in `status` (in place); True if anything changed.
    lastTransitionTime moves only when the status flips, lastProbeTime on every change."""
    conds: list[Obj] = status.setdefault("conditions", [])
    stamp = rfc3339(now)
    for c in conds:
        if c.get("type") != ctype:
            continue
        if (c.get("status"), c.get("reason"), c.get("message")) == (value, reason, message):
            return False
        if c.get("status") != value:
            c["lastTransitionTime"] = stamp
        c.update(status=value, reason=reason, message=message, lastProbeTime=stamp)
        return True
    conds.append({"type": ctype, "status": value, "reason": reason, "message": message,
                  "lastProbeTime": stamp, "lastTransitionTime": stamp})
    return True
