"""A Job's generated selector: the Job strategy's PrepareForCreate in kube-apiserver. Unless
`manualSelector: true`, the pod template gets `batch.kubernetes.io/controller-uid`,
`batch.kubernetes.io/job-name` and the legacy `controller-uid`/`job-name` labels, and the
selector matches the uid label, so a Job's pods are its own even when two Jobs share labels.
Apart from batch.py (validation) so that defaults.py can import it without a cycle.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CONTROLLER_UID", "JOB_NAME", "LEGACY_CONTROLLER_UID", "LEGACY_JOB_NAME",
           "generate_job_selector"]

Obj = dict[str, Any]
CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID = "controller-uid"
LEGACY_JOB_NAME = "job-name"


def generate_job_selector(obj: Obj) -> None:
    """PrepareForCreate of a Job: the generated labels and selector (unless manualSelector)."""
    spec, md = obj.get("spec"), obj.get("metadata")
    if not isinstance(spec, dict) or not isinstance(md, dict) or spec.get("manualSelector"):
        return
    template = spec.setdefault("template", {})
    if not isinstance(template, dict):
        return
    tmd = template.setdefault("metadata", {})
    if not isinstance(tmd, dict):
        return
    labels = tmd.setdefault("labels", {})
    if not isinstance(labels, dict):
        return
    uid, name = str(md.get("uid") or ""), str(md.get("name") or "")
    if not uid:
        return                      # admitted outside the object layer (no uid yet)
    for key in (LEGACY_JOB_NAME, JOB_NAME):
        labels.setdefault(key, name)
    for key in (LEGACY_CONTROLLER_UID, CONTROLLER_UID):
        labels.setdefault(key, uid)
    selector = spec.get("selector")
    if selector is None:
        selector = spec["selector"] = {}
    if isinstance(selector, dict):
        match = selector.setdefault("matchLabels", {})
        if isinstance(match, dict):
            match.setdefault(CONTROLLER_UID, uid)
