"""deployment.diagnose: a Pod, its events and its log turned into one reason and the fix.

The Pod dicts below are shaped like real API objects (`kubectl get pod -o json`):
status.phase, status.conditions[], status.containerStatuses[].state / .lastState with
waiting/terminated reasons, and Event objects with reason and message. Field names and
reasons come from the Kubernetes docs cited at each case.
"""
from __future__ import annotations

import pytest

from llmserve.core.errors import InputError
from llmserve.core.names import system
from llmserve.deployment.diagnose import FAILING, STUCK, WAITING, Diagnosis, diagnose_pod


def pod(phase="Running", conditions=(), state=None, last_state=None, restarts=0):
    cs = {"name": "vllm", "ready": False, "restartCount": restarts, "image": "vllm/vllm-openai:v0.32.0",
          "state": state or {}, "lastState": last_state or {}}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "vllm-qwen25-coder-7b-5d9c7b8f6-abcde", "namespace": "ai-platform"},
            "status": {"phase": phase, "conditions": list(conditions),
                       "containerStatuses": [cs] if state is not None or last_state else []}}


def cond(type_, status, reason=None, message=None):
    c = {"type": type_, "status": status}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def event(reason, message, type_="Warning"):
    return {"type": type_, "reason": reason, "message": message,
            "involvedObject": {"kind": "Pod", "name": "vllm-qwen25-coder-7b-5d9c7b8f6-abcde"}}


def test_pending_on_gpu():
    # Scheduler message format: https://kubernetes.io/docs/tasks/debug/debug-application/debug-pods/
    # ("0/N nodes are available: ... Insufficient <resource>"); GPU resource name from
    # https://kubernetes.io/docs/tasks/manage-gpus/scheduling-gpus/
    msg = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    p = pod("Pending", [cond("PodScheduled", "False", "Unschedulable", msg)])
    d = diagnose_pod(p, [event("FailedScheduling", msg)])
    assert d.state == "stuck" and "GPU" in d.reason and "Recreate" in d.fix


def test_pending_on_unbound_claim():
    # https://kubernetes.io/docs/concepts/storage/persistent-volumes/ (a Pod using an unbound claim is not scheduled)
    msg = "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    d = diagnose_pod(pod("Pending", [cond("PodScheduled", "False", "Unschedulable", msg)]))
    assert d.state == "stuck" and "claim" in d.reason and "Bound" in d.fix


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff"])
def test_image_pull(reason):
    # Waiting reasons: https://kubernetes.io/docs/concepts/containers/images/#imagepullbackoff
    p = pod("Pending", [cond("PodScheduled", "True")],
            state={"waiting": {"reason": reason, "message": 'Back-off pulling image "vllm/vllm-openai:v0.32.0"'}})
    d = diagnose_pod(p)
    assert d.state == "stuck" and reason in d.reason and "crictl" in d.fix


def test_crashloop_shows_the_last_log_lines():
    # CrashLoopBackOff: https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#container-restarts
    p = pod("Running", [cond("PodScheduled", "True"), cond("Ready", "False")],
            state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
            last_state={"terminated": {"reason": "Error", "exitCode": 1}}, restarts=3)
    log = "ValueError: No supported config format found in /models/qwen25-coder-7b-awq\n"
    d = diagnose_pod(p, [event("BackOff", "Back-off restarting failed container vllm")], log)
    assert d.state == "failing" and "exit code 1" in d.reason
    assert any("No supported config format" in e for e in d.evidence)


def test_startup_probe_killing_the_pod():
    # Event text of a probe failure and the kill: configure-liveness-readiness-startup-probes page
    # ("Liveness probe failed: ...", "Container ... failed liveness probe, will be restarted").
    p = pod("Running", [cond("PodScheduled", "True"), cond("Ready", "False")],
            state={"running": {"startedAt": "2026-11-27T10:00:00Z"}},
            last_state={"terminated": {"reason": "Error", "exitCode": 137}}, restarts=2)
    evs = [event("Unhealthy", 'Startup probe failed: Get "http://10.42.0.15:8000/health": dial tcp 10.42.0.15:8000: connect: connection refused'),
           event("Killing", "Container vllm failed startup probe, will be restarted", "Normal")]
    d = diagnose_pod(p, evs, "Loading safetensors checkpoint shards:  50% Completed | 1/2", startup_window=30)
    assert d.state == "failing" and "startup probe" in d.reason and "failureThreshold" in d.fix
    assert "30 s" in d.reason


def test_startup_probe_failing_while_loading_is_normal():
    p = pod("Running", [cond("PodScheduled", "True"), cond("ContainersReady", "False"), cond("Ready", "False")],
            state={"running": {"startedAt": "2026-11-27T10:00:00Z"}})
    evs = [event("Unhealthy", 'Startup probe failed: Get "http://10.42.0.15:8000/health": dial tcp 10.42.0.15:8000: connect: connection refused')]
    d = diagnose_pod(p, evs, startup_window=610)
    assert d.state == "waiting" and "610 s" in d.reason


def test_oom_killed():
    # https://kubernetes.io/docs/tasks/configure-pod-container/assign-memory-resource/
    # ("lastState: terminated: ... reason: OOMKilled", exit code 137)
    p = pod("Running", [cond("Ready", "False")],
            state={"waiting": {"reason": "CrashLoopBackOff"}},
            last_state={"terminated": {"reason": "OOMKilled", "exitCode": 137}}, restarts=1)
    d = diagnose_pod(p)
    assert d.state == "failing" and "OOM" in d.reason and "limits.memory" in d.fix


def test_missing_secret():
    # CreateContainerConfigError when a referenced Secret key is missing:
    # https://kubernetes.io/docs/concepts/configuration/secret/#restriction-secret-must-exist
    p = pod("Pending", [cond("PodScheduled", "True")],
            state={"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "vllm-api-key" not found'}})
    d = diagnose_pod(p)
    assert d.state == "stuck" and "vllm-api-key" in d.fix


def test_ready():
    # Pod conditions: https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-conditions
    p = pod("Running", [cond("PodScheduled", "True"), cond("ContainersReady", "True"), cond("Ready", "True")],
            state={"running": {"startedAt": "2026-11-27T10:00:00Z"}})
    d = diagnose_pod(p, [event("Unhealthy", "Startup probe failed: connection refused")])
    assert d.ready and d.state == "ready"


def test_no_pod_yet():
    assert diagnose_pod(None).state == "waiting"


def test_diagnosis_rejects_garbage():
    with pytest.raises(InputError):
        diagnose_pod("not a pod")
    with pytest.raises(InputError):
        diagnose_pod(pod(), events="nope")




def test_missing_secret_fix_creates_it_from_a_generated_key():
    p = pod("Pending", [cond("PodScheduled", "True")],
            state={"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "vllm-api-key" not found'}})
    fix = diagnose_pod(p).fix
    n = system()
    assert f"kubectl create secret generic {n.api_key_secret} -n {n.namespace}" in fix
    assert "openssl rand" in fix and "change-me" not in fix


def test_hopeless_is_stuck_or_failing():
    # The rollout wait gives up on these two states only.
    assert [Diagnosis(s, "r", "f").hopeless for s in (WAITING, STUCK, FAILING, "ready")] == [False, True, True, False]


def test_an_exit_of_a_running_container_with_an_error_code_is_a_crash():
    p = pod("Running", [cond("PodScheduled", "True"), cond("Ready", "False")],
            state={"terminated": {"reason": "Error", "exitCode": 2}})
    d = diagnose_pod(p)
    assert d.state == FAILING and "exit code 2" in d.reason and "(no log lines captured)" in d.evidence


def test_names_in_the_fixes_come_from_the_manifests():
    d = diagnose_pod(pod("Running", [cond("PodScheduled", "True"), cond("ContainersReady", "False")],
                         state={"running": {"startedAt": "2026-11-27T10:00:00Z"}}))
    n = system()
    assert f"deploy/{n.deployment} -n {n.namespace}" in d.fix
