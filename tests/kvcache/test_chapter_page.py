"""book/kv-cache.md says what the code, the manifests and vLLM 0.32's source say.

Every number of the page that restates a manifest value, a formula result or a log
line's wording is checked here, so the page cannot drift from what it describes:
the by-hand commands name the Deployment and namespace of manifests/base, the
expected log shapes carry the Deployment's --max-model-len and utilization, the
weight and per-token sizes are the formula's, and (with .venv-vllm installed)
every vLLM file, function and log fragment the page cites exists in the pinned
release's source.
"""
from __future__ import annotations

import re

import pytest

from llmserve.core import manifest_files
from llmserve.core.names import system
from llmserve.core.objects import arg_value, vllm_container
from llmserve.core.quantity import GIB
from llmserve.kvcache import formula
from tests.support import REPO

PAGE = (REPO / "book" / "kv-cache.md").read_text(encoding="utf-8")
PROSE = " ".join(PAGE.split())          # line breaks of the Markdown source are spaces to a reader
CONTAINER = vllm_container(manifest_files.load_one("base/vllm-deployment.yaml"))
MAX_MODEL_LEN = int(arg_value(CONTAINER, "--max-model-len"))


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE, re.S)


def test_by_hand_commands_name_the_system_of_the_manifests():
    names = system()
    commands = [c for c in code_blocks("bash") if "kubectl" in c]
    assert len(commands) >= 4
    for command in commands:
        assert f"deploy/{names.deployment} -n {names.namespace}" in command, command


def test_log_shapes_carry_the_deployments_settings():
    shapes = "\n".join(code_blocks("text"))
    assert f"Maximum concurrency for {MAX_MODEL_LEN:,} tokens per request" in shapes
    # vLLM prints the utilization as the Python float it parsed: 0.90 → "0.9".
    assert f"Desired GPU memory utilization is ({system().gpu_memory_utilization}, R GiB)" in shapes
    assert "None of their output was observed for this book" in PROSE and "*shape*" in PROSE


def test_prose_numbers_are_the_formulas():
    gib = lambda shape: f"{formula.weight_bytes(shape) / GIB:.2f} GiB"
    assert f"**{gib(formula.QWEN25_CODER_7B_AWQ)}** of tensors" in PROSE                   # 5.19 GiB
    assert f"**{gib(formula.QWEN25_CODER_7B)}** in bf16" in PROSE                          # 14.19 GiB
    assert f"({formula.linear_parameters(formula.QWEN25_CODER_7B):,} of them" in PROSE
    assert f"{formula.QWEN25_CODER_7B.parameters:,} parameters × 2 bytes" in PROSE
    per_token = formula.kv_bytes_per_token(formula.QWEN25_CODER_7B)
    assert f"**{per_token:,} bytes per token**" in PROSE
    assert f"the course's Deployment sets {MAX_MODEL_LEN:,}" in PROSE


def test_the_included_manifest_lines_hold_both_flags():
    text = manifest_files.path("base/vllm-deployment.yaml").read_text(encoding="utf-8")
    shown = text[text.index("args:"):]
    shown = shown[:shown.index("- --port=")]
    assert "--max-model-len=" in shown and "--gpu-memory-utilization=" in shown
    assert ':start-at: "args:"\n:end-at: "- --port="' in PAGE


def test_no_gpu_timing_is_quoted_as_measured():
    # The page once quoted figures "measured for this course's preparation" that no reader could see.
    assert "H200" not in PAGE and "TB/s" not in PAGE.replace("3.35 TB/s", "")
    assert "not measured by this course" in PROSE


def _vllm_source():
    found = sorted((REPO / ".venv-vllm" / "lib").glob("python*/site-packages/vllm"))
    return found[0] if found else None


#: (file, text) pairs the page cites: a function, a field or a log line's wording.
CITED = [
    ("config/cache.py", "DEFAULT_BLOCK_SIZE: ClassVar[int] = 16"),
    ("config/cache.py", "gpu_memory_utilization: float = Field(default=0.92"),
    ("config/cache.py", "per-instance limit"),
    ("config/cache.py", "If \"auto\", will use model data type"),
    ("config/model.py", "def _get_and_verify_dtype("),
    ("config/model.py", "-1 or 'auto' -> Automatically choose the maximum model length"),
    ("v1/worker/utils.py", "def request_memory("),
    ("v1/worker/utils.py", "is less than desired GPU memory utilization"),
    ("v1/worker/gpu_worker.py", "def determine_available_memory("),
    ("v1/worker/gpu_worker.py", "Error in memory profiling"),
    ("v1/worker/gpu_worker.py", "Actual usage is"),
    ("v1/worker/gpu_worker.py", "Available KV cache memory: %s GiB"),
    ("v1/worker/gpu_model_runner.py", "Model loading took %s GiB memory and %.6f seconds"),
    ("utils/mem_utils.py", "def memory_profiling("),
    ("envs.py", "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS: bool = True"),
    ("v1/core/kv_cache_utils.py", "def _check_enough_kv_cache_memory("),
    ("v1/core/kv_cache_utils.py", "def _auto_fit_max_model_len("),
    ("v1/core/kv_cache_utils.py", "\"%s KV cache size: %s tokens, \""),
    ("v1/core/kv_cache_utils.py", "\"Maximum concurrency for %s tokens per request: %.2fx\""),
    ("v1/kv_cache_interface.py", "page_size_padded"),
    ("v1/kv_cache_interface.py", "class MLAAttentionSpec("),
    ("v1/kv_cache_interface.py", "class SlidingWindowSpec("),
    ("v1/kv_cache_interface.py", "class MambaSpec("),
    ("platforms/interface.py", "Setting kv cache block size to %d for %s backend(s)."),
    ("platforms/cpu.py", "cache_config.block_size = 128"),
    ("v1/attention/backends/flash_attn.py", "return [MultipleOf(16)]"),
    ("v1/core/sched/scheduler.py", "preempted_req = self.running[-1]"),
    ("v1/core/sched/scheduler.py", "request.num_computed_tokens = 0"),
    ("engine/arg_utils.py", "default_prefix_caching = model_config.is_prefix_caching_supported"),
    ("model_executor/layers/attention/attention.py", "def set_default_quant_scales("),
    ("renderers/params.py", "This model's maximum context length is "),
    ("v1/metrics/loggers.py", 'name="vllm:kv_cache_usage_perc"'),
]


@pytest.mark.vllm
def test_every_cited_vllm_file_exists_in_the_pinned_source():
    root = _vllm_source()
    assert root is not None, "no vLLM source in .venv-vllm (scripts/setup.sh installs it)"
    cited = set(re.findall(r"`vllm/([a-z0-9_/]+\.py)`", PAGE))
    assert len(cited) > 10
    missing = sorted(f for f in cited if not (root / f).is_file())
    assert not missing, missing


@pytest.mark.vllm
@pytest.mark.parametrize("relative,text", CITED, ids=[f"{f}:{t[:30]}" for f, t in CITED])
def test_cited_source_says_it(relative, text):
    root = _vllm_source()
    assert root is not None, "no vLLM source in .venv-vllm (scripts/setup.sh installs it)"
    assert text in (root / relative).read_text(encoding="utf-8")
