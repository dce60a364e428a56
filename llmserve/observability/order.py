"""Pure rules of the book's last chapter: the full stack's stages, in the order they are applied, and by hand.

Used by book/full-stack.md, notebooks/full-stack-lab.ipynb and :mod:`llmserve.observability.finale`.
Layer: pure rules (objects in, objects out; the capstone's own order inside each stage).

The full stack is one overlay (:data:`FULL_STACK_OVERLAY`): the course's system on a GPU node,
N replicas behind the router (the routing chapter's component), the metrics (PodMonitor and
PrometheusRule), the dashboards (a ConfigMap for Grafana), and the autoscaler (an HPA). It is
applied in five stages, each waited for before the next: the replicas must be up before the
router has anything to route to, the metrics' objects before there is anything to alert on, the
autoscaler last, once the metric it reads exists — an HPA created before it only reports
``FailedGetPodsMetric`` until then. Within a stage, the capstone's order applies
(:func:`llmserve.stack.order.apply_order`: volume before claim, Secret before Deployment).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from llmserve.core.errors import require
from llmserve.core.names import system
from llmserve.core.objects import is_custom_resource
from llmserve.stack.order import apply_order
from llmserve.stack.order import by_hand as capstone_by_hand

#: The overlay the finale renders (relative to manifests/).
FULL_STACK_OVERLAY = "overlays/full-stack"
#: The overlay with the system alone (what the capstone applies).
SYSTEM_OVERLAY = "overlays/gpu-box"
#: The autoscaler the full stack applies (its behaviour is what the lab's loop imitates).
HPA_FILE = "components/autoscaling-hpa/hpa.yaml"

#: The label the chapter's components put on their objects (app.kubernetes.io/component).
COMPONENT_LABEL = "app.kubernetes.io/component"
#: API groups of the custom resources the stack uses: the Kubernetes schemas do not know them
#: (tests/observability validates them against their projects' schemas instead).
#: A custom resource (PodMonitor, PrometheusRule, ScaledObject …) needs its CRD on the cluster.
is_custom = is_custom_resource


@dataclass(frozen=True)
class Stage:
    name: str
    what: str
    waits_for: str


STAGES: tuple[Stage, ...] = (
    Stage("system", "the namespace, the model volume and claim, the API key, vLLM and its Service",
          "the vLLM Deployment available (every replica loaded its weights and answers /health)"),
    Stage("replicas", "the router in front of the replicas (its Deployment, Service, ServiceAccount, Role and "
          "NetworkPolicy) and the replicas' PodDisruptionBudget",
          "the router Deployment available, every vLLM replica registered"),
    Stage("metrics", "the PodMonitor that finds the vLLM Pods and the PrometheusRule (recording rules, alerts)",
          "Prometheus scraping every replica (up == 1 for each)"),
    Stage("dashboard", "the Grafana dashboards as a ConfigMap (label grafana_dashboard)",
          "the ConfigMap present (Grafana's sidecar loads it within its poll interval)"),
    Stage("autoscaler", "the HorizontalPodAutoscaler on the requests waiting",
          "the HPA reading its metric (condition ScalingActive=True)"),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
#: The chapter's components label their objects with their stage (the api-key Secret says "api-key").
LABELLED_STAGES = {"metrics": "metrics", "dashboard": "dashboard", "autoscaler": "autoscaler", "router": "replicas"}


def _key(obj: dict) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def stage_of(obj: dict, system_keys: set[tuple[str, str]]) -> str:
    """An object's stage: its component label when it names one, else system if the system alone has it."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    label = labels.get(COMPONENT_LABEL)
    if label in LABELLED_STAGES:
        return LABELLED_STAGES[label]
    return "system" if _key(obj) in system_keys else "replicas"


def staged(full_stack: Iterable[dict], system_objects: Iterable[dict]) -> list[tuple[Stage, list[dict]]]:
    """The full stack's objects by stage (stages in order, each in the capstone's apply order).

    ``system_objects`` is the system overlay rendered alone: what it holds is the system stage
    (as the full stack renders it, e.g. with more replicas); what only the full stack adds is
    sorted into the other stages.
    """
    keys = {_key(o) for o in system_objects}
    buckets: dict[str, list[dict]] = {name: [] for name in STAGE_NAMES}
    for obj in full_stack:
        require(isinstance(obj, dict) and "kind" in obj and "metadata" in obj,
                f"Not a Kubernetes object: {str(obj)[:80]}", "Pass what manifests.render() returns.")
        buckets[stage_of(obj, keys)].append(obj)
    return [(stage, apply_order(buckets[stage.name])) for stage in STAGES]


def describe(stages: list[tuple[Stage, list[dict]]]) -> list[str]:
    """One block per stage: what it is, its objects, what the finale waits for."""
    lines = []
    for i, (stage, objects) in enumerate(stages, 1):
        lines.append(f"{i}. {stage.name}: {stage.what}")
        lines += [f"     {o['kind']} {o['metadata'].get('namespace', '-')}/{o['metadata']['name']}" for o in objects]
        lines.append(f"     then wait for {stage.waits_for}")
    return lines


def by_hand(stage: str, overlay: str = FULL_STACK_OVERLAY) -> list[str]:
    """The ``kubectl`` commands that do one stage by hand, selecting the stage's objects by label.

    The system stage starts like the capstone's (the API-key Secret from a generated key first,
    :func:`llmserve.stack.order.by_hand`), then applies what carries no stage label.
    """
    n = system()
    apply = f"kubectl apply --server-side -k manifests/{overlay} -l"
    commands = {
        "system": capstone_by_hand("apply", overlay)[:-1] + [
            f"{apply} '!{COMPONENT_LABEL}'",
            f"kubectl -n {n.namespace} rollout status deployment/{n.deployment} --timeout=20m"],
        "replicas": [f"{apply} {COMPONENT_LABEL}=router",
                     f"kubectl -n {n.namespace} rollout status deployment -l {COMPONENT_LABEL}=router --timeout=5m"],
        "metrics": ["kubectl get crd podmonitors.monitoring.coreos.com prometheusrules.monitoring.coreos.com",
                    f"{apply} {COMPONENT_LABEL}=metrics",
                    "kubectl -n monitoring port-forward svc/prometheus-operated 9090   # Status > Targets"],
        "dashboard": [f"{apply} {COMPONENT_LABEL}=dashboard",
                      f"kubectl -n {n.namespace} get configmap -l grafana_dashboard=1"],
        "autoscaler": [f"{apply} {COMPONENT_LABEL}=autoscaler",
                       f"kubectl -n {n.namespace} get hpa {n.deployment} --watch"],
        "cleanup": [f"kubectl -n {n.namespace} delete hpa,configmap,prometheusrule,podmonitor,poddisruptionbudget,"
                    "networkpolicy,rolebinding,role,serviceaccount,deployment,service,secret "
                    "-l app.kubernetes.io/part-of=vllm-course   # never the claim, the volume or the namespace"],
    }
    require(stage in commands, f"No by-hand commands for {stage!r}.", f"Use one of: {', '.join(commands)}.")
    return commands[stage]
