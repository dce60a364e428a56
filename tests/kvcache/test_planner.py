"""The KV-cache planner against hand-worked examples of vLLM 0.32's method.

Sources for every rule checked here (vLLM v0.32.0):
vllm/v1/worker/utils.py request_memory (budget = ceil(total × utilization)),
vllm/v1/worker/gpu_worker.py determine_available_memory (KV = budget − non-KV),
vllm/v1/core/kv_cache_utils.py get_kv_cache_config_from_groups (num_blocks = mem // bytes_per_block),
get_kv_cache_configs / _check_enough_kv_cache_memory (null block held back; the ValueError text),
get_max_concurrency_for_kv_cache_config and get_kv_cache_capacity (concurrency, tokens),
vllm/platforms/cpu.py (VLLM_CPU_KVCACHE_SPACE × GiB; CPU block size 128).
Per-token sizes from the models' config.json, by hand (tests/kvcache/test_formula.py):
57,344 B for Qwen2.5-Coder-7B in bf16, 512 KiB for Llama-2-7B.
"""
from __future__ import annotations

import pytest

from llmserve.core.errors import InputError
from llmserve.core.quantity import GIB as GiB
from llmserve.core.vllm import DEFAULT_GPU_MEMORY_UTILIZATION
from llmserve.kvcache.formula import LLAMA2_7B, QWEN25_CODER_7B, QWEN25_CODER_7B_AWQ, ModelShape, weight_bytes
from llmserve.kvcache.planner import (bytes_per_block, cpu_kv_cache_bytes, format_gib, parse_startup_log, plan,
                                      plan_from_kv_bytes, plan_inputs_from_log, size_text)

TINY = ModelShape("tiny", layers=2, attention_heads=4, kv_heads=2, head_dim=64, hidden_size=256)


def test_bytes_per_block_by_hand():
    # 57,344 B per token → a 16-token block is 16 × 57,344 = 917,504 B.
    assert bytes_per_block(QWEN25_CODER_7B, "bf16", 16) == 917_504
    # Llama-2-7B: 512 KiB per token → 8 MiB per 16-token block.
    assert bytes_per_block(LLAMA2_7B, "bf16", 16) == 8 * 2**20
    # An fp8 cache stores 1 byte per value: half of bf16.
    assert bytes_per_block(QWEN25_CODER_7B, "fp8", 16) == 458_752
    # Tiny model: 2 (K,V) × 2 layers × 2 KV heads × 64 × 2 B = 1,024 B/token; ×128 on the CPU.
    assert bytes_per_block(TINY, "bf16", 128) == 131_072


def test_gpu_plan_llama_whole_numbers():
    # 80 GiB × 0.5 = 40 GiB budget; minus 6 + 1 + 0.5 + 0.5 = 8 GiB leaves 32 GiB for the cache.
    # 32 GiB / 8 MiB per block = 4,096 blocks; a 4,096-token request needs 4,096/16 = 256 blocks
    # → 16 concurrent requests, 16 × 4,096 = 65,536 tokens.
    p = plan(80, 0.5, LLAMA2_7B, "bf16", 4096, weights_gib=6, activation_peak_gib=1,
             non_torch_gib=0.5, cuda_graph_gib=0.5)
    assert p.budget == 40 * GiB
    assert p.kv_memory == 32 * GiB
    assert p.num_blocks == 4096
    assert p.blocks_per_request == 256
    assert p.max_concurrency == 16.0
    assert p.kv_tokens == 65_536
    assert p.fits and p.message == ""
    assert p.log_line() == ("GPU KV cache size: 65,536 tokens, "
                            "Maximum concurrency for 4,096 tokens per request: 16.00x")
    # Everything was given, so nothing is an estimate.
    assert p.estimated_parts == ()


def test_budget_is_fraction_of_total_memory_rounded_up():
    # request_memory: ceil(total × utilization); 1 GiB × 0.3 = 322,122,547.2 B → 322,122,548 B.
    p = plan(1, 0.3, TINY, "bf16", 128, weights_gib=0, activation_peak_gib=0, non_torch_gib=0,
             cuda_graph_gib=0)
    assert p.budget == 322_122_548
    # With nothing else to pay for, all of it is cache: 322,122,548 // (16 × 1,024) = 19,660 blocks.
    assert p.num_blocks == 19_660


def test_estimates_are_marked_and_measured_figures_replace_them():
    est = plan(80, 0.9, QWEN25_CODER_7B, "bf16", 8192, weights_gib=weight_bytes(QWEN25_CODER_7B_AWQ) / GiB)
    assert set(est.estimated_parts) == {"activation peak", "non-torch memory", "CUDA graphs"}
    assert est.weights.source == "measured"
    meas = plan(80, 0.9, QWEN25_CODER_7B, "bf16", 8192, weights_gib=5.3, activation_peak_gib=2.0,
                non_torch_gib=0.1, cuda_graph_gib=0)
    assert meas.estimated_parts == ()
    # The parts add up: budget − weights − overhead = KV memory.
    assert meas.kv_memory == meas.budget - meas.weights.bytes - meas.overhead_bytes
    # bf16 weights default to parameters × 2 bytes: 7,615,616,512 × 2 B ≈ 14.19 GiB.
    bf16 = plan(80, 0.9, QWEN25_CODER_7B, "bf16", 8192)
    assert bf16.weights.source == "estimated"
    assert bf16.weights.bytes == 15_231_233_024
    assert round(bf16.weights.gib, 1) == 14.2


def test_max_model_len_not_multiple_of_block_counts_whole_blocks():
    # CPU backend, 3,000,000 B: 3,000,000 // 131,072 = 22 blocks (2,883,584 B).
    # A 1,000-token request takes ceil(1000/128) = 8 blocks → 22/8 = 2.75 requests,
    # reported as int(2.75 × 1,000) = 2,750 tokens — not 22 × 128 = 2,816.
    p = plan_from_kv_bytes(3_000_000, TINY, "bf16", 1000, block_size=128, device="CPU")
    assert p.num_blocks == 22
    assert p.max_concurrency == 2.75
    assert p.kv_tokens == 2750
    assert p.log_line() == ("CPU KV cache size: 2,750 tokens, "
                            "Maximum concurrency for 1,000 tokens per request: 2.75x")


def test_null_block_is_held_back_in_the_fit_check():
    # 1,024 tokens need 8 blocks of 128; vLLM also holds back one null block, so 9 blocks fit …
    nine = 9 * 131_072
    assert plan_from_kv_bytes(nine, TINY, "bf16", 1024, block_size=128, device="CPU").fits
    # … and one byte less (8 whole blocks, all needed by the request) does not.
    p = plan_from_kv_bytes(nine - 1, TINY, "bf16", 1024, block_size=128, device="CPU")
    assert not p.fits
    assert p.num_blocks == 8


def test_too_small_message_uses_vllm_wording():
    # 1 GiB of cache, Qwen 7B bf16, 32,768 tokens: needs 2,048 blocks × 917,504 B = 1.75 GiB.
    # Usable after the null block: 2**30 − 917,504 = 1,072,824,320 B → "1.0" GiB as vLLM rounds it;
    # that holds 1,169 whole blocks → the estimated maximum length is 1,169 × 16 = 18,704 tokens.
    p = plan_from_kv_bytes(GiB, QWEN25_CODER_7B, "bf16", 32768)
    assert not p.fits
    assert p.message.startswith(
        "To serve at least one request with the model's max seq len (32768), (1.75 GiB KV cache is needed, "
        "which is larger than the available KV cache memory (1.0 GiB). Based on the available memory, "
        "the estimated maximum model length is 18704. Try increasing `gpu_memory_utilization`")
    assert "decreasing `max_model_len`" in p.message


def test_no_memory_left_message():
    # 16 GiB × 0.9 = 14.4 GiB cannot even hold 14.19 GiB of bf16 weights plus overhead.
    p = plan(16, 0.9, QWEN25_CODER_7B, "bf16", 32768)
    assert not p.fits
    assert p.num_blocks == 0
    assert p.message.startswith("No available memory for the cache blocks.")


def test_kv_cache_memory_bytes_skips_the_budget():
    # --kv-cache-memory-bytes: exactly that many bytes, utilization ignored (gpu_worker.py).
    p = plan(80, 0.1, LLAMA2_7B, "bf16", 4096, kv_cache_memory_bytes=16 * GiB)
    # 16 GiB / 8 MiB = 2,048 blocks; / 256 per request = 8.00x.
    assert p.num_blocks == 2048
    assert p.max_concurrency == 8.0
    assert any("ignores" in n for n in p.notes)


def test_cpu_kv_cache_bytes():
    # vllm/platforms/cpu.py: VLLM_CPU_KVCACHE_SPACE=2 → 2 × 2**30 bytes, and it wins over the flag.
    assert cpu_kv_cache_bytes(2) == 2 * 2**30
    assert cpu_kv_cache_bytes(1, kv_cache_memory_bytes=123) == 2**30
    assert cpu_kv_cache_bytes(kv_cache_memory_bytes=123_456) == 123_456
    with pytest.raises(InputError):
        cpu_kv_cache_bytes()
    with pytest.raises(InputError):
        cpu_kv_cache_bytes(1.5)


def test_format_gib_matches_vllm():
    # vllm/utils/mem_utils.py format_gib: str(round(b / GiB, 2)).
    assert format_gib(GiB) == "1.0"
    assert format_gib(int(1.75 * GiB)) == "1.75"


@pytest.mark.parametrize("util", [0, -0.1, 1.5, float("nan")])
def test_bad_utilization(util):
    with pytest.raises(InputError) as err:
        plan(80, util, QWEN25_CODER_7B, "bf16", 8192)
    assert "(0, 1]" in str(err.value) and "Fix:" in str(err.value)


def test_utilization_one_is_allowed():
    assert plan(80, 1.0, QWEN25_CODER_7B, "bf16", 8192).budget == 80 * GiB


def test_awq_preset_weights_are_the_checkpoint_size_and_an_estimate():
    # Without a logged figure the AWQ build's weights are its checkpoint's tensors (5.19 GiB,
    # test_formula.py adds them up), labelled as an estimate until vLLM's log replaces them.
    p = plan(24, 0.9, QWEN25_CODER_7B_AWQ, "auto", 8192)
    assert p.weights.bytes == 5_570_747_392 and p.weights.source == "estimated"
    assert "weights" in p.estimated_parts and "Model loading took" in p.weights.note
    # The default utilization quoted in the error's fix is the one vLLM 0.32 uses.
    with pytest.raises(InputError, match=str(DEFAULT_GPU_MEMORY_UTILIZATION)):
        plan(24, 2, QWEN25_CODER_7B_AWQ, "auto", 8192)


def test_summary_shows_a_small_cache_in_mib_not_as_zero_gib():
    # The stack lab's local engine has a few MiB of cache: "0.00 GiB = 17 blocks" told a reader nothing.
    p = plan_from_kv_bytes(17 * 131_072, ModelShape("tiny", layers=2, attention_heads=4, kv_heads=2,
                                                    head_dim=64, hidden_size=256),
                           "bf16", 1000, block_size=128, device="CPU")
    lines = p.summary().splitlines()
    assert lines[0] == "KV cache memory given: 2.12 MiB (2,228,224 bytes)"
    assert lines[1] == "  = 17 blocks × 131,072 B (a block holds 128 tokens of every layer)"
    assert lines[2] == p.log_line()
    assert size_text(3 * GiB // 2) == "1.50 GiB" and size_text(512) == "512 B"


def test_summary_of_a_gpu_plan_adds_up_in_gib():
    p = plan(80, 0.5, LLAMA2_7B, "bf16", 4096, weights_gib=6, activation_peak_gib=1,
             non_torch_gib=0.5, cuda_graph_gib=0.5)
    assert p.summary().splitlines() == [
        "Budget: 80 GiB × 0.5 = 40.00 GiB",
        "  − weights: 6.00 GiB (measured)",
        "  − activation peak: 1.00 GiB (measured)",
        "  − non-torch memory: 0.50 GiB (measured)",
        "  − CUDA graphs: 0.50 GiB (measured)",
        "= KV cache memory: 32.00 GiB",
        "  = 4,096 blocks × 8,388,608 B (a block holds 16 tokens of every layer)",
        p.log_line(),
    ]
    refused = plan_from_kv_bytes(GiB, QWEN25_CODER_7B, "bf16", 32768)
    assert refused.summary().splitlines()[-1] == "Does not start: " + refused.message


@pytest.mark.parametrize("kwargs", [dict(gpu_memory_gib=-1), dict(gpu_memory_gib=0), dict(weights_gib=-2),
                                    dict(activation_peak_gib=-0.1), dict(max_model_len=0),
                                    dict(max_model_len=-5), dict(max_model_len=10.5), dict(kv_dtype="int3"),
                                    dict(block_size=0), dict(kv_cache_memory_bytes=-1)])
def test_bad_inputs(kwargs):
    args = dict(gpu_memory_gib=80, gpu_memory_utilization=0.9, model=QWEN25_CODER_7B, kv_dtype="bf16",
                max_model_len=8192)
    args.update(kwargs)
    with pytest.raises(InputError) as err:
        plan(**args)
    assert err.value.fix


def test_kv_heads_must_divide_heads():
    # 28 query heads cannot be shared evenly by 5 KV heads.
    with pytest.raises(InputError, match="does not divide"):
        ModelShape("bad", layers=2, attention_heads=28, kv_heads=5, head_dim=128, hidden_size=3584)


# A CONSTRUCTED GPU start-up log (not a recorded observation): each line is made from
# the format strings in vLLM 0.32's source (gpu_model_runner.py, gpu_worker.py, kv_cache_utils.py).
CONSTRUCTED_GPU_LOG = """\
(EngineCore pid=1) INFO [gpu_model_runner.py:5150] Model loading took 5.31 GiB memory and 12.345678 seconds
(EngineCore pid=1) INFO [gpu_worker.py:759] Available KV cache memory: 62.84 GiB
(EngineCore pid=1) INFO [kv_cache_utils.py:2327] GPU KV cache size: 1,176,640 tokens, Maximum concurrency \
for 32,768 tokens per request: 35.91x
(EngineCore pid=1) INFO [gpu_worker.py:1010] Free memory on device (78.64/79.19 GiB) on startup. Desired GPU \
memory utilization is (0.9, 71.27 GiB). Actual usage is 5.83 GiB for consumed memory (weights + non-torch), \
2.6 GiB for peak activation, and 0.51 GiB for CUDAGraph memory. Replace gpu_memory_utilization config with \
`--kv-cache-memory=67010088345` (62.41 GiB) to fit into requested memory
"""
# A CONSTRUCTED CPU start-up log, from cpu_worker.py's and kv_cache_utils.py's format strings.
CONSTRUCTED_CPU_LOG = """\
(Worker pid=2) INFO [cpu_worker.py:260] Explicitly set (1.0/23.46) GiB for KV cache on node 0.
(EngineCore pid=3) INFO [kv_cache_utils.py:2327] CPU KV cache size: 1,024,000 tokens, Maximum concurrency \
for 1,000 tokens per request: 1024.00x
"""


def test_parse_gpu_log():
    got = parse_startup_log(CONSTRUCTED_GPU_LOG)
    assert got["device"] == "GPU"
    assert got["kv_cache_tokens"] == 1_176_640
    assert got["max_model_len"] == 32_768
    assert got["max_concurrency"] == 35.91
    assert got["weights_gib"] == 5.31
    assert got["available_kv_gib"] == 62.84
    assert got["activation_peak_gib"] == 2.6
    assert got["cuda_graph_gib"] == 0.51
    assert got["consumed_gib"] == 5.83
    # consumed = weights + non-torch → 5.83 − 5.31 = 0.52.
    assert got["non_torch_gib"] == 0.52
    assert got["gpu_total_gib"] == 79.19 and got["gpu_memory_utilization"] == 0.9
    kwargs = plan_inputs_from_log(got)
    # The 0.32 "peak activation" already includes the CUDA-graph estimate → graphs counted as 0.
    assert kwargs["cuda_graph_gib"] == 0.0
    p = plan(model=QWEN25_CODER_7B, kv_dtype="bf16", **kwargs)
    assert p.estimated_parts == ()


def test_parse_cpu_log_and_older_two_line_format():
    got = parse_startup_log(CONSTRUCTED_CPU_LOG)
    assert (got["device"], got["kv_cache_tokens"], got["max_concurrency"]) == ("CPU", 1_024_000, 1024.0)
    assert got["cpu_kv_gib"] == 1.0
    # Older releases logged the two halves on separate lines (constructed example).
    older = "INFO GPU KV cache size: 50,000 tokens\nINFO Maximum concurrency for 4,096 tokens per request: 12.21x\n"
    got = parse_startup_log(older)
    assert got["kv_cache_tokens"] == 50_000 and got["max_concurrency"] == 12.21


def test_parse_nothing_found():
    with pytest.raises(InputError, match="No KV-cache figures"):
        parse_startup_log("hello world")
