"""HorizontalPodAutoscaler (autoscaling/v2): every sync period (15 s, as
--horizontal-pod-autoscaler-sync-period) read the target's scale subresource, the pods its
selector picks and their usage from the metrics API, compute the replicas each metric wants
(control.controllers.hpa_math), stabilize and limit them, write the scale and the status.

Conditions, reasons, messages and Events are kube-controller-manager's (horizontal.go):
AbleToScale (SucceededGetScale, SucceededRescale, FailedGetScale, ScaleDownStabilized, ...),
ScalingActive (ValidMetricFound, FailedGetResourceMetric, ScalingDisabled), ScalingLimited
(DesiredWithinRange, TooManyReplicas, ScaleUpLimit, ...); Events SuccessfulRescale,
FailedGetResourceMetric, FailedComputeMetricsReplicas. Usage comes through the
`MetricsSource` seam (control.models.metrics): in `knet control` the API server's own
metrics.k8s.io scraper. Resource and ContainerResource metrics are computed; Pods, Object and
External metrics need a custom metrics API knet does not serve, and say so in the condition.
"""

from __future__ import annotations

from typing import Any

from control.clientbase import Client, Obj
from control.clock import Clock, parse_rfc3339, rfc3339
from control.controllers.base import Controller, Requeue
from control.controllers.events import EventRecorder
from control.controllers.hpa_math import MetricError, PodSample, Recommender, resource_replicas
from control.controllers.util import deep, meta
from control.errors import ApiError, NotFound
from control.informer import Informer, object_key
from control.models.metrics import MetricsSource, PodUsage
from control.models.selectors import parse_label_selector
from control.scheduler import parse_quantity

__all__ = ["SCALABLE", "HorizontalPodAutoscalerController"]

SCALABLE = {("apps", "Deployment"): "deployments", ("apps", "ReplicaSet"): "replicasets",
            ("apps", "StatefulSet"): "statefulsets",
            ("", "ReplicationController"): "replicationcontrollers"}


def _ts(text: Any) -> float | None:
    dt = parse_rfc3339(text) if isinstance(text, str) else None
    return dt.timestamp() if dt else None


def _set_condition(status: Obj, ctype: str, value: str, reason: str, message: str,
                   now: str) -> None:
    conds = status.setdefault("conditions", [])
    for c in conds:
        if c.get("type") == ctype:
            if c.get("status") != value:
                c["lastTransitionTime"] = now
            c.update(status=value, reason=reason, message=message)
            return
    conds.append({"type": ctype, "status": value, "lastTransitionTime": now,
                  "reason": reason, "message": message})


def _millis(value: Any) -> float:
    return parse_quantity(value) * 1000.0


def _sample(pod: Obj, usage: PodUsage | None, resource: str, container: str | None) -> PodSample:
    status, spec = pod.get("status") or {}, pod.get("spec") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    request: float | None = 0.0
    missing = ""
    for c in spec.get("containers") or []:
        if container is not None and c.get("name") != container:
            continue
        value = ((c.get("resources") or {}).get("requests") or {}).get(resource)
        if value is None:
            request, missing = None, f"container {c.get('name')}"
            break
        request = (request or 0.0) + _millis(value)
    used: float | None = None
    if usage is not None:
        picked = [c for c in usage.containers if container is None or c.name == container]
        if picked:
            used = sum(c.cpu_nanocores / 1e6 if resource == "cpu" else c.memory_bytes * 1000.0
                       for c in picked)
    return PodSample(name=meta(pod)["name"], phase=status.get("phase") or "Pending",
                     deleting=bool(meta(pod).get("deletionTimestamp")),
                     ready=None if ready is None else ready.get("status") == "True",
                     ready_since=_ts((ready or {}).get("lastTransitionTime")),
                     started=_ts(status.get("startTime")), request=request,
                     missing_request=missing, usage=used,
                     timestamp=usage.timestamp if usage else 0.0,
                     window=usage.window if usage else 0.0)


class HorizontalPodAutoscalerController(Controller):
    name = "horizontalpodautoscaling"

    def __init__(self, client: Client, *, clock: Clock, recorder: EventRecorder,
                 hpas: Informer, pods: Informer, metrics: MetricsSource | None,
                 sync_period: float = 15.0, workers: int = 1) -> None:
        super().__init__(client, clock=clock, workers=workers)
        self.recorder, self.hpas, self.pods = recorder, hpas, pods
        self.metrics, self.sync_period = metrics, sync_period
        self.memory: dict[str, Recommender] = {}
        hpas.add_handler(on_add=lambda o: self.enqueue(object_key(o)),
                         on_update=self._updated, on_delete=self._deleted)

    def _updated(self, old: Obj, new: Obj) -> None:
        if old.get("spec") != new.get("spec"):
            self.enqueue(object_key(new))

    def _deleted(self, obj: Obj) -> None:
        self.memory.pop(object_key(obj), None)

    async def reconcile(self, key: str) -> None:
        hpa = self.hpas.get(key)
        if hpa is None:
            self.memory.pop(key, None)
            return
        try:
            await self._sync(key, hpa)
        except NotFound:
            return                      # the HPA went away meanwhile
        raise Requeue(self.sync_period)

    async def _sync(self, key: str, hpa: Obj) -> None:
        spec, now_dt = hpa.get("spec") or {}, self.clock.now()
        now, stamp = now_dt.timestamp(), rfc3339(now_dt)
        status = deep(hpa.get("status") or {})
        status["observedGeneration"] = meta(hpa).get("generation", 1)
        ref = spec.get("scaleTargetRef") or {}
        group = str(ref.get("apiVersion") or "").rpartition("/")[0]
        plural = SCALABLE.get((group, str(ref.get("kind"))))
        ns = meta(hpa)["namespace"]
        try:
            if plural is None:
                raise ApiError(f'no matches for kind "{ref.get("kind")}" in group "{group}"')
            scale = await self.client.get(plural, ref.get("name", ""), namespace=ns,
                                          subresource="scale")
        except ApiError as exc:
            await self.recorder.record(hpa, "Warning", "FailedGetScale", str(exc))
            _set_condition(status, "AbleToScale", "False", "FailedGetScale",
                           f"the HPA controller was unable to get the target's current scale: "
                           f"{exc}", stamp)
            return await self._write(hpa, status)
        _set_condition(status, "AbleToScale", "True", "SucceededGetScale",
                       "the HPA controller was able to get the target's current scale", stamp)
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        low, high = int(spec.get("minReplicas") or 1), int(spec.get("maxReplicas") or 1)
        memory = self.memory.setdefault(key, Recommender())
        if not memory.recommendations:
            memory.recommendations.append((current, now))
        desired, reason = current, ""
        if current == 0 and low != 0:
            _set_condition(status, "ScalingActive", "False", "ScalingDisabled",
                           "scaling is disabled since the replica count of the target is zero",
                           stamp)
        elif current > high:
            desired, reason = high, "Current number of replicas above Spec.MaxReplicas"
        elif current < low:
            desired, reason = low, "Current number of replicas below Spec.MinReplicas"
        else:
            proposal = await self._metrics(hpa, scale, current, status, now, stamp)
            if proposal is None:
                status["currentReplicas"] = current
                return await self._write(hpa, status)
            wanted, metric_name = proposal
            reason = (f"{metric_name} above target" if wanted > current
                      else "All metrics below target")
            scaled = memory.normalize(current=current, desired=wanted, low=low, high=high,
                                      now=now, behavior=spec.get("behavior"))
            _set_condition(status, "AbleToScale", "True", scaled.able_reason,
                           scaled.able_message, stamp)
            _set_condition(status, "ScalingLimited", "True" if scaled.limited else "False",
                           scaled.limit_reason, scaled.limit_message, stamp)
            desired = scaled.replicas
        if desired != current:
            body = deep(scale)
            body["spec"] = {**(body.get("spec") or {}), "replicas": desired}
            try:
                await self.client.update(plural or "", body, subresource="scale")
            except ApiError as exc:
                await self.recorder.record(hpa, "Warning", "FailedRescale",
                                           f"New size: {desired}; reason: {reason}; "
                                           f"error: {exc}")
                _set_condition(status, "AbleToScale", "False", "FailedUpdateScale",
                               f"the HPA controller was unable to update the target scale: "
                               f"{exc}", stamp)
                return await self._write(hpa, status)
            _set_condition(status, "AbleToScale", "True", "SucceededRescale",
                           f"the HPA controller was able to update the target scale to "
                           f"{desired}", stamp)
            await self.recorder.record(hpa, "Normal", "SuccessfulRescale",
                                       f"New size: {desired}; reason: {reason}")
            if spec.get("behavior") is not None:
                memory.record_scale(current, desired, now)
            status["lastScaleTime"] = stamp
        status["currentReplicas"], status["desiredReplicas"] = current, desired
        await self._write(hpa, status)

    async def _metrics(self, hpa: Obj, scale: Obj, current: int, status: Obj, now: float,
                       stamp: str) -> tuple[int, str] | None:
        """The largest replica count the metrics ask for and that metric's name; None (with
        conditions and Events) when no metric could be computed."""
        metrics = (hpa.get("spec") or {}).get("metrics") or []
        best: tuple[int, str] | None = None
        statuses: list[Obj] = []
        first_error: tuple[str, str] | None = None
        for metric in metrics:
            try:
                replicas, name, shown = await self._one(hpa, scale, current, metric, now)
            except MetricError as exc:
                kind = metric.get("type", "")
                reason = f"FailedGet{kind}Metric"
                await self.recorder.record(hpa, "Warning", reason, str(exc))
                first_error = first_error or (reason, str(exc))
                statuses.append({})
                continue
            statuses.append(shown)
            if best is None or replicas > best[0]:
                best = (replicas, name)
        status["currentMetrics"] = statuses if any(s.get("type") for s in statuses) else None
        if status["currentMetrics"] is None:
            status.pop("currentMetrics")
        if best is None:
            reason, message = first_error or ("InvalidMetricSourceType", "no metrics")
            _set_condition(status, "ScalingActive", "False", reason,
                           f"the HPA was unable to compute the replica count: {message}", stamp)
            await self.recorder.record(hpa, "Warning", "FailedComputeMetricsReplicas",
                                       f"invalid metrics ({len(metrics)} invalid out of "
                                       f"{len(metrics)}), first error is: {message}")
            return None
        _set_condition(status, "ScalingActive", "True", "ValidMetricFound",
                       f"the HPA was able to successfully calculate a replica count from "
                       f"{best[1]}", stamp)
        return best

    async def _one(self, hpa: Obj, scale: Obj, current: int, metric: Obj, now: float
                   ) -> tuple[int, str, Obj]:
        kind = metric.get("type")
        field = {"Resource": "resource", "ContainerResource": "containerResource"}.get(kind or "")
        if field is None:
            raise MetricError(f"{kind} metrics need a custom or external metrics API, which "
                              "knet does not serve; use Resource or ContainerResource metrics")
        source = metric.get(field) or {}
        resource, target = str(source.get("name")), source.get("target") or {}
        container = source.get("container") if field == "containerResource" else None
        utilization = target.get("type") == "Utilization"
        what = f"failed to get {resource} {'utilization' if utilization else 'usage'}"
        selector_text = (scale.get("status") or {}).get("selector") or ""
        if not selector_text:
            raise MetricError(f"{what}: the target's scale has no selector")
        if self.metrics is None:
            raise MetricError(f"{what}: unable to get metrics for resource {resource}: no "
                              "metrics API is configured")
        ns = meta(hpa)["namespace"]
        usage = await self.metrics.pod_usage(ns)
        if not usage:
            raise MetricError(f"{what}: unable to get metrics for resource {resource}: no "
                              "metrics returned from resource metrics API")
        selector = parse_label_selector(selector_text)
        pods = [_sample(p, usage.get(meta(p)["name"]), resource, container)
                for p in self.pods.list(namespace=ns) if selector.matches(meta(p).get("labels"))]
        want = (float(target.get("averageUtilization") or 0) if utilization
                else _millis(target.get("averageValue") or 0))
        try:
            replicas, shown, raw = resource_replicas(current, pods, resource=resource,
                                                     target=want, utilization=utilization,
                                                     now=now)
        except MetricError as exc:
            raise MetricError(f"{what}: {exc}") from None
        value = f"{int(raw)}m" if resource == "cpu" else str(int(raw / 1000))
        cur: Obj = {"averageValue": value}
        if utilization:
            cur["averageUtilization"] = int(shown)
        out: Obj = {"name": resource, "current": cur}
        if container is not None:
            out["container"] = container
        label = (f"{resource} resource utilization (percentage of request)" if utilization
                 else f"{resource} resource")
        if container is not None:
            label = f"{resource} container resource utilization (percentage of request)"
        return replicas, label, {"type": kind, field: out}

    async def _write(self, hpa: Obj, status: Obj) -> None:
        if status == (hpa.get("status") or {}):
            return
        body = deep(hpa)
        body["status"] = status
        await self.client.update("horizontalpodautoscalers", body, subresource="status")


def build_hpa(client: Client, *, clock: Clock, informers: Any, recorder: EventRecorder,
              sync_period: float) -> HorizontalPodAutoscalerController:
    """The controller as the manager runs it: usage from the client's metrics source (the
    API server's own scraper for `knet control`'s in-process client; None otherwise)."""
    return HorizontalPodAutoscalerController(
        client, clock=clock, recorder=recorder,
        hpas=informers.get("horizontalpodautoscalers"), pods=informers.get("pods"),
        metrics=getattr(client, "metrics", None), sync_period=sync_period)
