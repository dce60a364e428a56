"""The Deployment chapter's live actions: diagnose a rollout, follow it, watch its Pods.

Used by notebooks/deployment-lab.ipynb and the stack helpers. Each function takes
a :class:`llmserve.world.cluster.Cluster` (anything with ``pods_of``, ``pod_events``
and ``logs``) and waits through :func:`llmserve.core.waiting.wait_until`.
"""
from __future__ import annotations

from typing import Callable

from llmserve import workloads
from llmserve.core.errors import ClusterError
from llmserve.core.objects import pod_summary
from llmserve.core.waiting import wait_until


def diagnose(cluster, deployment: dict, tail: int = 5) -> workloads.Diagnosis:
    """Diagnose the Deployment's newest Pod now, from the Pod, its events and its last log lines."""
    pods = [p for p in cluster.pods_of(deployment) if not p["metadata"].get("deletionTimestamp")]
    if not pods:
        return workloads.diagnose_pod(None)
    pod = pods[-1]
    events = cluster.pod_events(pod)
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    restarted = any(s.get("restartCount", 0) > 0 for s in statuses)
    log = cluster.logs(pod, tail=tail)
    if not log.strip() and restarted:
        log = cluster.logs(pod, tail=tail, previous=True)
    try:
        window = workloads.startup_window_s(workloads.Probe.of(deployment))
    except Exception:  # noqa: BLE001 - no startupProbe: no window to report
        window = None
    return workloads.diagnose_pod(pod, events, log, startup_window=window)


def follow_rollout(cluster, deployment: dict, timeout_s: float = 900.0, interval_s: float = 5.0,
                   progress: Callable[[float, object], None] | None = None, give_up_after_s: float = 120.0):
    """Poll the Deployment's newest Pod until it is Ready; return the last Diagnosis.

    ``progress(elapsed_s, diagnosis)`` is called after each look. It stops
    early when the Pod has been "stuck" or "failing" for ``give_up_after_s``
    (the diagnosis then says why and what to do); otherwise after
    ``timeout_s``. Only cluster access failures raise (ClusterError).
    """
    def look():
        d = diagnose(cluster, deployment)
        return d.ready, d

    return wait_until(look, timeout_s=timeout_s, interval_s=interval_s, progress=progress,
                      give_up=lambda d: d.state in ("stuck", "failing"), give_up_after_s=give_up_after_s).status


def watch_pods(cluster, deployment: dict, until: Callable[[list[dict]], bool], timeout_s: float = 900.0,
               interval_s: float = 3.0, progress: Callable[[float, str], None] | None = None) -> list[str]:
    """Record how the Deployment's Pods change until ``until(pods)`` holds.

    Returns one line per change (``"  12 s  vllm-…-abcde Running, not ready"``):
    what `kubectl get pods -w` would have shown. Raises ClusterError on timeout.
    """
    timeline: list[str] = []
    last: dict = {"snapshot": None, "elapsed": 0.0}

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
        return ClusterError(f"The Pods did not reach the expected state within {timeout_s:.0f} s. Last seen: {snapshot}",
                            "Run the rollout diagnosis (llmserve.deployment.live.diagnose) to see why.")

    wait_until(look, timeout_s=timeout_s, interval_s=interval_s, progress=record, on_timeout=timed_out)
    return timeline
