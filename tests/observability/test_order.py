"""The full stack's stages: which object goes in which, in what order, and the same by hand (pure)."""
from __future__ import annotations

import pytest

from llmserve.core.errors import InputError
from llmserve.observability import order
from llmserve.stack.order import PLACEHOLDER_KEY
from tests.observability.overlays import render_with


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    system = render_with(tmp_path_factory.mktemp("system"))
    full = render_with(tmp_path_factory.mktemp("full"), "observability", "autoscaling-hpa")
    router = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "vllm-router", "namespace": "ai-platform",
                           "labels": {order.COMPONENT_LABEL: "router"}}}
    unlabelled = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                  "metadata": {"name": "vllm-replicas", "namespace": "ai-platform"}}
    return system, full + [router, unlabelled]


def test_every_object_lands_in_its_stage_in_the_capstones_order(stacks):
    system, full = stacks
    staged = dict((s.name, objs) for s, objs in order.staged(full, system))
    assert list(staged) == list(order.STAGE_NAMES)
    kinds = {name: [o["kind"] for o in objs] for name, objs in staged.items()}
    assert kinds["system"][0] == "Namespace" and kinds["system"].index("PersistentVolume") < \
        kinds["system"].index("PersistentVolumeClaim") < kinds["system"].index("Deployment")
    assert sorted(kinds["replicas"]) == ["Deployment", "PodDisruptionBudget"]
    assert sorted(kinds["metrics"]) == ["PodMonitor", "PodMonitor", "PrometheusRule"]
    assert kinds["dashboard"] == ["ConfigMap"] and kinds["autoscaler"] == ["HorizontalPodAutoscaler"]
    assert sum(map(len, staged.values())) == len(full)


def test_describe_names_each_stage_and_what_it_waits_for(stacks):
    system, full = stacks
    lines = order.describe(order.staged(full, system))
    assert lines[0].startswith("1. system:") and any("then wait for the HPA reading its metric" in l for l in lines)
    assert any("PodMonitor ai-platform/vllm-engines" in l for l in lines)


def test_by_hand_applies_each_stage_by_its_label_and_never_the_placeholder():
    system = order.by_hand("system")
    assert any("create secret generic" in line for line in system)
    assert any(f"-l '!{order.COMPONENT_LABEL}'" in line for line in system)     # the Secret is labelled api-key
    assert not any(PLACEHOLDER_KEY in line or "vllm-api-key-secret.yaml" in line for line in system)
    for stage in ("metrics", "dashboard", "autoscaler"):
        assert any(f"-l {order.COMPONENT_LABEL}={stage}" in line for line in order.by_hand(stage))
    assert "never the claim" in order.by_hand("cleanup")[0] and "persistentvolume" not in order.by_hand("cleanup")[0]
    with pytest.raises(InputError, match="No by-hand commands"):
        order.by_hand("nope")


def test_a_non_object_is_refused():
    with pytest.raises(InputError, match="Not a Kubernetes object"):
        order.staged(["not an object"], [])
