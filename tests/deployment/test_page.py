"""book/deployment.md: every value the prose restates is the manifest's (or the code's), and the by-hand path is complete.

The phrases below are built from ``manifests/base/vllm-deployment.yaml`` and the package's
constants, so changing the manifest without the page (or the page without the manifest)
fails here, naming the phrase the page should say.
"""
from __future__ import annotations

import re

import pytest

from llmserve.core import vllm
from llmserve.core.names import system
from llmserve.core.objects import arg_value, selector_of, vllm_container
from llmserve.deployment import budgets, workload
from llmserve.kvcache.formula import QWEN25_CODER_7B
from llmserve.world import manifests
from tests.support import REPO

PAGE = (REPO / "book" / "deployment.md").read_text(encoding="utf-8")
TEXT = re.sub(r"\s+", " ", PAGE)          # prose wraps lines anywhere
DEPLOYMENT = manifests.load_one("base/vllm-deployment.yaml")
C = vllm_container(DEPLOYMENT)
POD = DEPLOYMENT["spec"]["template"]["spec"]
VALUES = budgets.budgets_from_deployment(DEPLOYMENT)


def _says(phrase: str) -> None:
    assert re.sub(r"\s+", " ", phrase) in TEXT, f"book/deployment.md should say: {phrase!r}"


def _by_hand() -> str:
    start = PAGE.index("(deployment-by-hand)=")
    return PAGE[start:PAGE.index("(deployment-exercises)=")]


def test_probe_window_is_the_manifests():
    p = C["startupProbe"]
    window = p["initialDelaySeconds"] + p["failureThreshold"] * p["periodSeconds"]
    _says(f"{p['initialDelaySeconds']} s + {p['failureThreshold']} × {p['periodSeconds']} s = {window} s")
    _says(f"{p['initialDelaySeconds']} + {p['failureThreshold']} × {p['periodSeconds']} = {window} s")


def test_resources_and_volumes_are_the_manifests():
    requests, limits = C["resources"]["requests"], C["resources"]["limits"]
    assert requests["memory"] == limits["memory"] and "cpu" not in limits
    _says(f"The course requests {requests['cpu']} CPUs and sets **no CPU limit**")
    _says(f"limit ({VALUES['limit_gib']:g} GiB)")
    volumes = {v["name"]: v for v in POD["volumes"]}
    _says(f"with `sizeLimit: {volumes['dshm']['emptyDir']['sizeLimit']}`")
    _says(f"up to the {VALUES['shm_size_limit_gib']:g} GiB `sizeLimit`")
    _says(f"(`sizeLimit: {volumes['tmp']['emptyDir']['sizeLimit']}`)")
    _says(f"`revisionHistoryLimit: {DEPLOYMENT['spec']['revisionHistoryLimit']}`")


def test_security_values_are_the_manifests():
    uid = POD["securityContext"]["runAsUser"]
    assert POD["securityContext"]["runAsGroup"] == uid
    _says(f"`runAsUser/runAsGroup: {uid}`")
    _says(f"since UID {uid} has no entry")
    skips = [k for k in DEPLOYMENT["metadata"]["annotations"] if k.startswith("checkov.io/skip")]
    words = {3: "Three", 4: "Four", 5: "Five", 6: "Six"}
    _says(f"{words[len(skips)]} checks are skipped on the Deployment")
    for annotation in DEPLOYMENT["metadata"]["annotations"].values():
        _says(f"| {annotation.split('=', 1)[0]} |")


def test_vllm_arguments_are_the_manifests():
    for flag in ("--model", "--served-model-name", "--max-model-len", "--gpu-memory-utilization",
                 "--quantization", "--port"):
        _says(f"`{flag}={arg_value(C, flag)}`")
    _says(f"the default in 0.32 is {vllm.DEFAULT_GPU_MEMORY_UTILIZATION}")
    _says(f"`config.json` allows {QWEN25_CODER_7B.max_position_embeddings:,}")
    _says(f"Maximum concurrency for {int(arg_value(C, '--max-model-len')):,} tokens per request")


def test_shutdown_prose_is_the_manifests():
    pause, drain, grace = VALUES["pre_stop_s"], VALUES["drain_s"], VALUES["grace_s"]
    budget = budgets.shutdown_budget(grace, pause, drain)
    assert budget.fits and budget.drains
    total = pause + drain + budgets.DEFAULT_TEARDOWN_S
    _says(f"The course sets `--shutdown-timeout={drain}`")
    _says(f"answers that take longer than {drain} s")
    _says(f"{pause} s of `preStop` pause + {drain} s of drain + about {budgets.DEFAULT_TEARDOWN_S:g} s to exit = "
          f"{total:g} s, under `terminationGracePeriodSeconds: {grace}`")
    _says(f"A {pause} s `preStop` sleep")
    _says(f"mode=drain timeout={drain}s")
    _says(f"{pause} s of `preStop` pause, then the drain")


def test_estimates_are_the_calculators_defaults():
    _says(f"the calculator's default, {budgets.DEFAULT_ENGINE_OVERHEAD_S:g} s")
    _says(f"its default for the processes ({budgets.DEFAULT_PROCESS_GIB:g} GiB)")
    gb = budgets.AWQ_WEIGHT_FILES_GIB * 2**30 / 1e9
    _says(f"≈ {gb:.1f} GB ({budgets.AWQ_WEIGHT_FILES_GIB:g} GiB) of files")
    _says(f"about {gb:.1f} GB of files, {budgets.AWQ_WEIGHT_FILES_GIB:g} GiB")


def test_exercise_answers_are_what_the_code_computes():
    b = budgets.probe_budget(10, 10, 60, 5, weights_gib=5.31, disk_mb_s=60, overhead_s=95)
    assert b.fits and b.suggested_failure_threshold == 28
    _says("b.suggested_failure_threshold == 28")
    m = budgets.memory_budget(16, 6, 16, 16)
    assert m.oom and "22 GiB" in m.verdict
    _says("`budgets.memory_budget(16, 6, 16, 16)`")


def test_by_hand_path_names_the_system():
    n = system()
    section = _by_hand()
    cmds = workload.kubectl_commands(DEPLOYMENT)
    for key in ("secret", "rollout"):
        # the page wraps long commands with a backslash; compare without it
        assert cmds[key].split(" -n ")[0] in section.replace("\\\n  ", ""), key
    assert f"kubectl get pvc {n.pvc} -n {n.namespace}" in section and f"`{n.pv}`" in section
    assert f"-l {selector_of(DEPLOYMENT)}" in section and "kubectl apply --dry-run=server" in section
    assert "openssl rand -hex 16" in section and "change-me" in section  # never the placeholder
    assert section.count("Expected") >= 6 and "Next:" in section and "**shape**" in section


def test_page_names_the_moved_modules_only():
    assert "llmserve.workloads" not in PAGE and "from llmserve import workloads" not in PAGE
    for module in ("llmserve.deployment.budgets", "llmserve.deployment.diagnose"):
        assert module in PAGE
    assert "llmserve.deployment.budgets.shutdown_budget" in PAGE


@pytest.mark.parametrize("path", ["vllm/engine/arg_utils.py", "vllm/v1/engine/core.py",
                                  "vllm/entrypoints/launchers/launcher.py",
                                  "vllm/v1/core/kv_cache_manager.py", "vllm/v1/core/kv_cache_utils.py",
                                  "vllm/entrypoints/serve/instrumentator/health.py",
                                  "vllm/utils/argparse_utils.py"])
def test_cited_vllm_files_exist_in_the_pinned_release(path):
    site = REPO / ".venv-vllm" / "lib" / "python3.11" / "site-packages"
    if not site.exists():
        pytest.skip("no local vLLM (scripts/setup.sh installs it)")
    assert (site / path).is_file(), path
    assert path.split("/", 1)[1] in PAGE or path.rsplit("/", 1)[-1] in PAGE
