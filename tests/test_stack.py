"""The capstone's logic: apply order, API key, overlay choice, readiness, cleanup.

Objects below are CONSTRUCTED in the test (shaped like what the API server
returns, per the Kubernetes API reference), never captured from a cluster.
"""
from __future__ import annotations

import base64

import pytest

from llmserve import stack
from llmserve.world import manifests
from llmserve.world.cluster import Cluster, ObjectRef
from llmserve.core.errors import ClusterError, InputError, ManifestError


def kinds(objs):
    return [o["kind"] for o in objs]


# ------------------------------------------------------------------ apply order

def test_apply_order_puts_dependencies_first():
    rendered = manifests.render("overlays/gpu-box")
    # kustomize's own (legacy) order puts the Service before the PV and the Secret first:
    assert kinds(rendered).index("Service") < kinds(rendered).index("PersistentVolume")
    assert kinds(stack.apply_order(rendered)) == ["Namespace", "PersistentVolume", "PersistentVolumeClaim",
                                                  "Secret", "Deployment", "Service"]


def test_apply_order_is_stable_and_places_unknown_kinds_before_the_workload():
    objs = [{"kind": k, "metadata": {"name": n}} for k, n in
            [("Service", "s"), ("ConfigMap", "c1"), ("Deployment", "d"), ("ConfigMap", "c2"), ("Namespace", "ns")]]
    ordered = stack.apply_order(objs)
    assert [o["metadata"]["name"] for o in ordered] == ["ns", "c1", "c2", "d", "s"]


def test_apply_order_rejects_non_objects():
    with pytest.raises(InputError):
        stack.apply_order([{"name": "x"}])


def test_describe_order_gives_a_reason_per_object():
    lines = stack.describe_order(manifests.render("base"))
    assert len(lines) == 6 and lines[0].startswith("1. Namespace ai-platform — ")
    assert "404" in lines[0] and "CreateContainerConfigError" in lines[3]


# ------------------------------------------------------------------ API key

def secret_as_read_back(value: str) -> dict:
    # The API server returns Secret data base64-encoded in .data (Secret API reference).
    return {"kind": "Secret", "metadata": {"name": "vllm-api-key"},
            "data": {"api-key": base64.b64encode(value.encode()).decode()}}


def test_secret_value_reads_data_and_string_data():
    assert stack.secret_value(secret_as_read_back("abc")) == "abc"
    assert stack.secret_value({"stringData": {"api-key": "xyz"}}) == "xyz"
    assert stack.secret_value(None) is None
    assert stack.secret_value({"data": {"api-key": "%%%not-base64"}}) is None


def test_resolve_prefers_env_then_live_secret_then_new():
    assert stack.resolve_api_key("from-env", secret_as_read_back("live"))[0] == "from-env"
    key, source = stack.resolve_api_key(None, secret_as_read_back("live"))
    assert key == "live" and "kept" in source
    key, source = stack.resolve_api_key("", secret_as_read_back("change-me"), generate=lambda: "fresh")
    assert key == "fresh" and "generated" in source
    assert stack.resolve_api_key(None, None, generate=lambda: "fresh")[0] == "fresh"


def test_the_placeholder_is_never_applied():
    with pytest.raises(InputError):
        stack.resolve_api_key("change-me", None)
    with pytest.raises(InputError):
        stack.with_api_key(manifests.render("base"), "change-me")


def test_new_keys_are_random_and_long():
    a, b = stack.new_api_key(), stack.new_api_key()
    assert a != b and len(a) >= 40


def test_with_api_key_needs_the_secret():
    objs = [o for o in manifests.render("base") if o["kind"] != "Secret"]
    with pytest.raises(ManifestError, match="no Secret"):
        stack.with_api_key(objs, "k")


# ------------------------------------------------------------------ overlay

def node(name, gpus=None):
    alloc = {"cpu": "8", "memory": "32Gi"}
    if gpus is not None:
        alloc["nvidia.com/gpu"] = str(gpus)
    return {"metadata": {"name": name}, "status": {"allocatable": alloc}}


def test_overlay_follows_the_nodes():
    assert stack.overlay_for_nodes([node("a"), node("gpu-1", 1)])[0] == "gpu-box"
    overlay, reason = stack.overlay_for_nodes([node("kind-control-plane")])
    assert overlay == "laptop-cpu" and "device plugin" in reason
    assert stack.overlay_for_nodes([node("x", 0)])[0] == "laptop-cpu"


def test_choose_overlay_env_wins_and_is_checked():
    assert stack.choose_overlay("laptop-cpu", [node("g", 1)])[0] == "laptop-cpu"
    assert stack.choose_overlay(None, None)[0] == "gpu-box"
    with pytest.raises(InputError, match="not an overlay"):
        stack.choose_overlay("laptop")


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
    assert stack.rollout_status(deployment(available=1, ready=1)) == (True, "1/1 available, 1/1 ready, 1/1 updated")
    done, status = stack.rollout_status(deployment(available=1, ready=1, generation=2, observed=1))
    assert not done and "not seen the latest change" in status


def test_not_found():
    assert stack.rollout_status(None)[0] is False


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
    ({"phase": "Running", "containerStatuses": [{"ready": False, "restartCount": 4, "state": {
        "waiting": {"reason": "CrashLoopBackOff"}}}]},
     "CrashLoopBackOff, 4 restarts"),
    ({"phase": "Pending"}, "containers not created yet"),
])
def test_status_says_why_not_ready(pod_status, expected):
    done, status = stack.rollout_status(deployment(), [pod(**pod_status)])
    assert not done and expected in status and status.startswith("0/1 available")


def test_stuck_rollout_is_named():
    cond = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": 'ReplicaSet "x" has timed out progressing.'}
    assert "ProgressDeadlineExceeded" in stack.rollout_status(deployment(conditions=[cond]))[1]


# ------------------------------------------------------------------ outside world, with stand-ins

class RecordingCluster:
    """Stands in for llmserve.world.cluster.Cluster: records applies, serves a Secret."""

    def __init__(self, live_secret=None):
        self.applied_objs = []
        self.applied = []
        self.live_secret = live_secret

    def apply(self, obj):
        self.applied_objs.append(obj)
        ref = ObjectRef.of(obj)
        self.applied.append(ref)
        return [ref]

    def get(self, ref):
        return self.live_secret if ref.kind == "Secret" else None


def test_apply_stack_applies_in_order_with_a_real_key(monkeypatch):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    fake = RecordingCluster(live_secret=secret_as_read_back("kept-key"))
    result = stack.apply_stack(fake, manifests.render("overlays/laptop-cpu"), progress=None)
    assert kinds(fake.applied_objs) == ["Namespace", "PersistentVolume", "PersistentVolumeClaim",
                                        "Secret", "Deployment", "Service"]
    secret = fake.applied_objs[3]
    assert stack.secret_value(secret) == "kept-key" == result.api_key
    assert "[4/6] applied Secret ai-platform/vllm-api-key" in str(result)


def test_apply_stack_generates_when_only_the_placeholder_is_live(monkeypatch):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    fake = RecordingCluster(live_secret=secret_as_read_back("change-me"))
    result = stack.apply_stack(fake, manifests.render("base"), progress=None)
    assert result.api_key.startswith("sk-course-") and stack.secret_value(fake.applied_objs[3]) == result.api_key


def test_read_api_key(monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", "env-key")
    assert stack.read_api_key() == "env-key"
    monkeypatch.delenv("VLLM_API_KEY")
    assert stack.read_api_key(RecordingCluster(secret_as_read_back("k"))) == "k"
    with pytest.raises(ClusterError, match="placeholder"):
        stack.read_api_key(RecordingCluster(secret_as_read_back("change-me")))
    with pytest.raises(InputError):
        stack.read_api_key(None)


def offline_cluster(live_objects):
    """A real Cluster whose API calls are replaced by a dict lookup (no kubeconfig needed)."""
    c = Cluster.__new__(Cluster)
    c.applied, c.host, c.request_timeout_s = [], "test", 1.0
    c.get = lambda ref: live_objects.get(ref)
    return c


def test_cleanup_never_deletes_the_model_data():
    objs = manifests.render("base")
    live = {ObjectRef.of(o): o for o in objs}
    c = offline_cluster(live)
    report = stack.cleanup(c, objs, dry_run=True)
    would = [line for line in report if line.startswith("would delete")]
    kept = [line for line in report if line.startswith("kept")]
    assert sorted(w.split()[2] for w in would) == ["Deployment", "Secret", "Service"]
    assert {k.split()[1] for k in kept} == {"Namespace", "PersistentVolume", "PersistentVolumeClaim"}


def test_wait_until_ready_reports_progress_and_explains_timeout():
    class Waiting(RecordingCluster):
        def list(self, api_version, kind, namespace=None, label_selector=None):
            return [pod(phase="Pending", containerStatuses=[{"ready": False, "restartCount": 0, "state": {
                "waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}])]

        def get(self, ref):
            return deployment()

        def events(self, ref):
            return []

    c = Waiting()
    c.wait_for = lambda ref, cond, **kw: Cluster.wait_for(c, ref, cond, **kw)
    seen = []
    with pytest.raises(ClusterError, match="ImagePullBackOff"):
        stack.wait_until_ready(c, timeout_s=0, interval_s=0, progress=lambda t, s: seen.append(s))
    assert seen and "ImagePullBackOff" in seen[-1]


def test_install_hint_names_the_setup_script():
    assert "scripts/setup.sh" in stack.install_hint("no cluster")


def test_wait_gives_up_early_when_the_diagnosis_is_stuck_and_points_at_troubleshooting():
    unschedulable = pod(phase="Pending", conditions=[{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}])
    polls = []

    class Stuck(RecordingCluster):
        def list(self, api_version, kind, namespace=None, label_selector=None):
            polls.append(1)
            return [unschedulable]

        def get(self, ref):
            return deployment()

        def events(self, ref):
            # Event shape: core/v1 Event (reason, message), as the scheduler writes it.
            return [{"reason": "FailedScheduling", "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}]

    c = Stuck()
    c.wait_for = lambda ref, cond, **kw: Cluster.wait_for(c, ref, cond, **kw)
    with pytest.raises(stack.NotReady) as info:
        stack.wait_until_ready(c, timeout_s=3600, interval_s=0, progress=lambda t, s: None, give_up_after=2)
    assert len(polls) == 2
    from llmserve import troubleshooting
    if troubleshooting.match("Insufficient nvidia.com/gpu"):
        assert "Troubleshooting entries that match" in info.value.fix


# ------------------------------------------------------------------ the local lab's settings

def test_local_lab_plan_matches_the_formula():
    # kv_cache_utils.get_max_concurrency_for_kv_cache_config: blocks / ceil(max_model_len / block_size)
    from llmserve.kvcache.formula import ModelShape
    shape = ModelShape("t", layers=2, attention_heads=4, kv_heads=2, head_dim=64, hidden_size=256)
    lab = stack.LocalLab(max_model_len=512, block_size=128, cache_blocks=17)
    per_token = 2 * 2 * 2 * 64 * 2                      # K and V × layers × kv_heads × head_dim × bf16 bytes
    assert lab.kv_cache_bytes(shape, "bfloat16") == 17 * 128 * per_token
    plan = lab.plan(shape, "bfloat16")
    assert plan.num_blocks == 17 and plan.max_concurrency == 17 / 4 and plan.fits and plan.device == "CPU"


def test_local_lab_sizes_requests_to_nearly_max_model_len():
    lab = stack.LocalLab(max_model_len=512, margin_tokens=8)
    assert lab.max_tokens_for(178) == 326
    with pytest.raises(InputError):
        lab.max_tokens_for(600)
    assert lab.messages()[0]["content"].count("Kubernetes") == lab.prompt_repeats
    assert stack.LocalLab(stream_interval=1).engine_args() == ["--no-enable-prefix-caching"]
    assert stack.LocalLab(prefix_caching=True, stream_interval=8).engine_args() == ["--stream-interval", "8"]


def test_load_settings_per_target():
    local = stack.Target("local", "http://127.0.0.1:1", "k")
    remote = stack.Target("cluster", "http://127.0.0.1:2/", "k")
    assert stack.load_settings(local, 178)["max_tokens"] == stack.LOCAL_LAB.max_tokens_for(178)
    assert stack.load_settings(remote, 60)["max_tokens"] == 256
    assert max(stack.load_settings(remote, 60, overlay="laptop-cpu")["levels"]) == 4
    assert remote.base_url == "http://127.0.0.1:2/v1"
    closed = []
    local._closers.append(lambda: closed.append(1))
    assert "stopped" in local.close() and closed == [1]
    assert stack.open_target("none") is None


def test_waiting_by_level_and_preemptions_from_a_constructed_result():
    # The sample shape run_load_test documents; values constructed here.
    samples = [{"t_s": 0.0, "concurrency": 0, "waiting": 5.0, "preemptions": 1.0},
               {"t_s": 0.1, "concurrency": 1, "waiting": 0.0, "preemptions": 1.0},
               {"t_s": 0.2, "concurrency": 8, "waiting": 3.0, "preemptions": 2.0},
               {"t_s": 0.3, "concurrency": 8, "waiting": None, "preemptions": None},
               {"t_s": 0.4, "concurrency": 8, "waiting": 1.0, "preemptions": 6.0}]
    result = {"samples": samples}
    assert stack.waiting_by_level(result) == {1: 0.0, 8: 3.0}
    assert stack.preemptions_during(result) == 5.0
    assert stack.preemptions_during({"samples": []}) is None


CONSTRUCTED_METRICS = """\
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",engine="0",num_gpu_blocks="2000"} 1.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 0.0
"""


def test_prediction_from_a_servers_own_figures():
    labels = stack.cache_config(CONSTRUCTED_METRICS)
    assert labels["num_gpu_blocks"] == "2000" and labels["block_size"] == "16"
    # 8192 tokens = 512 blocks of 16: 2000 / 512
    assert stack.server_max_concurrency(labels, 8192) == 2000 / 512
    assert stack.server_max_concurrency({}, 8192) is None
    assert stack.cache_config("# nothing here\n") == {}


def test_startup_printer_is_quiet_and_strips_log_noise():
    lines = []
    progress = stack.startup_printer(every_s=10, out=lines.append)
    progress(0.0, "starting: starting")
    progress(3.0, "starting: something")            # too soon: not printed
    progress(11.0, "starting: (EngineCore pid=1)\x1b[0;0m \x1b[32mINFO\x1b[0m 11-27 09:24:36 "
                   "\x1b[90m[default_loader.py:501]\x1b[0m Loading weights took 0.02 seconds")
    progress(12.0, "ready")
    assert lines == ["[   0 s] starting: starting", "[  11 s] starting: Loading weights took 0.02 seconds",
                     "[  12 s] ready"]


# ------------------------------------------------------------------ /metrics recorder (separate process)

def test_align_samples_assigns_the_level_running_at_each_reading():
    levels = [{"started_s": 0.0, "wall_s": 1.0, "concurrency": 1}, {"started_s": 1.5, "wall_s": 1.0, "concurrency": 8}]
    readings = [{"time_s": t, "kv_cache_usage": 0.5, "running": 1.0, "waiting": 0.0, "preemptions": 0.0}
                for t in (0.4, 1.0, 1.7, 2.2, 2.9, 3.0)]
    samples = stack.align_samples(readings, levels, offset_s=0.5)
    assert [(round(s["t_s"], 2), s["concurrency"]) for s in samples] == [
        (-0.1, 0), (0.5, 1), (1.2, 0), (1.7, 8), (2.4, 8), (2.5, 8)]


def test_metrics_recorder_reads_from_its_own_process():
    import http.server
    import threading
    import time

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):   # noqa: N802 - http.server's name
            body = (CONSTRUCTED_METRICS + "# TYPE vllm:kv_cache_usage_perc gauge\n"
                    'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25\n').encode()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with stack.MetricsRecorder(f"http://127.0.0.1:{server.server_port}", interval_s=0.05) as rec:
            offset = rec.started_at()
            time.sleep(2.0)
        samples = rec.samples_for({"levels": [{"started_s": 0.0, "wall_s": 10.0, "concurrency": 4}]}, offset)
    finally:
        server.shutdown()
    assert rec.errors == [] and len(rec.readings) >= 3
    assert {s["kv_cache_usage"] for s in samples} == {0.25} and samples[-1]["concurrency"] == 4
    assert all(s["waiting"] == 0.0 for s in samples)


def test_server_delta_reads_the_queue_time_histogram_and_preemptions():
    # Exposition names: a histogram exports <name>_sum and <name>_count; a counter <name>_total
    # (Prometheus exposition format). Values constructed here.
    before = {"vllm:request_queue_time_seconds_sum": 1.0, "vllm:request_queue_time_seconds_count": 10.0,
              "vllm:num_preemptions_total": 2.0}
    after = {"vllm:request_queue_time_seconds_sum": 5.0, "vllm:request_queue_time_seconds_count": 18.0,
             "vllm:num_preemptions_total": 7.0}
    delta = stack.server_delta(before, after)
    assert delta == {"requests": 8.0, "queue_mean_s": 0.5, "preemptions": 5.0}
    assert stack.server_delta({}, {})["queue_mean_s"] is None
    result = {"levels": [{"concurrency": 1, "server": {"queue_mean_s": 0.0}}, {"concurrency": 16, "server": delta}]}
    assert stack.queue_by_level(result) == {1: 0.0, 16: 0.5}


def test_overlay_changes_lists_what_the_patch_changed():
    base = manifests.render("base")
    gpu = stack.overlay_changes(base, manifests.render("overlays/gpu-box"))
    assert len(gpu) == 1 and "spec.template.spec.tolerations: — → " in gpu[0]
    cpu = stack.overlay_changes(base, manifests.render("overlays/laptop-cpu"))
    assert any(".containers[vllm].image: vllm/vllm-openai:v0.32.0 → vllm/vllm-openai-cpu:" in c for c in cpu)
    assert any(".resources.limits.nvidia.com/gpu: 1 → —" in c for c in cpu)
    assert any(".env[VLLM_CPU_KVCACHE_SPACE]: — → " in c for c in cpu)
    assert not any(c.startswith(("Service", "PersistentVolume", "Namespace", "Secret")) for c in cpu)
    assert stack.overlay_changes(base, base) == []
