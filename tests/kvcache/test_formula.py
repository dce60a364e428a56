"""The KV-cache and weight formulas (llmserve/kvcache/formula.py).

Reference numbers, worked out by hand from the models' config.json files:
Qwen/Qwen2.5-Coder-7B-Instruct (28 layers, 28 heads, 4 KV heads, head_dim 128,
hidden 3584, intermediate 18944, vocab 152064, untied embeddings;
https://huggingface.co/Qwen/Qwen2.5-Coder-7B-Instruct/blob/main/config.json),
its AWQ build's quantization_config (4 bits, group size 128, zero point;
https://huggingface.co/Qwen/Qwen2.5-Coder-7B-Instruct-AWQ/blob/main/config.json)
and meta-llama/Llama-2-7b-hf (32 layers, 32 heads, 32 KV heads, hidden 4096;
https://huggingface.co/meta-llama/Llama-2-7b-hf/blob/main/config.json).
"""
from __future__ import annotations

from dataclasses import replace

import pytest

from llmserve.core.errors import CourseError, InputError
from llmserve.kvcache import formula
from llmserve.kvcache.formula import LLAMA2_7B, QWEN25_CODER_7B, QWEN25_CODER_7B_AWQ, ModelShape


def test_formula_table_shows_the_naive_formula_7x_too_large_for_qwen_only():
    rows = {(r.model, r.dtype): r for r in formula.formula_rows()}
    qwen = rows[("Qwen2.5-Coder-7B-Instruct", "bf16")]
    assert qwen.per_token == 57_344 and qwen.naive_per_token == 401_408 and qwen.naive_ratio == 7
    llama = rows[("Llama-2-7B", "bf16")]
    assert llama.per_token == llama.naive_per_token == 524_288        # 512 KiB: 2 × 32 × 4096 × 2
    assert rows[("Qwen2.5-Coder-7B-Instruct", "fp8")].per_token == 28_672
    assert qwen.per_sequence == 32_768 * 57_344 == int(1.75 * 2**30)   # 1.75 GiB at 32k


def test_formula_rows_take_a_context():
    (row,) = formula.formula_rows([QWEN25_CODER_7B], ["bf16"], context=8192)
    assert row.context == 8192 and row.per_sequence == 8192 * 57_344


def test_kv_bytes_and_dtypes():
    assert formula.kv_bytes(QWEN25_CODER_7B, 0) == 0
    assert formula.kv_bytes(QWEN25_CODER_7B, 3, "fp32") == 3 * 2 * 28 * 4 * 128 * 4
    assert formula.dtype_bytes(" FP8 ") == 1 and formula.dtype_bytes("auto") == 2
    with pytest.raises(InputError, match="Unknown KV-cache dtype"):
        formula.dtype_bytes("int3")
    with pytest.raises(InputError, match="tokens"):
        formula.kv_bytes(QWEN25_CODER_7B, -1)


def test_qwen_parameter_count_adds_up_from_config_json():
    # Linear layers + untied input and output embeddings + 2 norms per layer and the final one
    # + the q, k and v biases (Qwen2 has them; o_proj and the MLP have none).
    linear = formula.linear_parameters(QWEN25_CODER_7B)
    assert linear == 28 * (3584 * 3584 * 2 + 3584 * 512 * 2 + 3 * 3584 * 18944) == 6_525_288_448
    embeddings = 2 * 152_064 * 3584
    norms = 2 * 28 * 3584 + 3584
    biases = 28 * (3584 + 512 + 512)
    assert linear + embeddings + norms + biases == QWEN25_CODER_7B.parameters == 7_615_616_512


def test_weight_bytes_bf16_and_awq():
    # 16-bit: parameters × 2 = 14.19 GiB.
    assert formula.weight_bytes(QWEN25_CODER_7B) == 15_231_233_024
    # AWQ: linear weights in 4 bits; per group of 128 input rows and per output column an fp16
    # scale (2 B) and a 4-bit zero (0.5 B); all other parameters fp16.
    linear = 6_525_288_448
    by_hand = linear // 2 + linear // 128 * 5 // 2 + (7_615_616_512 - linear) * 2
    assert formula.weight_bytes(QWEN25_CODER_7B_AWQ) == by_hand == 5_570_747_392
    assert round(by_hand / 2**30, 2) == 5.19
    # The AWQ build's KV cache is the bf16 model's: same shape, same bytes per token.
    assert formula.kv_bytes_per_token(QWEN25_CODER_7B_AWQ) == formula.kv_bytes_per_token(QWEN25_CODER_7B)


def test_weight_bytes_needs_the_numbers_it_uses():
    with pytest.raises(InputError, match="parameter count"):
        formula.weight_bytes(replace(QWEN25_CODER_7B, parameters=None))
    with pytest.raises(InputError, match="intermediate_size"):
        formula.weight_bytes(replace(QWEN25_CODER_7B_AWQ, intermediate_size=None))
    with pytest.raises(CourseError, match="weight format"):
        replace(QWEN25_CODER_7B, weights="gguf")


def test_presets_and_group_size():
    assert set(formula.PRESETS) == {QWEN25_CODER_7B.name, QWEN25_CODER_7B_AWQ.name, LLAMA2_7B.name}
    assert QWEN25_CODER_7B.group_size == 7 and LLAMA2_7B.group_size == 1


@pytest.mark.parametrize("field_name", ["layers", "attention_heads", "kv_heads", "head_dim", "hidden_size"])
def test_shape_numbers_must_be_positive(field_name):
    args = dict(layers=2, attention_heads=4, kv_heads=2, head_dim=8, hidden_size=32)
    args[field_name] = 0
    with pytest.raises(InputError, match=field_name):
        ModelShape("bad", **args)
