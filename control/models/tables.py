"""meta.k8s.io/v1 Table responses for `kubectl get` (Accept: ...;as=Table).

    table("pods", objs)  ->  {"kind": "Table", "columnDefinitions": [...], "rows": [...]}

Columns are Kubernetes' own, wide ones with priority 1 (kubectl shows them with `-o wide`);
every row carries its object as kube-apiserver's `includeObject` says: PartialObjectMetadata
by default ("Metadata": kubectl's `-A` NAMESPACE column needs it), the whole object for
"Object" (`kubectl get --sort-by` on any field outside metadata), none for "None". A resource without printer gets
NAME and AGE. Cells come from control.models.printers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from control.models import networking
from control.models import printers as p
from control.models.autoscaling import AUTOSCALING_COLUMNS, AUTOSCALING_PRINTERS
from control.models.batchprinters import BATCH_COLUMNS, BATCH_PRINTERS
from control.models.storage import STORAGE_COLUMNS, STORAGE_PRINTERS

__all__ = ["Column", "columns", "table"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]
Column = tuple[str, str, int, str]          # name, type, priority, description
Printer = Callable[[Obj, datetime], list[Any]]

_NAME_DOC = ("Name must be unique within a namespace. Is required when creating resources, "
             "although some resources may allow a client to request the generation of an "
             "appropriate name automatically. Cannot be updated.")
_AGE_DOC = ("CreationTimestamp is a timestamp representing the server time when this object "
            "was created.")
NAME: Column = ("Name", "string", 0, _NAME_DOC)
AGE: Column = ("Age", "string", 0, _AGE_DOC)
_WIDE_WORKLOAD = [("Containers", "string", 1, "Names of each container in the template."),
                  ("Images", "string", 1, ("Images referenced by each container in the "
                                          "template.")),
                  ("Selector", "string", 1, ("Label query over pods that should match the "
                                            "replicas count."))]
_RS = [NAME, ("Desired", "integer", 0, "Number of desired pods."),
       ("Current", "integer", 0, "Number of actual replicas."),
       ("Ready", "integer", 0, "The number of ready replicas for this replica set."),
       AGE, *_WIDE_WORKLOAD]

_ROLE = [NAME, ("Created At", "date", 0, _AGE_DOC)]
_BINDING = [NAME, ("Role", "string", 0, ("RoleRef can reference a Role in the current namespace "
                                         "or a ClusterRole in the global namespace.")),
            AGE, ("Users", "string", 1, "Users in the roleBinding"),
            ("Groups", "string", 1, "Groups in the roleBinding"),
            ("ServiceAccounts", "string", 1, "ServiceAccounts in the roleBinding")]

_COLUMNS: dict[str, list[Column]] = {
    "pods": [NAME,
             ("Ready", "string", 0, ("The aggregate readiness state of this pod for accepting "
                                    "traffic.")),
             ("Status", "string", 0, "The aggregate status of the containers in this pod."),
             ("Restarts", "string", 0, ("The number of times the containers in this pod have "
                                       "been restarted and when the last container in this "
                                       "pod has restarted.")),
             AGE,
             ("IP", "string", 1, ("IP address allocated to the pod. Routable at least within "
                                 "the cluster. Empty if not yet allocated.")),
             ("Node", "string", 1, ("NodeName is a request to schedule this pod onto a "
                                   "specific node.")),
             ("Nominated Node", "string", 1, ("nominatedNodeName is set only when this pod "
                                             "preempts other pods on the node.")),
             ("Readiness Gates", "string", 1, ("If specified, all readiness gates will be "
                                              "evaluated for pod readiness."))],
    "services": [NAME,
                 ("Type", "string", 0, "type determines how the Service is exposed."),
                 ("Cluster-IP", "string", 0, "clusterIP is the IP address of the service."),
                 ("External-IP", "string", 0, ("externalIPs is a list of IP addresses for "
                                              "which nodes in the cluster will also accept "
                                              "traffic for this service.")),
                 ("Port(s)", "string", 0, ("The list of ports that are exposed by this "
                                          "service.")),
                 AGE,
                 ("Selector", "string", 1, ("Route service traffic to pods with label keys "
                                           "and values matching this selector."))],
    "deployments": [NAME,
                    ("Ready", "string", 0, "Number of the pod with ready state"),
                    ("Up-to-date", "integer", 0, ("Total number of non-terminated pods "
                                                 "targeted by this deployment that have the "
                                                 "desired template spec.")),
                    ("Available", "integer", 0, ("Total number of available pods (ready for "
                                                "at least minReadySeconds) targeted by this "
                                                "deployment.")),
                    AGE, *_WIDE_WORKLOAD],
    "replicasets": _RS,
    "replicationcontrollers": _RS,
    "nodes": [NAME,
              ("Status", "string", 0, "The status of the node"),
              ("Roles", "string", 0, "The roles of the node"),
              AGE,
              ("Version", "string", 0, "Kubelet Version reported by the node."),
              ("Internal-IP", "string", 1, "List of addresses reachable to the node."),
              ("External-IP", "string", 1, "List of addresses reachable to the node."),
              ("OS-Image", "string", 1, "OS Image reported by the node."),
              ("Kernel-Version", "string", 1, "Kernel Version reported by the node."),
              ("Container-Runtime", "string", 1, ("Container Runtime Version reported by "
                                                 "the node."))],
    "endpoints": [NAME, ("Endpoints", "string", 0, "Endpoints of the service"), AGE],
    "endpointslices": [NAME,
                       ("AddressType", "string", 0, ("Type of address carried by this "
                                                    "EndpointSlice.")),
                       ("Ports", "string", 0, "Ports of the endpoint slice."),
                       ("Endpoints", "string", 0, "Addresses of the endpoints."),
                       AGE],
    "namespaces": [NAME, ("Status", "string", 0, "The status of the namespace"), AGE],
    "configmaps": [NAME, ("Data", "integer", 0, "Number of keys in the config map"), AGE],
    "secrets": [NAME, ("Type", "string", 0, "The type of the secret"),
                ("Data", "integer", 0, "Number of keys in the secret"), AGE],
    "events": [("Last Seen", "string", 0, "Time of the most recent occurrence."),
               ("Type", "string", 0, "Type of this event (Normal, Warning)."),
               ("Reason", "string", 0, "Short reason of the event."),
               ("Object", "string", 0, "The object this event is about."),
               ("Subobject", "string", 1, "The part of the object this event is about."),
               ("Source", "string", 1, "The component reporting this event."),
               ("Message", "string", 0, "A human-readable description of the event."),
               ("First Seen", "string", 1, "Time of the first occurrence."),
               ("Count", "string", 1, "The number of times this event has occurred."),
               ("Name", "string", 1, _NAME_DOC)],
    "leases": [NAME, ("Holder", "string", 0, "The holder of the lease"), AGE],
    "statefulsets": [NAME, ("Ready", "string", 0, "Number of the pod with ready state"), AGE,
                     *_WIDE_WORKLOAD[:2]],
    "daemonsets": [NAME,
                   ("Desired", "integer", 0, ("The total number of nodes that should be "
                                             "running the daemon pod.")),
                   ("Current", "integer", 0, "The number of nodes running the daemon pod."),
                   ("Ready", "integer", 0, "The number of nodes with the daemon pod ready."),
                   ("Up-to-date", "integer", 0, ("The number of nodes running the updated "
                                                "daemon pod.")),
                   ("Available", "integer", 0, ("The number of nodes with the daemon pod "
                                               "available.")),
                   ("Node Selector", "string", 0, "Nodes the daemon pod must run on."),
                   AGE, *_WIDE_WORKLOAD],
    "serviceaccounts": [NAME, ("Secrets", "integer", 0, "Number of secrets."), AGE],
    "roles": _ROLE, "clusterroles": _ROLE,
    "rolebindings": _BINDING, "clusterrolebindings": _BINDING,
    "controllerrevisions": [NAME,
                            ("Controller", "string", 0, "The owner of the revision."),
                            ("Revision", "integer", 0, "The revision number."), AGE],
    **networking.COLUMNS,
}


def _md(obj: Obj, key: str) -> Any:
    md = obj.get("metadata")
    return md.get(key) if isinstance(md, dict) else None


def _created(obj: Obj, now: datetime) -> str:
    return p.age(_md(obj, "creationTimestamp"), now)


def _simple(*cells: Callable[[Obj], Any]) -> Printer:
    """NAME, the given cells, AGE."""
    def row(obj: Obj, now: datetime) -> list[Any]:
        return [_md(obj, "name"), *(c(obj) for c in cells), _created(obj, now)]
    return row


def _status(obj: Obj) -> dict[str, Any]:
    status = obj.get("status")
    return status if isinstance(status, dict) else {}


def _spec(obj: Obj) -> dict[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _statefulset(obj: Obj, now: datetime) -> list[Any]:
    names, images = p.containers_images(obj)
    ready = f"{_status(obj).get('readyReplicas') or 0}/{_spec(obj).get('replicas', 1)}"
    return [_md(obj, "name"), ready, _created(obj, now), names, images]


def _daemonset(obj: Obj, now: datetime) -> list[Any]:
    s = _status(obj)
    names, images = p.containers_images(obj)
    selector = p.dig(obj, "spec", "template", "spec", "nodeSelector")
    return [_md(obj, "name"), s.get("desiredNumberScheduled") or 0,
            s.get("currentNumberScheduled") or 0, s.get("numberReady") or 0,
            s.get("updatedNumberScheduled") or 0, s.get("numberAvailable") or 0,
            p.format_labels(selector), _created(obj, now), names, images,
            p.selector_string(_spec(obj).get("selector"))]


def _revision_owner(obj: Obj) -> str:
    """`statefulset.apps/web`, as kubectl shows a revision's controller."""
    for ref in _md(obj, "ownerReferences") or []:
        if ref.get("controller"):
            group, _, _version = str(ref.get("apiVersion") or "").rpartition("/")
            kind = str(ref.get("kind") or "").lower() + (f".{group}" if group else "")
            return f"{kind}/{ref.get('name')}"
    return "<none>"


def _role(obj: Obj, now: datetime) -> list[Any]:
    """kubectl's printRole: the creation time as RFC 3339, not an age."""
    created = p.parse_time(_md(obj, "creationTimestamp"))
    return [_md(obj, "name"), created.strftime("%Y-%m-%dT%H:%M:%SZ") if created else ""]


def _binding(obj: Obj, now: datetime) -> list[Any]:
    """kubectl's printRoleBinding: ROLE is Kind/name; the wide cells list the subjects."""
    ref = obj.get("roleRef")
    ref = ref if isinstance(ref, dict) else {}
    kinds: dict[str, list[str]] = {"User": [], "Group": [], "ServiceAccount": []}
    for s in obj.get("subjects") or []:
        name = s.get("name") or ""
        if s.get("kind") == "ServiceAccount":
            name = f"{s.get('namespace') or ''}/{name}"
        kinds.setdefault(s.get("kind") or "", []).append(name)
    return [_md(obj, "name"), f"{ref.get('kind')}/{ref.get('name')}", _created(obj, now),
            ", ".join(kinds["User"]), ", ".join(kinds["Group"]),
            ", ".join(kinds["ServiceAccount"])]


_PRINTERS: dict[str, Printer] = {
    "pods": p.pod_cells, "services": p.service_cells, "deployments": p.deployment_cells,
    "replicasets": p.replicaset_cells, "replicationcontrollers": p.replicaset_cells,
    "nodes": p.node_cells, "endpoints": p.endpoints_cells,
    "endpointslices": p.endpointslice_cells, "events": p.event_cells,
    "namespaces": _simple(lambda o: _status(o).get("phase") or ""),
    "configmaps": _simple(lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {})),
    "secrets": _simple(lambda o: o.get("type") or "", lambda o: len(o.get("data") or {})),
    "leases": _simple(lambda o: _spec(o).get("holderIdentity") or ""),
    "serviceaccounts": _simple(lambda o: len(o.get("secrets") or [])),
    "controllerrevisions": _simple(_revision_owner, lambda o: o.get("revision") or 0),
    "statefulsets": _statefulset, "daemonsets": _daemonset, **networking.PRINTERS,
    "roles": _role, "clusterroles": _role,
    "rolebindings": _binding, "clusterrolebindings": _binding,
}

_COLUMNS.update(BATCH_COLUMNS)  # jobs, cronjobs (control/models/batchprinters.py)
_PRINTERS.update(BATCH_PRINTERS)
_COLUMNS.update(STORAGE_COLUMNS)  # PV, PVC, StorageClass (control/models/storage.py)
_PRINTERS.update(STORAGE_PRINTERS)
_COLUMNS.update(AUTOSCALING_COLUMNS)  # HorizontalPodAutoscaler (control/models/autoscaling.py)
_PRINTERS.update(AUTOSCALING_PRINTERS)


def columns(resource: str) -> list[Obj]:
    """The columnDefinitions of a resource's Table."""
    cols = _COLUMNS.get(resource, [NAME, AGE])
    return [{"name": name, "type": kind, "format": "name" if name == "Name" else "",
             "description": doc, "priority": prio} for name, kind, prio, doc in cols]


def _row(resource: str, printer: Printer, obj: Obj, now: datetime, include: str) -> Obj:
    try:
        cells = printer(obj, now)
    except (TypeError, AttributeError, ValueError, KeyError) as exc:
        # a stored object of a kind admission does not check (jobs, daemonsets, ...) with a
        # malformed field: show the row rather than fail the whole list
        name = _md(obj, "name") if isinstance(obj, dict) else None
        log.warning("%s/%s: cannot print a table row (%s: %s); showing <invalid> cells",
                    resource, name, type(exc).__name__, exc)
        cells = [name, *["<invalid>"] * (len(_COLUMNS.get(resource, [NAME, AGE])) - 1)]
    row: Obj = {"cells": cells}
    if resource == "pods":
        conditions = p.pod_row_conditions(obj)
        if conditions:
            row["conditions"] = conditions
    if include == "Object":
        row["object"] = obj
    elif include != "None":
        md = obj.get("metadata") if isinstance(obj, dict) else None
        row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                         "metadata": md if isinstance(md, dict) else {}}
    return row


def table(resource: str, objs: list[Obj], *, now: datetime | None = None,
          include: str = "Metadata", include_columns: bool = True,
          list_meta: Obj | None = None) -> Obj:
    """A meta.k8s.io/v1 Table of `objs` (wire dicts of `resource`, a plural).

    `include`: what each row's `object` is, as the includeObject query parameter says
    ("None", "Metadata" or "Object").
    `include_columns=False` leaves columnDefinitions empty (watch events after the first);
    `list_meta` becomes the Table's metadata (resourceVersion, continue)."""
    now = now or datetime.now(UTC)
    printer = _PRINTERS.get(resource) or _simple()
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": dict(list_meta or {}),
            "columnDefinitions": columns(resource) if include_columns else [],
            "rows": [_row(resource, printer, o, now, include) for o in objs]}
