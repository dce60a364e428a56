"""The tiny model's shapes (the build itself runs in .venv-vllm, exercised by every engine test)."""
from __future__ import annotations

from llmserve.serving.tinymodel import TINY, TINY_WIDE, TinyShape, model_dir


def test_tiny_shapes():
    # Head size = hidden / heads = 64 for both (vLLM's CPU attention refuses 16).
    assert TINY.head_dim == 64 and TINY_WIDE.head_dim == 64
    assert TINY.model_shape().kv_heads == 2 and TINY.kv_dtype() == "bf16"
    # The cache directory name follows the shape.
    assert TINY.key() != TINY_WIDE.key()
    assert TinyShape().key() == TINY.key()
    assert model_dir(TINY, "/cache").name == f"tiny-qwen2-{TINY.key()}"
