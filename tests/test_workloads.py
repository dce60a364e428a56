"""Tests for llmserve.workloads: probe budget, memory budget, rollout diagnosis.

The Pod dicts below are shaped like real API objects (`kubectl get pod -o json`):
status.phase, status.conditions[], status.containerStatuses[].state /
.lastState with waiting/terminated reasons, and Event objects with reason and
message. Field names and reasons come from the Kubernetes docs cited at each
case.
"""
from __future__ import annotations

import pytest

from llmserve import workloads as w
from llmserve.world import manifests
from llmserve.core.errors import InputError

DEPLOYMENT = manifests.load_one("base/vllm-deployment.yaml")


# ---------------------------------------------------------------------------
# probe budget
# ---------------------------------------------------------------------------
def test_startup_window_matches_the_kubernetes_docs_example():
    # https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/
    # "failureThreshold: 30, periodSeconds: 10 ... a maximum of 5 minutes (30 * 10 = 300s)"
    assert w.startup_window_s(w.Probe(initial_delay_s=0, period_s=10, failure_threshold=30)) == 300


def test_probe_defaults_are_the_documented_ones():
    # Same page, "Configure Probes": periodSeconds 10, timeoutSeconds 1, failureThreshold 3, initialDelaySeconds 0.
    p = w.Probe.from_dict({"httpGet": {"path": "/health", "port": 8000}})
    assert (p.initial_delay_s, p.period_s, p.timeout_s, p.failure_threshold) == (0, 10, 1, 3)


def test_liveness_without_startup_probe_is_too_short_for_vllm():
    # Default probe: 3 x 10 s = 30 s; 5.2 GiB at 500 MB/s is ~11 s of reading plus engine start.
    b = w.probe_budget(0, 10, 3, 1, weights_gib=5.2, disk_mb_s=500, overhead_s=60)
    assert not b.fits
    assert b.window_s == 30
    assert "TOO SHORT" in b.verdict and "failureThreshold" in b.verdict
    # The suggestion really covers 1.5x the need.
    assert 0 + b.suggested_failure_threshold * 10 >= 1.5 * b.needed_s


def test_load_time_is_size_over_speed():
    # 1 GiB = 1,073,741,824 bytes; 100 MB/s = 1e8 bytes/s.
    assert w.load_time_s(1, 100) == pytest.approx(10.73741824)


def test_the_course_manifest_fits_a_slow_disk():
    vals = w.budgets_from_deployment(DEPLOYMENT)
    b = w.probe_budget(vals["initial_delay_s"], vals["period_s"], vals["failure_threshold"], vals["timeout_s"],
                       weights_gib=5.3, disk_mb_s=100)
    assert b.fits, b.verdict


@pytest.mark.parametrize("kwargs, word", [
    (dict(period_s=0), "periodSeconds"),
    (dict(period_s=-5), "periodSeconds"),
    (dict(failure_threshold="lots"), "failureThreshold"),
    (dict(failure_threshold=2.5), "whole number"),
    (dict(disk_mb_s=0), "disk read speed"),
    (dict(weights_gib=-1), "weight size"),
    (dict(overhead_s=float("nan")), "finite"),
    (dict(timeout_s=30, period_s=10), "timeoutSeconds"),
])
def test_probe_budget_rejects_bad_input(kwargs, word):
    args = dict(initial_delay_s=0, period_s=10, failure_threshold=30, timeout_s=1, weights_gib=5, disk_mb_s=200)
    args.update(kwargs)
    with pytest.raises(InputError) as err:
        w.probe_budget(**args)
    assert word in str(err.value) and "Fix:" in str(err.value)


def test_startup_timings_read_from_vllm_log_lines():
    # Formats from vLLM 0.32: default_loader.py, gpu_model_runner.py, v1/engine/core.py.
    log = "\n".join([
        "INFO 11-27 10:00:05 [default_loader.py:502] Loading weights took 12.50 seconds",
        "INFO 11-27 10:00:06 [gpu_model_runner.py:5150] Model loading took 5.31 GiB memory and 14.250000 seconds",
        "INFO 11-27 10:00:40 [gpu_model_runner.py:6582] Graph capturing finished in 18 secs, took 0.45 GiB",
        "INFO 11-27 10:00:41 [core.py:403] init engine (profile, create kv cache, warmup model) took 60.10 s",
    ])
    t = w.startup_timings(log)
    assert t["weights_s"] == 12.5 and t["model_load_s"] == 14.25 and t["graph_capture_s"] == 18
    assert t["overhead_s"] == pytest.approx(14.25 - 12.5 + 60.10)
    assert w.startup_timings("nothing here") == {}


# ---------------------------------------------------------------------------
# memory budget
# ---------------------------------------------------------------------------
def test_memory_fits_with_reclaimable_page_cache():
    b = w.memory_budget(16, process_gib=6, shm_used_gib=4, shm_size_limit_gib=4, weights_gib=5.2)
    assert not b.oom and b.pinned_gib == 10 and b.headroom_gib == 6
    assert "FITS" in b.verdict


def test_shm_counts_against_the_limit():
    # https://kubernetes.io/docs/concepts/storage/volumes/#emptydir : with medium Memory,
    # "files you write count against your container's memory limit".
    without = w.memory_budget(8, process_gib=6, shm_used_gib=0)
    with_shm = w.memory_budget(8, process_gib=6, shm_used_gib=3, shm_size_limit_gib=4)
    assert not without.oom and with_shm.oom
    assert "OOM-KILLED" in with_shm.verdict and "137" in with_shm.verdict


def test_page_cache_alone_never_oom_kills():
    b = w.memory_budget(8, process_gib=6, shm_used_gib=0, weights_gib=40)
    assert not b.oom and "reclaims" in b.verdict


def test_shm_above_its_size_limit_is_called_out():
    b = w.memory_budget(16, process_gib=2, shm_used_gib=6, shm_size_limit_gib=4)
    assert "evicts" in b.verdict


@pytest.mark.parametrize("bad", [0, -1, "sixteen", None])
def test_memory_budget_rejects_bad_limits(bad):
    with pytest.raises(InputError):
        w.memory_budget(bad)


def test_quantities():
    # https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/
    assert w.parse_quantity("16Gi") == 16 * 1024 ** 3
    assert w.parse_quantity("500M") == 500e6
    assert w.parse_quantity("250m") == 0.25
    with pytest.raises(InputError):
        w.parse_quantity("16 GB")


def test_budget_values_come_from_the_manifest():
    vals = w.budgets_from_deployment(DEPLOYMENT)
    c = w.vllm_container(DEPLOYMENT)
    assert vals["failure_threshold"] == c["startupProbe"]["failureThreshold"]
    assert vals["limit_gib"] * 1024 ** 3 == w.parse_quantity(c["resources"]["limits"]["memory"])
    assert vals["shm_size_limit_gib"] == 4.0
    assert vals["model"] == "/models/qwen25-coder-7b-awq"


# ---------------------------------------------------------------------------
# rollout diagnosis: Pod dicts shaped like the API's
# ---------------------------------------------------------------------------
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
    d = w.diagnose_pod(p, [event("FailedScheduling", msg)])
    assert d.state == "stuck" and "GPU" in d.reason and "Recreate" in d.fix


def test_pending_on_unbound_claim():
    # https://kubernetes.io/docs/concepts/storage/persistent-volumes/ (a Pod using an unbound claim is not scheduled)
    msg = "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    d = w.diagnose_pod(pod("Pending", [cond("PodScheduled", "False", "Unschedulable", msg)]))
    assert d.state == "stuck" and "claim" in d.reason and "Bound" in d.fix


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff"])
def test_image_pull(reason):
    # Waiting reasons: https://kubernetes.io/docs/concepts/containers/images/#imagepullbackoff
    p = pod("Pending", [cond("PodScheduled", "True")],
            state={"waiting": {"reason": reason, "message": 'Back-off pulling image "vllm/vllm-openai:v0.32.0"'}})
    d = w.diagnose_pod(p)
    assert d.state == "stuck" and reason in d.reason and "crictl" in d.fix


def test_crashloop_shows_the_last_log_lines():
    # CrashLoopBackOff: https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#container-restarts
    p = pod("Running", [cond("PodScheduled", "True"), cond("Ready", "False")],
            state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
            last_state={"terminated": {"reason": "Error", "exitCode": 1}}, restarts=3)
    log = "ValueError: No supported config format found in /models/qwen25-coder-7b-awq\n"
    d = w.diagnose_pod(p, [event("BackOff", "Back-off restarting failed container vllm")], log)
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
    d = w.diagnose_pod(p, evs, "Loading safetensors checkpoint shards:  50% Completed | 1/2", startup_window=30)
    assert d.state == "failing" and "startup probe" in d.reason and "failureThreshold" in d.fix
    assert "30 s" in d.reason


def test_startup_probe_failing_while_loading_is_normal():
    p = pod("Running", [cond("PodScheduled", "True"), cond("ContainersReady", "False"), cond("Ready", "False")],
            state={"running": {"startedAt": "2026-11-27T10:00:00Z"}})
    evs = [event("Unhealthy", 'Startup probe failed: Get "http://10.42.0.15:8000/health": dial tcp 10.42.0.15:8000: connect: connection refused')]
    d = w.diagnose_pod(p, evs, startup_window=610)
    assert d.state == "waiting" and "610 s" in d.reason


def test_oom_killed():
    # https://kubernetes.io/docs/tasks/configure-pod-container/assign-memory-resource/
    # ("lastState: terminated: ... reason: OOMKilled", exit code 137)
    p = pod("Running", [cond("Ready", "False")],
            state={"waiting": {"reason": "CrashLoopBackOff"}},
            last_state={"terminated": {"reason": "OOMKilled", "exitCode": 137}}, restarts=1)
    d = w.diagnose_pod(p)
    assert d.state == "failing" and "OOM" in d.reason and "limits.memory" in d.fix


def test_missing_secret():
    # CreateContainerConfigError when a referenced Secret key is missing:
    # https://kubernetes.io/docs/concepts/configuration/secret/#restriction-secret-must-exist
    p = pod("Pending", [cond("PodScheduled", "True")],
            state={"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "vllm-api-key" not found'}})
    d = w.diagnose_pod(p)
    assert d.state == "stuck" and "vllm-api-key" in d.fix


def test_ready():
    # Pod conditions: https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-conditions
    p = pod("Running", [cond("PodScheduled", "True"), cond("ContainersReady", "True"), cond("Ready", "True")],
            state={"running": {"startedAt": "2026-11-27T10:00:00Z"}})
    d = w.diagnose_pod(p, [event("Unhealthy", "Startup probe failed: connection refused")])
    assert d.ready and d.state == "ready"


def test_no_pod_yet():
    assert w.diagnose_pod(None).state == "waiting"


def test_diagnosis_rejects_garbage():
    with pytest.raises(InputError):
        w.diagnose_pod("not a pod")
    with pytest.raises(InputError):
        w.diagnose_pod(pod(), events="nope")


# ---------------------------------------------------------------------------
# panels: initial state from the manifest, bad input shown as a message
# ---------------------------------------------------------------------------
def test_panels_render_and_show_errors():
    from llmserve.panels import deployment as panels
    probe = panels.probe_panel()
    boxes = {b.description: b for b in probe.children if hasattr(b, "description") and b.description}
    out = probe.children[-1]
    assert boxes["startupProbe failureThreshold"].value == str(DEPLOYMENT["spec"]["template"]["spec"]
                                                                ["containers"][0]["startupProbe"]["failureThreshold"])
    assert "start-up window" in out.value
    for bad, word in (("0", "greater than 0"), ("-3", "greater than 0"), ("fast", "must be a number")):
        boxes["disk read speed (MB/s)"].value = bad
        assert "Cannot compute this" in out.value and word in out.value
    memory = panels.memory_panel()
    mboxes = {b.description: b for b in memory.children if hasattr(b, "description") and b.description}
    assert mboxes["limits.memory (GiB)"].value == "16"
    mboxes["limits.memory (GiB)"].value = "2"
    assert "OOM-KILLED" in memory.children[-1].value
    mboxes["limits.memory (GiB)"].value = "lots"
    assert "Cannot compute this" in memory.children[-1].value


def test_with_arg_replaces_in_place_and_leaves_the_original():
    new = w.with_arg(DEPLOYMENT, "--max-model-len", 4096)
    old_args = w.vllm_container(DEPLOYMENT)["args"]
    new_args = w.vllm_container(new)["args"]
    assert w.arg_value(w.vllm_container(DEPLOYMENT), "--max-model-len") == "8192"
    assert new_args[old_args.index("--max-model-len=8192")] == "--max-model-len=4096"
    assert len(new_args) == len(old_args)
    with pytest.raises(InputError):
        w.with_arg(DEPLOYMENT, "max-model-len", 1)
