"""The chapter's manifests: built-in kinds validate strictly, and every object points at the course's system.

The custom resources (PodMonitors, PrometheusRule, ScaledObject) are validated against their projects'
schemas, with every other custom resource of the course, by tests/manifests/test_custom_resources.py;
one bite test here shows that check reads the rules' durations.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmserve.observability import alerts, catalogue
from llmserve.world import manifests
from tests.manifests import custom_resources
from tests.manifests.test_custom_resources import node_models  # noqa: F401 - the fixture
from tests.observability.overlays import render_with

HPA = "components/autoscaling-hpa/hpa.yaml"
SCALED_OBJECT = "components/autoscaling-keda/scaledobject.yaml"


def test_the_hpa_is_strictly_valid_autoscaling_v2():
    hpa = manifests.load_one(HPA)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert manifests.validate(hpa) == []


def test_the_custom_resources_check_reads_the_rules_durations(node_models):
    rule = manifests.load_one(alerts.PROMETHEUS_RULE)
    assert custom_resources.validate([("committed", rule)]) == {"committed": None}
    rule["spec"]["groups"][1]["rules"][0]["for"] = "five minutes"         # not a Prometheus duration
    assert "for must match pattern" in custom_resources.validate([("planted", rule)])["planted"]


def test_the_pod_monitor_finds_the_vllm_pods_on_their_named_port():
    monitor = manifests.load_one(alerts.POD_MONITOR)
    deployment = manifests.load_one("base/vllm-deployment.yaml")
    pod = deployment["spec"]["template"]
    assert monitor["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports


def test_the_router_monitor_finds_the_router_on_its_metrics_port():
    monitor = manifests.load_one(alerts.ROUTER_MONITOR)
    router = manifests.load_one("components/router/router-deployment.yaml")
    pod = router["spec"]["template"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports
    assert alerts.router_job() == pod["metadata"]["labels"]["app.kubernetes.io/name"]


def test_both_autoscalers_target_the_vllm_deployment_on_the_same_queue():
    deployment = manifests.load_one("base/vllm-deployment.yaml")["metadata"]["name"]
    hpa, scaled = manifests.load_one(HPA), manifests.load_one(SCALED_OBJECT)
    assert hpa["spec"]["scaleTargetRef"]["name"] == scaled["spec"]["scaleTargetRef"]["name"] == deployment
    trigger = scaled["spec"]["triggers"][0]["metadata"]
    assert f'job="{alerts.engine_job()}"' in trigger["query"] and trigger["query"].startswith("sum(")
    assert trigger["ignoreNullValues"] == "false"          # the empty-query pitfall, avoided
    assert hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == trigger["threshold"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == \
        (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"])


@pytest.mark.parametrize("autoscaler", ["autoscaling-hpa", "autoscaling-keda"])
def test_the_components_render_on_the_gpu_box_and_drop_the_fixed_replica_count(tmp_path, autoscaler):
    objects = render_with(tmp_path, "observability", autoscaler)
    kinds = {o["kind"] for o in objects}
    assert {"PodMonitor", "PrometheusRule", "ConfigMap"} <= kinds
    assert ("HorizontalPodAutoscaler" in kinds) == (autoscaler == "autoscaling-hpa")
    assert ("ScaledObject" in kinds) == (autoscaler == "autoscaling-keda")
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert "replicas" not in deployment["spec"]
    assert manifests.validate([o for o in objects if not custom_resources.is_custom(o)]) == []


def test_the_dashboards_configmap_carries_the_committed_json(tmp_path):
    objects = render_with(tmp_path, "observability")
    cm = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "vllm-course-dashboards")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    for relative in (catalogue.COURSE_DASHBOARD, catalogue.GPU_DASHBOARD):
        assert json.loads(cm["data"][Path(relative).name]) == catalogue.load_dashboard(relative)


def test_the_full_stack_overlay_renders_valid_with_the_router_and_no_fixed_replica_count():
    objects = manifests.render("overlays/full-stack")
    assert manifests.validate([o for o in objects if not custom_resources.is_custom(o)]) == []
    vllm = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "vllm-qwen25-coder-7b")
    assert "replicas" not in vllm["spec"] and vllm["spec"]["strategy"]["type"] == "RollingUpdate"
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("Deployment", "vllm-router"), ("PodMonitor", "vllm-router"), ("PodMonitor", "vllm-engines"),
                ("HorizontalPodAutoscaler", "vllm-qwen25-coder-7b")} <= names
