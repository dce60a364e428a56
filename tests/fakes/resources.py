"""The API resources the fake API server serves, and its discovery documents.

Only the kinds the course's manifests and helpers touch. Each entry is what the
real server lists in its discovery document (``kubectl api-resources`` prints the
same columns): the group, version, plural name, kind, whether it is namespaced,
and its verbs. The dynamic client (kubernetes/dynamic/discovery.py) builds its
resource table from ``/api``, ``/apis``, ``/api/v1`` and ``/apis/<group>/<version>``.

Discovery shapes: APIVersions, APIGroupList and APIResourceList in
https://kubernetes.io/docs/reference/using-api/api-concepts/ and the apimachinery
types (staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/types.go).
"""
from __future__ import annotations

from dataclasses import dataclass

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def qualified(self) -> str:
        """How the API server names it in messages: ``pods``, ``deployments.apps``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES = (
    Resource("", "v1", "namespaces", "Namespace", False, subresources=("status", "finalize")),
    Resource("", "v1", "persistentvolumes", "PersistentVolume", False, subresources=("status",)),
    Resource("", "v1", "nodes", "Node", False, subresources=("status", "proxy")),
    Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, subresources=("status",)),
    Resource("", "v1", "secrets", "Secret", True),
    Resource("", "v1", "configmaps", "ConfigMap", True),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, subresources=("token",)),
    Resource("", "v1", "services", "Service", True, subresources=("status", "proxy")),
    Resource("", "v1", "pods", "Pod", True, subresources=("status", "log", "portforward", "exec", "eviction")),
    Resource("", "v1", "events", "Event", True),
    Resource("events.k8s.io", "v1", "events", "Event", True),   # the same events, newer API: kind Event twice
    Resource("apps", "v1", "deployments", "Deployment", True, subresources=("status", "scale")),
    Resource("apps", "v1", "replicasets", "ReplicaSet", True, subresources=("status", "scale")),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    Resource("storage.k8s.io", "v1", "storageclasses", "StorageClass", False),
    Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    # Built into every API server (https://kubernetes.io/docs/reference/generated/kubernetes-api/v1.35/):
    # the routing overlay's PodDisruptionBudget, the full stack's HorizontalPodAutoscaler, and what
    # its preflight reads (CRDs from apiextensions-apiserver, APIServices from kube-aggregator).
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, subresources=("status",)),
    Resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True,
             subresources=("status",)),
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
             subresources=("status",)),
    Resource("apiregistration.k8s.io", "v1", "apiservices", "APIService", False, subresources=("status",)),
)

# The verbs of subresources as the real server lists them (pods/log is read-only,
# pods/portforward is a connect subresource: GET for WebSocket, POST for SPDY).
SUBRESOURCE_VERBS = {"log": ("get",), "portforward": ("create", "get"), "exec": ("create", "get"),
                     "proxy": ("create", "delete", "get", "patch", "update"), "token": ("create",),
                     "eviction": ("create",), "finalize": ("update",)}


def by_plural(group: str, version: str, plural: str) -> Resource | None:
    for r in RESOURCES:
        if (r.group, r.version, r.plural) == (group, version, plural):
            return r
    return None


def by_kind(api_version: str, kind: str) -> Resource | None:
    for r in RESOURCES:
        if (r.api_version, r.kind) == (api_version, kind):
            return r
    return None


def api_versions() -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]}


def api_group_list() -> dict:
    groups: dict[str, list[str]] = {}
    for r in RESOURCES:
        if r.group:
            groups.setdefault(r.group, [])
            if r.version not in groups[r.group]:
                groups[r.group].append(r.version)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
         "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}
        for g, vs in groups.items()]}


def api_resource_list(group: str, version: str) -> dict | None:
    mine = [r for r in RESOURCES if (r.group, r.version) == (group, version)]
    if not mine:
        return None
    entries = []
    for r in mine:
        entries.append({"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced,
                        "kind": r.kind, "verbs": list(r.verbs)})
        for sub in r.subresources:
            entries.append({"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                            "kind": r.kind, "verbs": list(SUBRESOURCE_VERBS.get(sub, ("get", "patch", "update")))})
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": entries}
