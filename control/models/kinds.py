"""Which pydantic model describes each resource (by plural, as in resources.py).

    pod = model_for("pods").model_validate(obj)      # typed access
    obj = pod.to_wire()                                # back to Kubernetes JSON
"""

from __future__ import annotations

from control.models.cluster import ConfigMap, Event, Lease, Namespace, Node, Secret, ServiceAccount
from control.models.meshkinds import MESH_MODELS
from control.models.meta import TopLevel
from control.models.networkmodels import Ingress, IngressClass, NetworkPolicy, PodDisruptionBudget
from control.models.pod import Pod
from control.models.rbac import ClusterRole, ClusterRoleBinding, Role, RoleBinding
from control.models.service import Endpoints, EndpointSlice, Service
from control.models.storagekinds import STORAGE_MODELS
from control.models.workloads import (
    ControllerRevision,
    CronJob,
    DaemonSet,
    Deployment,
    Job,
    ReplicaSet,
    ReplicationController,
    StatefulSet,
)

__all__ = ["MODELS", "model_for"]

MODELS: dict[str, type[TopLevel]] = {
    "namespaces": Namespace, "nodes": Node, "pods": Pod, "services": Service,
    "endpoints": Endpoints, "endpointslices": EndpointSlice, "configmaps": ConfigMap,
    "secrets": Secret, "events": Event, "serviceaccounts": ServiceAccount, "leases": Lease,
    "replicationcontrollers": ReplicationController, "replicasets": ReplicaSet,
    "deployments": Deployment, "daemonsets": DaemonSet, "statefulsets": StatefulSet,
    "jobs": Job, "cronjobs": CronJob, "controllerrevisions": ControllerRevision,
    "roles": Role, "clusterroles": ClusterRole, "rolebindings": RoleBinding,
    "clusterrolebindings": ClusterRoleBinding,
    "ingresses": Ingress, "ingressclasses": IngressClass, "networkpolicies": NetworkPolicy,
    "poddisruptionbudgets": PodDisruptionBudget,
}

MODELS.update(MESH_MODELS)  # the mesh kinds (control/models/meshkinds.py)
MODELS.update(STORAGE_MODELS)  # PV, PVC, StorageClass (control/models/storagekinds.py)


def model_for(resource: str) -> type[TopLevel]:
    """The model of a resource plural; the permissive TopLevel for any other."""
    return MODELS.get(resource, TopLevel)
