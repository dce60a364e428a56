"""The capstone's pure rules: apply order, API key, overlay choice and changes, readiness, by-hand commands.

Objects below are CONSTRUCTED in the test (shaped like what the API server
returns, per the Kubernetes API reference), never captured from a cluster.
"""
from __future__ import annotations

import base64

import pytest

from llmserve.core.errors import InputError, ManifestError
from llmserve.core.names import system
from llmserve.stack import order
from llmserve.world import manifests
from tests.support import REPO


def kinds(objs):
    return [o["kind"] for o in objs]


# ------------------------------------------------------------------ apply order

def test_apply_order_puts_dependencies_first():
    rendered = manifests.render("overlays/gpu-box")
    # kustomize's own (legacy) order puts the Service before the PV and the Secret first:
    assert kinds(rendered).index("Service") < kinds(rendered).index("PersistentVolume")
    assert kinds(order.apply_order(rendered)) == ["Namespace", "PersistentVolume", "PersistentVolumeClaim",
                                                  "Secret", "Deployment", "Service"]


def test_apply_order_is_stable_and_places_unknown_kinds_before_the_workload():
    objs = [{"kind": k, "metadata": {"name": n}} for k, n in
            [("Service", "s"), ("ConfigMap", "c1"), ("Deployment", "d"), ("ConfigMap", "c2"), ("Namespace", "ns")]]
    ordered = order.apply_order(objs)
    assert [o["metadata"]["name"] for o in ordered] == ["ns", "c1", "c2", "d", "s"]


def test_apply_order_rejects_non_objects():
    with pytest.raises(InputError):
        order.apply_order([{"name": "x"}])


def test_describe_order_gives_a_reason_per_object():
    lines = order.describe_order(manifests.render("base"))
    assert len(lines) == 6 and lines[0].startswith(f"1. Namespace {system().namespace} — ")
    assert "404" in lines[0] and "CreateContainerConfigError" in lines[3]
    assert order.why("ConfigMap").startswith("configuration read by the workload")


def test_find_names_what_is_missing():
    objs = manifests.render("base")
    assert order.find(objs, "Secret")["metadata"]["name"] == system().api_key_secret
    with pytest.raises(ManifestError, match="No ConfigMap"):
        order.find(objs, "ConfigMap")


# ------------------------------------------------------------------ API key

def secret_as_read_back(value: str) -> dict:
    # The API server returns Secret data base64-encoded in .data (Secret API reference).
    return {"kind": "Secret", "metadata": {"name": "vllm-api-key"},
            "data": {"api-key": base64.b64encode(value.encode()).decode()}}


def test_secret_value_reads_data_and_string_data():
    assert order.secret_value(secret_as_read_back("abc")) == "abc"
    assert order.secret_value({"stringData": {"api-key": "xyz"}}) == "xyz"
    assert order.secret_value(None) is None
    assert order.secret_value({"data": {"api-key": "%%%not-base64"}}) is None


def test_resolve_prefers_env_then_live_secret_then_new():
    assert order.resolve_api_key("from-env", secret_as_read_back("live"))[0] == "from-env"
    key, source = order.resolve_api_key(None, secret_as_read_back("live"))
    assert key == "live" and "kept" in source
    key, source = order.resolve_api_key("", secret_as_read_back("change-me"), generate=lambda: "fresh")
    assert key == "fresh" and "generated" in source
    assert order.resolve_api_key(None, None, generate=lambda: "fresh")[0] == "fresh"


def test_the_placeholder_is_never_applied():
    with pytest.raises(InputError):
        order.resolve_api_key("change-me", None)
    with pytest.raises(InputError):
        order.with_api_key(manifests.render("base"), "change-me")
    with pytest.raises(InputError, match="placeholder"):
        order.resolve_api_key(None, None, generate=lambda: order.PLACEHOLDER_KEY)


def test_the_placeholder_is_the_committed_value():
    secret = order.find(manifests.render("base"), "Secret")
    assert order.secret_value(secret) == order.PLACEHOLDER_KEY
    assert secret["metadata"]["labels"][order.SECRET_COMPONENT[0]] == order.SECRET_COMPONENT[1]


def test_new_keys_are_random_and_long():
    a, b = order.new_api_key(), order.new_api_key()
    assert a != b and len(a) >= 40


def test_with_api_key_needs_the_secret():
    objs = [o for o in manifests.render("base") if o["kind"] != "Secret"]
    with pytest.raises(ManifestError, match="no Secret"):
        order.with_api_key(objs, "k")


# ------------------------------------------------------------------ overlay

def node(name, gpus=None):
    alloc = {"cpu": "8", "memory": "32Gi"}
    if gpus is not None:
        alloc["nvidia.com/gpu"] = str(gpus)
    return {"metadata": {"name": name}, "status": {"allocatable": alloc}}


def test_overlay_follows_the_nodes():
    assert order.overlay_for_nodes([node("a"), node("gpu-1", 1)])[0] == "gpu-box"
    overlay, reason = order.overlay_for_nodes([node("kind-control-plane")])
    assert overlay == "laptop-cpu" and "device plugin" in reason
    assert order.overlay_for_nodes([node("x", 0)])[0] == "laptop-cpu"
    assert order.overlay_for_nodes([]) == ("laptop-cpu", "the cluster listed no nodes")


def test_choose_overlay_env_wins_and_is_checked():
    assert order.choose_overlay("laptop-cpu", [node("g", 1)])[0] == "laptop-cpu"
    assert order.choose_overlay(None, None)[0] == "gpu-box"
    with pytest.raises(InputError, match="not an overlay"):
        order.choose_overlay("laptop")


def test_overlay_changes_lists_what_the_patch_changed():
    base = manifests.render("base")
    gpu = order.overlay_changes(base, manifests.render("overlays/gpu-box"))
    assert len(gpu) == 1 and "spec.template.spec.tolerations: — → " in gpu[0]
    cpu = order.overlay_changes(base, manifests.render("overlays/laptop-cpu"))
    assert any(".containers[vllm].image: vllm/vllm-openai:v0.32.0 → vllm/vllm-openai-cpu:" in c for c in cpu)
    assert any(".resources.limits.nvidia.com/gpu: 1 → —" in c for c in cpu)
    assert any(".env[VLLM_CPU_KVCACHE_SPACE]: — → " in c for c in cpu)
    assert not any(c.startswith(("Service", "PersistentVolume", "Namespace", "Secret")) for c in cpu)
    assert order.overlay_changes(base, base) == []
    # Objects an overlay adds are one line each, not every field of them (a ConfigMap's whole file).
    gateway = order.overlay_changes(base, manifests.render("overlays/gpu-box-gateway"))
    added = [c for c in gateway if c.endswith(": added by the overlay")]
    assert added and all(len(c) < 120 for c in gateway if not c.startswith("Deployment vllm-qwen25"))
    assert "nginx.conf" not in "\n".join(gateway)
    removed = order.overlay_changes(manifests.render("overlays/gpu-box-gateway"), base)
    assert any(c.endswith(": removed by the overlay") for c in removed)


# ------------------------------------------------------------------ readiness

def deployment(available=0, ready=0, updated=1, generation=1, observed=1, conditions=()):
    # Shape of apps/v1 Deployment status (DeploymentStatus in the API reference).
    return {"metadata": {"name": "vllm-qwen25-coder-7b", "generation": generation},
            "spec": {"replicas": 1},
            "status": {"observedGeneration": observed, "availableReplicas": available, "readyReplicas": ready,
                       "updatedReplicas": updated, "conditions": list(conditions)}}


def pod(**status):
    return {"metadata": {"name": "vllm-abc"}, "status": status}


def test_ready_when_available_updated_and_observed():
    assert order.rollout_status(deployment(available=1, ready=1)) == (True, "1/1 available, 1/1 ready, 1/1 updated")
    done, status = order.rollout_status(deployment(available=1, ready=1, generation=2, observed=1))
    assert not done and "not seen the latest change" in status


def test_not_found():
    assert order.rollout_status(None)[0] is False


@pytest.mark.parametrize("pod_status, expected", [
    # Pod phases, conditions and container states: kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/
    ({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                          "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}]},
     "Insufficient nvidia.com/gpu"),
    ({"phase": "Pending", "containerStatuses": [{"ready": False, "restartCount": 0, "state": {
        "waiting": {"reason": "CreateContainerConfigError", "message": 'secret "vllm-api-key" not found'}}}]},
     "CreateContainerConfigError"),
    ({"phase": "Running", "containerStatuses": [{"ready": False, "started": False, "restartCount": 0,
                                                 "state": {"running": {}}}]},
     "loading the model"),
    ({"phase": "Running", "containerStatuses": [{"ready": False, "started": True, "restartCount": 0,
                                                 "state": {"running": {}}}]},
     "waiting for the readiness probe"),
    ({"phase": "Running", "containerStatuses": [{"ready": False, "restartCount": 4, "state": {
        "waiting": {"reason": "CrashLoopBackOff"}}}]},
     "CrashLoopBackOff, 4 restarts"),
    ({"phase": "Running", "containerStatuses": [{"ready": False, "restartCount": 1, "state": {
        "terminated": {"reason": "OOMKilled", "exitCode": 137}}}]},
     "container terminated (OOMKilled, exit code 137), 1 restarts"),
    ({"phase": "Pending"}, "containers not created yet"),
])
def test_status_says_why_not_ready(pod_status, expected):
    done, status = order.rollout_status(deployment(), [pod(**pod_status)])
    assert not done and expected in status and status.startswith("0/1 available")


def test_stuck_rollout_is_named():
    cond = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": 'ReplicaSet "x" has timed out progressing.'}
    assert "ProgressDeadlineExceeded" in order.rollout_status(deployment(conditions=[cond]))[1]


def test_install_hint_names_the_setup_script():
    assert "scripts/setup.sh" in order.install_hint("no cluster")


# ------------------------------------------------------------------ by hand

def test_by_hand_creates_the_secret_first_and_never_applies_the_placeholder():
    # Issue: `kubectl apply -k` alone writes the committed placeholder into the Secret.
    n = system()
    steps = order.by_hand("apply", "gpu-box")
    create = next(i for i, c in enumerate(steps) if c.startswith(f"kubectl -n {n.namespace} create secret"))
    apply_k = next(i for i, c in enumerate(steps) if " -k manifests/overlays/gpu-box" in c)
    assert create < apply_k
    assert "-l 'app.kubernetes.io/component!=api-key'" in steps[apply_k]     # the Secret is left out
    assert all(order.PLACEHOLDER_KEY not in c for c in steps)
    assert "openssl rand" in " ".join(steps[:create])                          # a generated key
    assert n.deployment in order.by_hand("wait")[0] and n.service in order.by_hand("reach")[0]
    assert "-l app.kubernetes.io/part-of=vllm-course" in order.by_hand("cleanup")[0]
    with pytest.raises(InputError, match="Use one of"):
        order.by_hand("teleport")


def test_the_benchmark_jobs_commands_name_the_committed_job():
    objs = manifests.load(order.BENCH_JOB_FILE.removeprefix("manifests/"))
    n = system()
    [job] = [o for o in objs if o["kind"] == "Job"]
    assert (job["metadata"]["name"], job["metadata"]["namespace"]) == (order.BENCH_JOB, n.namespace)
    steps = order.by_hand("bench")
    # Applied and deleted by file: the Job and its NetworkPolicy go together.
    assert steps[0] == f"kubectl apply -f {order.BENCH_JOB_FILE}" and steps[-1] == f"kubectl delete -f {order.BENCH_JOB_FILE}"
    assert f"job/{order.BENCH_JOB}" in steps[1] and f"job/{order.BENCH_JOB}" in steps[2]
    # The file's own comment gives the same commands.
    comment = (REPO / order.BENCH_JOB_FILE).read_text()
    assert all(f"#   {c}" in comment for c in steps), steps
