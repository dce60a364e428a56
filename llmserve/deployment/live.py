"""Live actions of the Deployment chapter: diagnose a rollout, follow it, watch its Pods, delete and roll them.

Used by ``notebooks/deployment-lab.ipynb`` and the stack chapter's helpers. Layer: live.
Each function takes a :class:`llmserve.world.cluster.Cluster` (anything with ``pods_of``,
``pod_events``, ``logs``, ``replicasets_of``, ``delete_pod`` and ``apply``), reads the Pods
through it and waits through :func:`llmserve.core.waiting.wait_until`; the pure
:func:`llmserve.deployment.diagnose.diagnose_pod` says what the Pods mean. Every
failure is a :class:`~llmserve.core.errors.ClusterError` naming the fix. The ``kubectl``
commands that do the same by hand are in :func:`llmserve.deployment.workload.kubectl_commands`.
"""
from __future__ import annotations

from typing import Callable

from llmserve.core.errors import ClusterError, CourseError
from llmserve.core.objects import is_ready, name_of, pod_summary
from llmserve.core.waiting import wait_until
from llmserve.deployment.budgets import Probe, startup_window_s
from llmserve.deployment.diagnose import Diagnosis, diagnose_pod


def diagnose(cluster, deployment: dict, tail: int = 5) -> Diagnosis:
    """Diagnose the Deployment's newest Pod now, from the Pod, its events and its last log lines."""
    pods = [p for p in cluster.pods_of(deployment) if not p["metadata"].get("deletionTimestamp")]
    if not pods:
        return diagnose_pod(None)
    pod = pods[-1]
    events = cluster.pod_events(pod)
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    restarted = any(s.get("restartCount", 0) > 0 for s in statuses)
    log = cluster.logs(pod, tail=tail)
    if not log.strip() and restarted:
        log = cluster.logs(pod, tail=tail, previous=True)
    try:
        window = startup_window_s(Probe.of(deployment))
    except CourseError:  # no startupProbe: no window to report
        window = None
    return diagnose_pod(pod, events, log, startup_window=window)


def follow_rollout(cluster, deployment: dict, timeout_s: float = 900.0, interval_s: float = 5.0,
                   progress: Callable[[float, Diagnosis], None] | None = None,
                   give_up_after_s: float = 120.0) -> Diagnosis:
    """Poll the Deployment's newest Pod until it is Ready; return the last Diagnosis.

    ``progress(elapsed_s, diagnosis)`` is called after each look. It stops early when the
    Pod has been "stuck" or "failing" for ``give_up_after_s`` (the diagnosis then says why
    and what to do); otherwise after ``timeout_s``. Only cluster access failures raise.
    """
    def look():
        d = diagnose(cluster, deployment)
        return d.ready, d

    return wait_until(look, timeout_s=timeout_s, interval_s=interval_s, progress=progress,
                      give_up=lambda d: d.hopeless, give_up_after_s=give_up_after_s).status


def watch_pods(cluster, deployment: dict, until: Callable[[list[dict]], bool], timeout_s: float = 900.0,
               interval_s: float = 3.0, progress: Callable[[float, str], None] | None = None) -> list[str]:
    """Record how the Deployment's Pods change until ``until(pods)`` holds.

    Returns one line per change (``"  12 s  vllm-…-abcde Running, not ready"``): what
    `kubectl get pods -w` would have shown. Raises ClusterError on timeout.
    """
    timeline: list[str] = []
    last: dict = {"snapshot": None}

    def look():
        pods = cluster.pods_of(deployment)
        snapshot = "; ".join(pod_summary(p) for p in pods) or "no Pods"
        return until(pods), snapshot

    def record(elapsed: float, snapshot: str) -> None:
        if snapshot != last["snapshot"]:
            timeline.append(f"{elapsed:5.0f} s  {snapshot}")
            last["snapshot"] = snapshot
            if progress:
                progress(elapsed, snapshot)

    def timed_out(snapshot: str, elapsed: float) -> ClusterError:
        return ClusterError(f"The Pods did not reach the expected state within {timeout_s:.0f} s. "
                            f"Last seen: {snapshot}",
                            "Run the rollout diagnosis (llmserve.deployment.live.diagnose) to see why.")

    wait_until(look, timeout_s=timeout_s, interval_s=interval_s, progress=record, on_timeout=timed_out)
    return timeline


def owners(cluster, deployment: dict) -> list[str]:
    """The Deployment's ReplicaSets (desired and ready counts) and Pods, one line each."""
    lines = [f"ReplicaSet {name_of(rs)}: desired {(rs.get('spec') or {}).get('replicas')}, "
             f"ready {(rs.get('status') or {}).get('readyReplicas', 0)}"
             for rs in cluster.replicasets_of(deployment)]
    return lines + [f"Pod {pod_summary(p)}" for p in cluster.pods_of(deployment)]


def delete_and_watch(cluster, deployment: dict, timeout_s: float = 900.0,
                     progress: Callable[[float, str], None] | None = None) -> list[str]:
    """Delete the Deployment's Pods and record how the ReplicaSet replaces them, until a new one is Ready."""
    pods = cluster.pods_of(deployment)
    old = {name_of(p) for p in pods}
    lines = [f"deleted Pod {cluster.delete_pod(p)}" for p in pods]

    def replaced(pods: list[dict]) -> bool:
        return any(is_ready(p) and name_of(p) not in old for p in pods)

    return lines + watch_pods(cluster, deployment, until=replaced, timeout_s=timeout_s, progress=progress)


def roll(cluster, deployment: dict, changed: dict, timeout_s: float = 900.0,
         progress: Callable[[float, str], None] | None = None) -> list[str]:
    """Apply ``changed`` (a new Pod template) and record the rollout until only new, Ready Pods are left."""
    before = {name_of(p) for p in cluster.pods_of(deployment)}
    cluster.apply(changed)

    def rolled(pods: list[dict]) -> bool:
        return bool(pods) and all(is_ready(p) and name_of(p) not in before for p in pods)

    return watch_pods(cluster, changed, until=rolled, timeout_s=timeout_s, progress=progress)
