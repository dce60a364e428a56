"""Live: the book's last chapter — the full stack applied in stages, waited for, queried, loaded, cleaned up.

Used by notebooks/full-stack-lab.ipynb and book/full-stack.md. Layer: live. It strings together
what the earlier chapters built and never copies it: rendering and validation are
:mod:`llmserve.world.manifests`; the system stage is the capstone's
(:func:`llmserve.stack.apply.apply_stack` with a real API key, :func:`~llmserve.stack.apply.wait_until_ready`
with the Deployment chapter's diagnosis, :func:`~llmserve.stack.apply.cleanup` that keeps the model
data); requests go through :func:`llmserve.world.portforward.forward`; the load is
:class:`llmserve.observability.load.Load`. The stages and their order are
:mod:`llmserve.observability.order`'s.

What a cluster must already have, and :func:`preflight` checks: the Prometheus Operator's CRDs
(PodMonitor, PrometheusRule; kube-prometheus-stack installs them), and for the HPA the custom
metrics API (prometheus-adapter). Without them those stages are refused with the fix, before
anything is applied.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Iterable
from urllib.parse import quote

from llmserve.core import http
from llmserve.core.errors import ClusterError
from llmserve.core.findings import ERROR, OK, Finding, Report
from llmserve.core.names import system
from llmserve.core.quantity import parse_quantity
from llmserve.observability import alerts, catalogue, order
from llmserve.observability.autoscaler import Tick, waiting_query
from llmserve.observability.lab import (LabSettings, ObservabilityLab, ScalingRun, hold_phase, messages_for,
                                        run_autoscaling)
from llmserve.observability.load import Load
from llmserve.observability.order import Stage
from llmserve.observability.scaling import Behavior, Decision
from llmserve.observability.workload import Phase, Profile, rise_and_fall
from llmserve.serving.client import StreamResult, stream_chat
from llmserve.stack import apply as stack_apply
from llmserve.world import manifests, portforward
from llmserve.world.cluster import Cluster, ObjectRef
from llmserve.world.mode import Mode

Progress = Callable[[str], None]
#: Where the cluster's Prometheus answers (kube-prometheus-stack: the Operator's Service in ``monitoring``).
PROMETHEUS_SERVICE = os.environ.get("COURSE_PROMETHEUS_SERVICE", "monitoring/prometheus-operated")

#: How to get the Prometheus Operator's CRDs (and a Prometheus that selects the course's objects).
INSTALL_OPERATOR = ("Install kube-prometheus-stack: `helm install kps prometheus-community/kube-prometheus-stack "
                    "-n monitoring --create-namespace "
                    "--set prometheus.prometheusSpec.podMonitorSelectorNilUsesHelmValues=false "
                    "--set prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues=false`.")
#: What each custom stage needs from the cluster, and how to get it.
REQUIREMENTS = (
    ("metrics", ObjectRef("apiextensions.k8s.io/v1", "CustomResourceDefinition",
                          "podmonitors.monitoring.coreos.com"), INSTALL_OPERATOR),
    ("metrics", ObjectRef("apiextensions.k8s.io/v1", "CustomResourceDefinition",
                          "prometheusrules.monitoring.coreos.com"), INSTALL_OPERATOR),
    ("autoscaler", ObjectRef("apiregistration.k8s.io/v1", "APIService", "v1beta1.custom.metrics.k8s.io"),
     "Install prometheus-adapter with the rule of book/observability.md, so the HPA can read "
     "vllm_num_requests_waiting per Pod (or use the KEDA component instead)."),
)


def render() -> tuple[list[dict], list[dict]]:
    """The full stack and the system alone, rendered by kustomize."""
    return manifests.render(order.FULL_STACK_OVERLAY), manifests.render(order.SYSTEM_OVERLAY)


def stages() -> list[tuple[Stage, list[dict]]]:
    full, system_objects = render()
    return order.staged(full, system_objects)


def preflight(cluster: Cluster) -> Report:
    """Does the cluster have what the metrics and autoscaler stages need? One finding per requirement."""
    findings = []
    for stage, ref, fix in REQUIREMENTS:
        present = cluster.get(ref) is not None
        state = "present" if present else "missing"
        findings.append(Finding(OK if present else ERROR, f"{ref.kind} {ref.name} {state}",
                                "" if present else fix, check=stage))
    return Report("the cluster for the full stack", tuple(findings), ok_text="ready for every stage")


def apply_stage(cluster: Cluster, stage: Stage, objects: list[dict], api_key: str | None = None,
                progress: Progress | None = print) -> list:
    """Server-side apply one stage's objects (the system stage through the capstone, with its API key)."""
    if stage.name == "system":
        return stack_apply.apply_stack(cluster, objects, api_key=api_key, progress=progress).refs
    refs = []
    for obj in objects:
        refs += cluster.apply(obj)
        if progress:
            progress(f"[{stage.name}] applied {refs[-1]}")
    return refs


def _deployment_available(obj: dict | None) -> tuple[bool, str]:
    if obj is None:
        return False, "not created yet"
    want = (obj.get("spec") or {}).get("replicas", 1)
    have = (obj.get("status") or {}).get("availableReplicas") or 0
    return have >= want, f"{have}/{want} replicas available"


def _hpa_active(obj: dict | None) -> tuple[bool, str]:
    if obj is None:
        return False, "not created yet"
    conditions = {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}
    active = conditions.get("ScalingActive") or {}
    return active.get("status") == "True", f"ScalingActive={active.get('status', '?')}: {active.get('message', '')}"


def wait_stage(cluster: Cluster, stage: Stage, objects: list[dict], timeout_s: float = 900,
               progress: Callable[[float, str], None] | None = None) -> str:
    """Wait for what the stage promises (:attr:`Stage.waits_for`); returns the last status."""
    show = progress or (lambda t, s: print(f"[{t:5.0f} s] {stage.name}: {s}"))
    if stage.name == "system":
        stack_apply.wait_until_ready(cluster, timeout_s=timeout_s, progress=show)
        return "vLLM available"
    if stage.name == "replicas":
        for dep in [o for o in objects if o["kind"] == "Deployment"]:
            cluster.wait_for(ObjectRef.of(dep), _deployment_available, timeout_s=300, progress=show)
        return "router available"
    if stage.name == "metrics":
        return _wait_scraped(cluster, timeout_s=180, progress=show)
    if stage.name == "autoscaler":
        for hpa in [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]:
            cluster.wait_for(ObjectRef.of(hpa), _hpa_active, timeout_s=300, interval_s=10, progress=show)
        return "the HPA reads its metric"
    for obj in objects:
        if cluster.get(ObjectRef.of(obj)) is None:
            raise ClusterError(f"{ObjectRef.of(obj)} is missing right after it was applied.",
                               "Re-run the stage; check RBAC (`kubectl auth can-i create configmaps`).")
    return "present"


def _wait_scraped(cluster: Cluster, timeout_s: float, progress) -> str:
    """Ask the cluster's Prometheus (through a port-forward) until it scrapes every vLLM replica."""
    namespace, service = PROMETHEUS_SERVICE.split("/", 1)
    n = system()
    want = (cluster.get(ObjectRef("apps/v1", "Deployment", n.deployment, n.namespace)) or {}).get(
        "status", {}).get("readyReplicas") or 1
    query = f'count(up{{job="{alerts.engine_job()}"}} == 1)'
    deadline = time.monotonic() + timeout_s
    with portforward.forward(cluster, f"service/{service}", namespace=namespace) as url:
        while True:
            answer = http.get(url, "/api/v1/query?query=" + quote(query, safe="")).json or {}
            result = (answer.get("data") or {}).get("result")
            scraped = int(float(result[0]["value"][1])) if result else 0
            progress(timeout_s - (deadline - time.monotonic()), f"Prometheus scrapes {scraped}/{want} replicas")
            if scraped >= want:
                return f"{scraped} replicas scraped"
            if time.monotonic() > deadline:
                raise ClusterError(f"Prometheus scrapes {scraped} of {want} vLLM replicas after {timeout_s:.0f} s.",
                                   "Check the PodMonitor is selected by your Prometheus (its labels and "
                                   "podMonitorSelector) and that no NetworkPolicy blocks port http of the Pods.")
            time.sleep(5)


def cleanup(cluster: Cluster, objects: Iterable[dict], dry_run: bool = False) -> list[str]:
    """The capstone's cleanup over the whole stack: running parts deleted, namespace, claim and volume kept."""
    return stack_apply.cleanup(cluster, list(objects), dry_run=dry_run)


# --------------------------------------------------------------------------- the chapter's two forms

#: The router Service's port for clients (manifests/components/router).
ROUTER_PORT_NAME = "http"


class ClusterStack:
    """The full stack on a live cluster: each stage applied and waited for, then queried, loaded, cleaned up."""

    kind = "cluster"

    def __init__(self, cluster: Cluster, progress: Progress | None = print) -> None:
        self.cluster, self.progress = cluster, progress
        self.stages = stages()
        self.api_key: str | None = None

    def objects(self, stage: str | None = None) -> list[dict]:
        return [o for s, objs in self.stages for o in objs if stage is None or s.name == stage]

    def apply(self, stage_name: str) -> str:
        stage, objs = next((s, o) for s, o in self.stages if s.name == stage_name)
        refs = apply_stage(self.cluster, stage, objs, api_key=self.api_key, progress=self.progress)
        if stage_name == "system":
            self.api_key = stack_apply.read_api_key(self.cluster)
        return f"{len(refs)} objects applied; " + wait_stage(self.cluster, stage, objs)

    def router_service(self) -> dict:
        services = [o for o in self.objects("replicas") if o["kind"] == "Service"]
        if not services:
            raise ClusterError("The full stack has no router Service.",
                               "Render manifests/overlays/full-stack: it includes the routing chapter's component.")
        return services[0]

    def open_router(self):
        """A port-forward to the router's Service (a context manager yielding the local root URL).

        The Service has two ports (``http`` and ``metrics``): the forward must name the one clients use."""
        return portforward.forward(self.cluster, self.router_service(), remote_port=ROUTER_PORT_NAME)

    def cleanup(self, dry_run: bool = False) -> list[str]:
        return cleanup(self.cluster, self.objects(), dry_run=dry_run)

    def query(self, messages: list[dict] | None = None) -> StreamResult:
        """One streamed chat completion through the router (a port-forward to its Service), with the key."""
        with self.open_router() as url:
            return stream_chat(f"{url}/v1", system().served_model_name, messages or messages_for(0), self.api_key,
                               max_tokens=32)

    def load_and_watch(self, profile: Profile | None = None, progress: Progress | None = print) -> ScalingRun:
        """Drive the load through the router while sampling what the HPA and the Deployment say."""
        profile = profile or cluster_profile()
        n = system()
        hpa_ref = ObjectRef("autoscaling/v2", "HorizontalPodAutoscaler", n.deployment, n.namespace)
        dep_ref = ObjectRef("apps/v1", "Deployment", n.deployment, n.namespace)
        behavior = Behavior.from_hpa(self.cluster.get(hpa_ref) or manifests.load_one(order.HPA_FILE))
        ticks: list[Tick] = []

        def sample() -> Tick:
            status = (self.cluster.get(hpa_ref) or {}).get("status") or {}
            ready = ((self.cluster.get(dep_ref) or {}).get("status") or {}).get("readyReplicas") or 0
            metric = next((_quantity(m.get("pods", {}).get("current", {}).get("averageValue"))
                           for m in status.get("currentMetrics") or []), None)
            current = status.get("currentReplicas") or ready
            desired = status.get("desiredReplicas") or current
            tick = Tick(time.time(), ready, Decision(time.time(), current, metric, desired, desired, "the HPA"))
            ticks.append(tick)
            return tick

        until = {"high": lambda: sample().ready > behavior.min_replicas,
                 "cool": lambda: sample().ready == behavior.min_replicas}
        with self.open_router() as url:
            load = Load(f"{url}/v1", system().served_model_name, clients=profile.max_concurrency,
                        messages=messages_for, max_tokens=64, api_key=self.api_key)
            start = time.time()
            with load:
                for phase in profile.phases:
                    load.set_phase(phase)
                    if progress:
                        progress(f"{time.time() - start:5.0f} s  phase {phase.name!r}, HPA: {sample().decision}")
                    hold_phase(phase, until.get(phase.name), poll_s=15)
        return ScalingRun(start, time.time(), load.phases, ticks, [], load.summary(), list(load.results),
                          behavior, target_per_replica=1.0)


def _quantity(value) -> float | None:
    return None if value is None else float(parse_quantity(str(value)))


def cluster_profile() -> Profile:
    """The load for a GPU cluster: a cold start takes minutes, and the HPA's scale-down window is 600 s."""
    return rise_and_fall(low=1, high=8, warm_s=60, high_min_s=120, high_max_s=1200, bursts_s=120,
                         cool_min_s=60, cool_max_s=1200)


class LocalStack:
    """The same chapter on this machine: engines, router, Prometheus and the control loop, stage by stage.

    Each stage does locally what it stands for and says what it would do to a cluster.
    """

    kind = "local"

    def __init__(self, settings: LabSettings | None = None, progress: Progress | None = print) -> None:
        self.lab = ObservabilityLab(settings or LabSettings(engines=1), progress=progress)
        self.progress = progress
        self.stages = stages()
        self.behavior = Behavior(min_replicas=1, max_replicas=2, scale_down_window_s=10)

    def objects(self, stage: str | None = None) -> list[dict]:
        return [o for s, objs in self.stages for o in objs if stage is None or s.name == stage]

    def apply(self, stage_name: str) -> str:
        what = ", ".join(f"{o['kind']} {o['metadata']['name']}" for o in self.objects(stage_name))
        print(f"[offline] Would apply {what} to a cluster. Here:")
        if stage_name == "system":
            fleet = self.lab.start_fleet()
            return f"{len(fleet.engines)} CPU engine(s) of the tiny model: {fleet.describe().splitlines()[1].strip()}"
        if stage_name == "replicas":
            return f"vllm-router {self.lab.fleet.url} routes to {self.lab.fleet.router.list_workers()}"
        if stage_name == "metrics":
            prom = self.lab.start_prometheus()
            up = [t for t in prom.targets() if t["health"] == "up"]
            return f"Prometheus {prom.url} with the rules loaded scrapes {len(up)} targets"
        if stage_name == "dashboard":
            queries = catalogue.dashboard_queries(catalogue.load_dashboard())
            for q in queries:
                self.lab.prometheus.query(q.expr)      # every query parses (an error would raise)
            return f"the dashboard's {len(queries)} queries parse on the lab's Prometheus"
        if stage_name == "autoscaler":
            b = self.behavior
            return (f"the control loop stands in for the HPA: {b.min_replicas}-{b.max_replicas} replicas, "
                    f"scale-down window {b.scale_down_window_s:g} s (the manifest's: 600 s)")
        raise ClusterError(f"No stage {stage_name!r}.", f"Use one of: {', '.join(order.STAGE_NAMES)}.")

    def query(self, messages: list[dict] | None = None) -> StreamResult:
        fleet = self.lab.fleet
        return stream_chat(fleet.base_url, fleet.model, messages or messages_for(0), max_tokens=32)

    def load_and_watch(self, profile: Profile | None = None, progress: Progress | None = print) -> ScalingRun:
        profile = profile or Profile((Phase("low", 1, 5), Phase("high", 6, 10, 300, until="the new replica serves"),
                                      Phase("cool", 1, 5, 240, until="back to one replica")))
        return run_autoscaling(self.lab, profile, self.behavior, progress=progress)

    def series(self, run: ScalingRun) -> tuple[list, list]:
        return (self.lab.series(waiting_query(self.lab.job), run.start, run.end),
                self.lab.series("ttft_p95", run.start, run.end))

    def cleanup(self, dry_run: bool = False) -> list[str]:
        print("[offline] Would delete the running parts of the stack and keep the namespace, the claim and the "
              "volume (the capstone's cleanup). Here:")
        self.lab.stop()
        return [f"stopped {self.lab.fleet!r}", f"stopped {self.lab.prometheus!r}"]


def open_stack(mode: Mode, cluster: Cluster | None = None, progress: Progress | None = print):
    """The chapter's stack for this mode: the cluster's, or the local form."""
    if mode.live:
        return ClusterStack(cluster or Cluster(mode.context), progress=progress)
    return LocalStack(progress=progress)
