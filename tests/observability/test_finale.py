"""The finale's cluster-side checks without a cluster: preflight, the router's Service, the load's profile.

The whole chapter runs in its local form in notebooks/full-stack-lab.ipynb (executed by the book
build); what needs a real cluster is marked ``cluster`` and never runs in CI.
"""
from __future__ import annotations

import pytest

from llmserve.core.errors import ClusterError
from llmserve.observability import finale, order
from llmserve.observability.scaling import Behavior
from llmserve.world import manifests, mode
from llmserve.world.mode import Mode


class Objects:
    """A stand-in for Cluster.get: answers for the references it holds, None for the rest."""

    def __init__(self, *present: str) -> None:
        self.present = set(present)

    def get(self, ref):
        return {"metadata": {"name": ref.name}} if ref.name in self.present else None


def test_preflight_names_what_is_missing_and_how_to_install_it():
    report = finale.preflight(Objects("podmonitors.monitoring.coreos.com"))
    assert not report.ok
    assert report.checks("error") == ["metrics", "autoscaler"]
    fixes = " ".join(f.fix for f in report.errors)
    assert "kube-prometheus-stack" in fixes and "prometheus-adapter" in fixes


def test_preflight_passes_when_everything_is_there():
    everything = [ref.name for _, ref, _ in finale.REQUIREMENTS]
    assert finale.preflight(Objects(*everything)).ok


def test_the_full_stack_renders_into_the_five_stages():
    staged = dict((s.name, objs) for s, objs in finale.stages())
    assert list(staged) == list(order.STAGE_NAMES) and all(staged.values())
    assert {o["metadata"]["name"] for o in staged["replicas"]} >= {"vllm-router"}
    assert all(o["metadata"]["labels"][order.COMPONENT_LABEL] == "router" for o in staged["replicas"])


def test_offline_the_chapter_runs_its_local_form():
    offline = Mode("offline", "test", "cpu", "test")
    stack = finale.open_stack(offline, progress=None)
    assert stack.kind == "local" and stack.lab.fleet is None       # nothing started until a stage is applied
    assert stack.behavior.max_replicas == 2


def test_the_cluster_profile_outlasts_the_hpas_scale_down_window():
    window = Behavior.from_hpa(manifests.load_one(order.HPA_FILE)).scale_down_window_s
    cool = finale.cluster_profile().phase("cool")
    assert cool.max_s > window and finale.cluster_profile().phase("high").max_s >= 600


def test_a_stack_without_a_router_says_so():
    stack = finale.ClusterStack.__new__(finale.ClusterStack)
    stack.stages = [(s, []) for s in order.STAGES]
    with pytest.raises(ClusterError, match="no router Service"):
        stack.router_service()


@pytest.mark.cluster
def test_the_full_stack_on_a_cluster():     # pragma: no cover - needs a GPU cluster with the Operator
    stack = finale.open_stack(mode.detect())
    for stage in order.STAGE_NAMES:
        stack.apply(stage)
    assert stack.query().completion_tokens > 0
    stack.cleanup()


def test_on_a_cluster_the_router_is_reached_on_its_client_port(monkeypatch):
    # The router Service has two ports: a forward that names none cannot choose (portforward asks for one).
    asked = {}
    monkeypatch.setattr(finale.portforward, "forward",
                        lambda cluster, target, remote_port=None: asked.update(target=target, port=remote_port))
    stack = finale.ClusterStack(cluster=object(), progress=None)
    stack.open_router()
    service = stack.router_service()
    assert asked == {"target": service, "port": finale.ROUTER_PORT_NAME}
    assert len(service["spec"]["ports"]) > 1
    assert finale.ROUTER_PORT_NAME in [p["name"] for p in service["spec"]["ports"]]
