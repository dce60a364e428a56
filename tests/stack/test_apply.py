"""The capstone's cluster actions against the fake API server (the real Cluster and kubernetes client),
and the wait's give-up rules against a stand-in whose Pods never get ready.

The fake API server (tests/fakes/apiserver.py) answers as the real one does, and with
``controllers_on=True`` its stand-in controllers make the Deployment's Pod Ready at once.
Objects for the stand-in are CONSTRUCTED (shaped like the API reference's), never captured.
"""
from __future__ import annotations

import base64

import pytest

from llmserve.core.errors import ClusterError, InputError
from llmserve.core.names import system
from llmserve.stack import apply, order
from llmserve.world import manifests
from llmserve.world.cluster import Cluster, ObjectRef
from tests.fakes.serving import fake_cluster

N = system()


@pytest.fixture
def api(tmp_path, monkeypatch):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    with fake_cluster(tmp_path, monkeypatch, controllers_on=True) as server:
        yield server


def secret_as_read_back(value: str) -> dict:
    # The API server returns Secret data base64-encoded in .data (Secret API reference).
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": N.api_key_secret, "namespace": N.namespace},
            "data": {"api-key": base64.b64encode(value.encode()).decode()}}


def test_apply_stack_applies_in_order_with_a_real_key_and_waits_until_ready(api):
    cluster = Cluster()
    lines = []
    result = apply.apply_stack(cluster, manifests.render("overlays/gpu-box"), progress=lines.append)
    assert [r.kind for r in result.refs] == ["Namespace", "PersistentVolume", "PersistentVolumeClaim",
                                             "Secret", "Deployment", "Service"]
    assert f"[4/6] applied Secret {N.namespace}/{N.api_key_secret}" in str(result) and lines == result.lines
    assert result.api_key.startswith("sk-course-") and "generated" in result.key_source
    live = cluster.get(ObjectRef("v1", "Secret", N.api_key_secret, N.namespace))
    assert order.secret_value(live) == result.api_key != order.PLACEHOLDER_KEY
    applies = [r for r in api.requests if r.method == "PATCH"]
    assert applies and all(r.content_type == "application/apply-patch+yaml" for r in applies)
    assert {r.param("fieldManager") for r in applies} == {"llmserve-course"}
    seen = []
    ready = apply.wait_until_ready(cluster, timeout_s=20, interval_s=0.2, progress=lambda t, s: seen.append(s))
    assert ready["metadata"]["name"] == N.deployment and seen[-1].startswith("1/1 available")
    assert apply.read_api_key(cluster) == result.api_key


def test_re_applying_keeps_the_key_the_running_pod_read(api):
    cluster = Cluster()
    first = apply.apply_stack(cluster, manifests.render("base"), progress=None)
    again = apply.apply_stack(cluster, manifests.render("base"), progress=None)
    assert again.api_key == first.api_key and "kept" in again.key_source


def test_cleanup_never_deletes_the_model_data(api):
    cluster = Cluster()
    objs = manifests.render("base")
    apply.apply_stack(cluster, objs, progress=None)
    fresh = Cluster()                      # a new kernel: it learns what to clean up from the objects
    would = apply.cleanup(fresh, objs, dry_run=True)
    assert sorted(w.split()[2] for w in would if w.startswith("would delete")) == ["Deployment", "Secret", "Service"]
    assert {k.split()[1] for k in would if k.startswith("kept")} == {"Namespace", "PersistentVolume",
                                                                      "PersistentVolumeClaim"}
    apply.cleanup(fresh, objs)
    assert cluster.get(ObjectRef("apps/v1", "Deployment", N.deployment, N.namespace)) is None
    assert cluster.get(ObjectRef("v1", "PersistentVolume", N.pv)) is not None
    assert not [r for r in api.requests if r.verb == "delete" and r.resource.startswith("persistentvolume")]


def test_read_api_key(monkeypatch):
    class Stand:
        def __init__(self, secret):
            self.secret = secret

        def get(self, ref):
            return self.secret

    monkeypatch.setenv("VLLM_API_KEY", "env-key")
    assert apply.read_api_key() == "env-key"
    monkeypatch.delenv("VLLM_API_KEY")
    assert apply.read_api_key(Stand(secret_as_read_back("k"))) == "k"
    with pytest.raises(ClusterError, match="placeholder"):
        apply.read_api_key(Stand(secret_as_read_back("change-me")))
    with pytest.raises(InputError):
        apply.read_api_key(None)


# ------------------------------------------------------------------ waits that end badly

def deployment():
    return {"metadata": {"name": N.deployment, "namespace": N.namespace, "generation": 1},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": N.deployment}}},
            "status": {"observedGeneration": 1, "availableReplicas": 0, "readyReplicas": 0, "updatedReplicas": 1}}


def pod(**status):
    return {"metadata": {"name": "vllm-abc", "namespace": N.namespace}, "status": status}


class NeverReady:
    """Stands in for Cluster: one Deployment whose one Pod stays as given; records the polls."""

    def __init__(self, the_pod, events=()):
        self.the_pod, self.the_events, self.polls = the_pod, list(events), 0

    def get(self, ref):
        self.polls += 1                  # one read of the Deployment per poll
        return deployment()

    def pods_of(self, dep):
        return [self.the_pod]

    def pod_events(self, p):
        return self.the_events

    def events(self, ref):
        return self.the_events

    def logs(self, p, tail=5, previous=False):
        return ""


class FakeTime:
    def __init__(self):
        self.now = 0.0

    def clock(self):
        return self.now

    def sleep(self, s):
        self.now += s


def test_wait_until_ready_reports_progress_and_explains_timeout():
    c = NeverReady(pod(phase="Pending", containerStatuses=[{"ready": False, "restartCount": 0, "state": {
        "waiting": {"reason": "ContainerCreating"}}}]))
    seen, t = [], FakeTime()
    with pytest.raises(ClusterError, match="was not ready after 30 s") as info:
        apply.wait_until_ready(c, timeout_s=30, interval_s=10, progress=lambda e, s: seen.append(s),
                               clock=t.clock, sleep=t.sleep)
    assert seen and "ContainerCreating" in seen[-1] and "ContainerCreating" in info.value.what
    assert c.polls == 4                                   # at 0, 10, 20 and 30 s


def test_wait_gives_up_early_when_the_diagnosis_is_stuck_and_points_at_troubleshooting():
    unschedulable = pod(phase="Pending", conditions=[{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}])
    # Event shape: core/v1 Event (reason, message), as the scheduler writes it.
    c = NeverReady(unschedulable, [{"reason": "FailedScheduling",
                                    "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}])
    t = FakeTime()
    with pytest.raises(apply.NotReady) as info:
        apply.wait_until_ready(c, timeout_s=3600, interval_s=5, progress=lambda e, s: None, give_up_after_s=5,
                               clock=t.clock, sleep=t.sleep)
    assert c.polls == 2                                   # stuck at 0 s and still at 5 s: give up
    assert "Insufficient nvidia.com/gpu" in info.value.what
    assert "Troubleshooting entries that match" in info.value.fix
