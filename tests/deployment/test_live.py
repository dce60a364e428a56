"""deployment.live.follow_rollout and watch_pods over a scripted sequence of Pods.

No cluster: the three reads they make (pods_of, pod_events, logs) are replaced
by a script of API-shaped Pods, as a real rollout under `strategy: Recreate`
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

    def pods_of(self, deployment):
        frame = self.frames[min(self.looks, len(self.frames) - 1)]
        self.looks += 1
        return frame

    def pod_events(self, pod):
        return []

    def logs(self, pod, **kwargs):
        return "INFO Loading safetensors checkpoint shards: 50% Completed"


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr("llmserve.core.waiting.time.sleep", lambda s: None)


def test_follow_rollout_until_ready_reports_each_step():
    frames = [[], [pod("new", "Pending", waiting="ContainerCreating")], [pod("new")], [pod("new", ready=True)]]
    seen = []
    result = live.follow_rollout(Scripted(frames), DEPLOYMENT, progress=lambda t, d: seen.append(d.state))
    assert result.ready
    assert seen == ["waiting", "waiting", "waiting", "ready"]


def test_follow_rollout_gives_up_on_a_stuck_pod(monkeypatch):
    clock = iter(range(0, 10_000, 30))
    monkeypatch.setattr("llmserve.core.waiting.time.monotonic", lambda: next(clock))
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
    monkeypatch.setattr("llmserve.core.waiting.time.monotonic", lambda: next(clock))
    with pytest.raises(ClusterError) as err:
        live.watch_pods(Scripted([[pod("new")]]), DEPLOYMENT, until=lambda pods: False, timeout_s=300)
    assert "new Running, not ready" in err.value.what and "diagnose" in err.value.fix
