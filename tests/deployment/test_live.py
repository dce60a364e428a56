"""deployment.live: diagnose, follow_rollout, watch_pods, owners, delete_and_watch and roll
over a scripted sequence of Pods.

No cluster: the reads they make (pods_of, pod_events, logs, replicasets_of) and the two
changes (delete_pod, apply) are replaced by a script of API-shaped Pods, as a real rollout under `strategy: Recreate`
would show them (old Pod Terminating, then the new Pod Pending, Running and
Ready; https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#recreate-deployment).
"""
from __future__ import annotations

import pytest

from llmserve.world import manifests
from llmserve.core.objects import is_ready, pod_summary
from llmserve.deployment import live
from llmserve.world.cluster import Cluster
from llmserve.core.errors import ClusterError

DEPLOYMENT = manifests.load_one("base/vllm-deployment.yaml")


def pod(name, phase="Running", ready=False, terminating=False, waiting=None, restarts=0):
    meta = {"name": name, "namespace": "ai-platform", "creationTimestamp": "2026-11-27T10:00:00Z"}
    if terminating:
        meta["deletionTimestamp"] = "2026-11-27T10:05:00Z"
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {"startedAt": "2026-11-27T10:00:00Z"}}
    return {"metadata": meta, "status": {
        "phase": phase,
        "conditions": [{"type": "PodScheduled", "status": "True"},
                       {"type": "ContainersReady", "status": "True" if ready else "False"},
                       {"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [{"name": "vllm", "restartCount": restarts, "state": state, "lastState": {}}]}}


class Scripted(Cluster):
    def __init__(self, frames):  # no kubeconfig needed
        self.frames = list(frames)
        self.looks = 0
        self.deleted: list[str] = []
        self.applied_objects: list[dict] = []

    def pods_of(self, deployment):
        frame = self.frames[min(self.looks, len(self.frames) - 1)]
        self.looks += 1
        return frame

    def pod_events(self, pod):
        return []

    def logs(self, pod, **kwargs):
        return "INFO Loading safetensors checkpoint shards: 50% Completed"

    def replicasets_of(self, deployment):
        return [{"metadata": {"name": "vllm-qwen25-coder-7b-5d9c7b8f6"}, "spec": {"replicas": 1},
                 "status": {"readyReplicas": 1}}]

    def delete_pod(self, pod, namespace="ai-platform"):
        self.deleted.append(pod["metadata"]["name"])
        return pod["metadata"]["name"]

    def apply(self, objects):
        self.applied_objects.append(objects)
        return []


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr("llmserve.core.waiting.pause", lambda s: None)


def test_follow_rollout_until_ready_reports_each_step():
    frames = [[], [pod("new", "Pending", waiting="ContainerCreating")], [pod("new")], [pod("new", ready=True)]]
    seen = []
    result = live.follow_rollout(Scripted(frames), DEPLOYMENT, progress=lambda t, d: seen.append(d.state))
    assert result.ready
    assert seen == ["waiting", "waiting", "waiting", "ready"]


def test_follow_rollout_gives_up_on_a_stuck_pod(monkeypatch):
    clock = iter(range(0, 10_000, 30))
    monkeypatch.setattr("llmserve.core.waiting.now", lambda: next(clock))
    frames = [[pod("new", "Pending", waiting="ImagePullBackOff")]]
    result = live.follow_rollout(Scripted(frames), DEPLOYMENT, give_up_after_s=60)
    assert result.state == "stuck" and "pull" in result.reason


def test_watch_pods_records_recreate_order():
    frames = [[pod("old", ready=True)], [pod("old", terminating=True)], [],
              [pod("new", "Pending", waiting="ContainerCreating")], [pod("new")], [pod("new", ready=True)]]
    done = lambda pods: any(is_ready(p) and p["metadata"]["name"] == "new" for p in pods)
    timeline = live.watch_pods(Scripted(frames), DEPLOYMENT, until=done)
    text = "\n".join(timeline)
    assert text.index("old Terminating") < text.index("new Pending") < text.index("new Running, ready")
    assert pod_summary(pod("x", restarts=2)) == "x Running, not ready, 2 restarts"


def test_watch_pods_times_out_with_the_last_state(monkeypatch):
    clock = iter(range(0, 10_000, 100))
    monkeypatch.setattr("llmserve.core.waiting.now", lambda: next(clock))
    with pytest.raises(ClusterError) as err:
        live.watch_pods(Scripted([[pod("new")]]), DEPLOYMENT, until=lambda pods: False, timeout_s=300)
    assert "new Running, not ready" in err.value.what and "diagnose" in err.value.fix


def test_diagnose_reads_the_newest_pod_that_is_not_terminating():
    frames = [[pod("new", "Pending", waiting="ImagePullBackOff"), pod("old", ready=True, terminating=True)]]
    d = live.diagnose(Scripted(frames), DEPLOYMENT)
    assert d.state == "stuck" and "pull" in d.reason
    assert live.diagnose(Scripted([[]]), DEPLOYMENT).state == "waiting"


def test_owners_lists_the_replicaset_and_its_pods():
    lines = live.owners(Scripted([[pod("a", ready=True)]]), DEPLOYMENT)
    assert lines == ["ReplicaSet vllm-qwen25-coder-7b-5d9c7b8f6: desired 1, ready 1", "Pod a Running, ready"]


def test_delete_and_watch_waits_for_a_new_ready_pod():
    frames = [[pod("old", ready=True)], [pod("old", terminating=True), pod("new", "Pending", waiting="ContainerCreating")],
              [pod("new")], [pod("old", ready=True), pod("new", ready=True)]]
    cluster = Scripted(frames)
    lines = live.delete_and_watch(cluster, DEPLOYMENT)
    assert cluster.deleted == ["old"] and lines[0] == "deleted Pod old"
    assert "new Running, ready" in lines[-1]


def test_roll_applies_the_change_and_waits_until_only_new_pods_are_ready():
    changed = {**DEPLOYMENT, "spec": {**DEPLOYMENT["spec"]}}
    frames = [[pod("old", ready=True)], [pod("old", terminating=True)], [pod("new")], [pod("new", ready=True)]]
    cluster = Scripted(frames)
    timeline = live.roll(cluster, DEPLOYMENT, changed)
    assert cluster.applied_objects == [changed]
    text = "\n".join(timeline)
    assert text.index("old Terminating") < text.index("new Running, not ready") < text.index("new Running, ready")
