"""deployment.budgets: the probe, memory and shutdown budgets, and the values read from the manifest."""
from __future__ import annotations

import copy

import pytest

from llmserve.core.errors import InputError
from llmserve.core.objects import vllm_container
from llmserve.core.quantity import quantity_float
from llmserve.deployment import budgets as b
from llmserve.world import manifests

DEPLOYMENT = manifests.load_one("base/vllm-deployment.yaml")


# -- probe budget ---------------------------------------------------------------------------
def test_startup_window_matches_the_kubernetes_docs_example():
    # https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/
    # "failureThreshold: 30, periodSeconds: 10 ... a maximum of 5 minutes (30 * 10 = 300s)"
    assert b.startup_window_s(b.Probe(initial_delay_s=0, period_s=10, failure_threshold=30)) == 300


def test_probe_defaults_are_the_documented_ones():
    # Same page, "Configure Probes": periodSeconds 10, timeoutSeconds 1, failureThreshold 3, initialDelaySeconds 0.
    p = b.Probe.from_dict({"httpGet": {"path": "/health", "port": 8000}})
    assert (p.initial_delay_s, p.period_s, p.timeout_s, p.failure_threshold) == (0, 10, 1, 3)


def test_liveness_without_startup_probe_is_too_short_for_vllm():
    # Default probe: 3 x 10 s = 30 s; 5.2 GiB at 500 MB/s is ~11 s of reading plus engine start.
    budget = b.probe_budget(0, 10, 3, 1, weights_gib=5.2, disk_mb_s=500, overhead_s=60)
    assert not budget.fits
    assert budget.window_s == 30
    assert "TOO SHORT" in budget.verdict and "failureThreshold" in budget.verdict
    # The suggestion really covers 1.5x the need.
    assert 0 + budget.suggested_failure_threshold * 10 >= 1.5 * budget.needed_s


def test_load_time_is_size_over_speed():
    # 1 GiB = 1,073,741,824 bytes; 100 MB/s = 1e8 bytes/s.
    assert b.load_time_s(1, 100) == pytest.approx(10.73741824)


def test_the_course_manifest_fits_a_slow_disk():
    vals = b.budgets_from_deployment(DEPLOYMENT)
    budget = b.probe_budget(vals["initial_delay_s"], vals["period_s"], vals["failure_threshold"], vals["timeout_s"],
                            weights_gib=b.AWQ_WEIGHT_FILES_GIB, disk_mb_s=100)
    assert budget.fits, budget.verdict


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
        b.probe_budget(**args)
    assert word in str(err.value) and "Fix:" in str(err.value)


def test_startup_timings_read_from_vllm_log_lines():
    # Formats from vLLM 0.32: default_loader.py, gpu_model_runner.py, v1/engine/core.py.
    log = "\n".join([
        "INFO 11-27 10:00:05 [default_loader.py:502] Loading weights took 12.50 seconds",
        "INFO 11-27 10:00:06 [gpu_model_runner.py:5150] Model loading took 5.31 GiB memory and 14.250000 seconds",
        "INFO 11-27 10:00:40 [gpu_model_runner.py:6582] Graph capturing finished in 18 secs, took 0.45 GiB",
        "INFO 11-27 10:00:41 [core.py:403] init engine (profile, create kv cache, warmup model) took 60.10 s",
    ])
    t = b.startup_timings(log)
    assert t["weights_s"] == 12.5 and t["model_load_s"] == 14.25 and t["graph_capture_s"] == 18
    assert t["overhead_s"] == pytest.approx(14.25 - 12.5 + 60.10)
    assert b.startup_timings("nothing here") == {}


def test_awq_weight_files_follow_from_the_model_config():
    # Qwen/Qwen2.5-Coder-7B-Instruct-AWQ config.json: hidden_size 3584, intermediate_size 18944,
    # num_hidden_layers 28, num_key_value_heads 4 x head_dim 128 = 512, vocab_size 152064,
    # tie_word_embeddings false; quantization_config: bits 4, group_size 128, zero_point true.
    hidden, inter, layers, kv, vocab, group = 3584, 18944, 28, 512, 152064, 128
    linear = hidden * (hidden + kv + kv + hidden) + 3 * hidden * inter      # q, k, v, o, gate, up, down
    packed = linear // 2 + linear // group * 2 + linear // group // 2        # int4 + fp16 scales + int4 zeros
    per_layer = packed + (hidden + 2 * kv) * 2 + 2 * hidden * 2              # + fp16 qkv biases, two norms
    total = layers * per_layer + 2 * vocab * hidden * 2 + hidden * 2         # + embeddings, lm_head, final norm
    assert total / 2**30 == pytest.approx(b.AWQ_WEIGHT_FILES_GIB, abs=0.05)


# -- memory budget --------------------------------------------------------------------------
def test_memory_fits_with_reclaimable_page_cache():
    budget = b.memory_budget(16, process_gib=6, shm_used_gib=4, shm_size_limit_gib=4, weights_gib=5.2)
    assert not budget.oom and budget.pinned_gib == 10 and budget.headroom_gib == 6
    assert "FITS" in budget.verdict


def test_shm_counts_against_the_limit():
    # https://kubernetes.io/docs/concepts/storage/volumes/#emptydir : with medium Memory,
    # "files you write count against your container's memory limit".
    without = b.memory_budget(8, process_gib=6, shm_used_gib=0)
    with_shm = b.memory_budget(8, process_gib=6, shm_used_gib=3, shm_size_limit_gib=4)
    assert not without.oom and with_shm.oom
    assert "OOM-KILLED" in with_shm.verdict and "137" in with_shm.verdict


def test_page_cache_alone_never_oom_kills():
    budget = b.memory_budget(8, process_gib=6, shm_used_gib=0, weights_gib=40)
    assert not budget.oom and "reclaims" in budget.verdict


def test_shm_above_its_size_limit_is_called_out():
    budget = b.memory_budget(16, process_gib=2, shm_used_gib=6, shm_size_limit_gib=4)
    assert "evicts" in budget.verdict


@pytest.mark.parametrize("bad", [0, -1, "sixteen", None])
def test_memory_budget_rejects_bad_limits(bad):
    with pytest.raises(InputError):
        b.memory_budget(bad)


def test_quantities_the_budgets_read():
    # The memory limit and /dev/shm go through the core's one parser:
    # https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/
    assert quantity_float("16Gi") == 16 * 1024 ** 3
    assert quantity_float("500M") == 500e6
    assert quantity_float("250m") == 0.25
    with pytest.raises(InputError):
        quantity_float("16 GB")


def test_budget_values_come_from_the_manifest():
    vals = b.budgets_from_deployment(DEPLOYMENT)
    c = vllm_container(DEPLOYMENT)
    assert vals["failure_threshold"] == c["startupProbe"]["failureThreshold"]
    assert vals["limit_gib"] * 1024 ** 3 == quantity_float(c["resources"]["limits"]["memory"])
    assert vals["shm_size_limit_gib"] == 4.0
    assert vals["model"] == "/models/qwen25-coder-7b-awq"
    assert vals["grace_s"] == DEPLOYMENT["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert vals["pre_stop_s"] == c["lifecycle"]["preStop"]["sleep"]["seconds"]


def test_a_deployment_without_a_memory_limit_is_named():
    bare = copy.deepcopy(DEPLOYMENT)
    del vllm_container(bare)["resources"]["limits"]["memory"]
    with pytest.raises(InputError, match="memory limit"):
        b.budgets_from_deployment(bare)


# -- shutdown budget ------------------------------------------------------------------------
def test_the_default_shutdown_timeout_aborts():
    # vllm/engine/arg_utils.py: --shutdown-timeout default 0, "0 = abort, >0 = wait";
    # PodSpec: terminationGracePeriodSeconds defaults to 30.
    budget = b.shutdown_budget()
    assert not budget.drains and budget.grace_s == 30
    assert budget.verdict.startswith("ABORTS") and "--shutdown-timeout" in budget.verdict


def test_a_drain_longer_than_the_grace_period_is_cut_short():
    # The grace period counts from the start of the preStop hook (Kubernetes docs, Pod termination).
    budget = b.shutdown_budget(grace_s=60, pre_stop_s=10, drain_s=55)
    assert budget.drains and not budget.fits and budget.margin_s == 60 - 10 - 55 - b.DEFAULT_TEARDOWN_S
    assert budget.verdict.startswith("CUT SHORT") and str(10 + 55 + 5) in budget.verdict


def test_a_drain_that_fits():
    budget = b.shutdown_budget(grace_s=60, pre_stop_s=5, drain_s=45)
    assert budget.fits and budget.drains and budget.margin_s == 5
    assert budget.verdict.startswith("DRAINS")


@pytest.mark.parametrize("kwargs", [dict(grace_s=-1), dict(pre_stop_s=2.5), dict(drain_s="long")])
def test_shutdown_budget_rejects_bad_input(kwargs):
    with pytest.raises(InputError):
        b.shutdown_budget(**kwargs)


def test_shutdown_defaults_when_the_manifest_says_nothing():
    bare = {"kind": "Deployment", "metadata": {"name": "x"},
            "spec": {"template": {"spec": {"containers": [{"name": "vllm", "args": ["--model=/m"]}]}}}}
    assert b.shutdown_from_deployment(bare) == {"grace_s": b.DEFAULT_GRACE_S, "pre_stop_s": 0, "drain_s": 0}
