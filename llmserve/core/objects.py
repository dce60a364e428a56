"""Pure readers of Kubernetes objects as plain dicts (the shape ``yaml.safe_load`` and the API's JSON give).

Used by several chapters: the vLLM container and its flags (deployment, the system
figure, the box check, the stack), a Pod in a few words and whether it is Ready
(deployment, service, stack), a Deployment's selector (deployment, stack).
"""
from __future__ import annotations

from llmserve.core.errors import InputError, require


def name_of(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("name", "?")


def vllm_container(workload: dict, name: str = "vllm") -> dict:
    """The container called ``name`` in a Deployment (or Pod) dict."""
    require(isinstance(workload, dict), "Expected a Deployment as a dict.",
            "Load it with llmserve.world.manifests.load_one().")
    spec = workload.get("spec") or {}
    pod_spec = (spec.get("template") or {}).get("spec") or spec
    for c in pod_spec.get("containers") or []:
        if c.get("name") == name:
            return c
    raise InputError(f"No container named {name!r} in {workload.get('kind', 'object')} {name_of(workload)}.",
                     f"Name the vLLM container {name!r}, or pass its name.")


def arg_value(container: dict, flag: str) -> str | None:
    """The value of ``--flag=value`` or ``--flag value`` in a container's args (None if absent)."""
    args = list(container.get("args") or []) + list(container.get("command") or [])
    for i, a in enumerate(args):
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
        if a == flag and i + 1 < len(args):
            return args[i + 1]
    return None


def selector_of(deployment: dict) -> str:
    """The Deployment's matchLabels as a label selector string (``k=v,k2=v2``)."""
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    require(bool(labels), f"Deployment {name_of(deployment)} has no selector.matchLabels.",
            "Give spec.selector.matchLabels the same labels as the Pod template.")
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def is_ready(pod: dict) -> bool:
    """Ready and not being deleted: what an EndpointSlice marks ``ready: true``."""
    status = pod.get("status") or {}
    return (not (pod.get("metadata") or {}).get("deletionTimestamp")
            and any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []))


def pod_summary(pod: dict) -> str:
    """One Pod in a few words: name, phase, readiness, restarts, whether it is being deleted."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    restarts = sum(s.get("restartCount", 0) for s in status.get("containerStatuses") or [])
    state = "Terminating" if meta.get("deletionTimestamp") else status.get("phase", "?")
    return f"{meta.get('name', '?')} {state}, {'ready' if ready else 'not ready'}" + \
        (f", {restarts} restarts" if restarts else "")


#: The API groups Kubernetes itself serves (kube-apiserver's built-in resources); any other group
#: (monitoring.coreos.com, keda.sh, gateway.networking.k8s.io, leaderworkerset.x-k8s.io …) is a
#: custom resource, served only where its CRD is installed.
BUILTIN_API_GROUPS = frozenset({
    "", "apps", "batch", "autoscaling", "policy", "admissionregistration.k8s.io", "apiextensions.k8s.io",
    "apiregistration.k8s.io", "authentication.k8s.io", "authorization.k8s.io", "certificates.k8s.io",
    "coordination.k8s.io", "discovery.k8s.io", "events.k8s.io", "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io", "networking.k8s.io", "node.k8s.io", "rbac.authorization.k8s.io",
    "resource.k8s.io", "scheduling.k8s.io", "storage.k8s.io", "storagemigration.k8s.io",
})


def api_group(obj: dict) -> str:
    api = str(obj.get("apiVersion", ""))
    return api.split("/")[0] if "/" in api else ""


def is_custom_resource(obj: dict) -> bool:
    """Served by a CRD, not by Kubernetes itself (PodMonitor, ScaledObject, HTTPRoute …)."""
    return api_group(obj) not in BUILTIN_API_GROUPS
