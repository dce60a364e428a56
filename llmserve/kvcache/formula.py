"""How many bytes the KV cache needs: the formula, with grouped-query attention.

Used by the KV-cache chapter (book/kv-cache.md) and by the capacity planner.

Per token, summed over all layers::

    2 (K and V) × layers × kv_heads × head_dim × bytes_per_value

The source notes use ``2 × layers × hidden × bytes``; that equals the formula
above only when ``kv_heads == attention_heads`` (no grouped-query attention).
"""
from __future__ import annotations

from dataclasses import dataclass

from llmserve.core.errors import require

#: Bytes per stored value for the KV-cache dtypes vLLM offers.
DTYPE_BYTES = {"float32": 4, "fp32": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2,
               "auto": 2, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}

#: vLLM's default paged-attention block size, in tokens.
BLOCK_SIZE = 16


@dataclass(frozen=True)
class ModelShape:
    """The attention-relevant shape of a decoder-only transformer."""

    name: str
    layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    hidden_size: int
    max_position_embeddings: int = 32768
    parameters: int | None = None

    def __post_init__(self) -> None:
        for field_name in ("layers", "attention_heads", "kv_heads", "head_dim", "hidden_size"):
            value = getattr(self, field_name)
            require(isinstance(value, int) and value > 0,
                    f"{field_name} must be a positive whole number, got {value!r}.",
                    f"Enter a positive integer for {field_name} (the model's config.json has it).")
        require(self.attention_heads % self.kv_heads == 0,
                f"kv_heads={self.kv_heads} does not divide attention_heads={self.attention_heads}.",
                "Grouped-query attention shares each KV head among a whole number of query heads: "
                "pick kv_heads from the divisors of attention_heads (e.g. 1, 2, 4, 7, 14, 28 for 28).")

    @property
    def group_size(self) -> int:
        """Query heads per KV head (1 = multi-head, attention_heads = multi-query)."""
        return self.attention_heads // self.kv_heads


#: Qwen/Qwen2.5-Coder-7B-Instruct config.json (the AWQ build has the same shape).
QWEN25_CODER_7B = ModelShape("Qwen2.5-Coder-7B-Instruct", layers=28, attention_heads=28, kv_heads=4,
                             head_dim=128, hidden_size=3584, max_position_embeddings=32768,
                             parameters=7_615_616_512)
#: meta-llama/Llama-2-7b-hf config.json: 32 layers, 32 heads, no GQA.
LLAMA2_7B = ModelShape("Llama-2-7B", layers=32, attention_heads=32, kv_heads=32, head_dim=128,
                       hidden_size=4096, max_position_embeddings=4096, parameters=6_738_415_616)

PRESETS = {shape.name: shape for shape in (QWEN25_CODER_7B, LLAMA2_7B)}


def dtype_bytes(dtype: str) -> int:
    """Bytes per value of a KV-cache dtype name (``"bf16"``, ``"fp8"``, ``"float32"`` …)."""
    key = str(dtype).strip().lower()
    require(key in DTYPE_BYTES, f"Unknown KV-cache dtype {dtype!r}.",
            f"Use one of: {', '.join(sorted(set(DTYPE_BYTES)))}.")
    return DTYPE_BYTES[key]


def kv_bytes_per_token(shape: ModelShape, dtype: str = "bf16") -> int:
    """Cache bytes one token occupies across all layers."""
    return 2 * shape.layers * shape.kv_heads * shape.head_dim * dtype_bytes(dtype)


def naive_kv_bytes_per_token(shape: ModelShape, dtype: str = "bf16") -> int:
    """The source notes' formula ``2 × layers × hidden × bytes`` (ignores GQA)."""
    return 2 * shape.layers * shape.hidden_size * dtype_bytes(dtype)


def kv_bytes_per_block(shape: ModelShape, dtype: str = "bf16", block_size: int = BLOCK_SIZE) -> int:
    """Bytes of one paged block (``block_size`` tokens) across all layers."""
    require(isinstance(block_size, int) and block_size > 0, f"block_size must be positive, got {block_size!r}.",
            "vLLM's default block size is 16 tokens.")
    return block_size * kv_bytes_per_token(shape, dtype)


def kv_bytes(shape: ModelShape, tokens: int, dtype: str = "bf16") -> int:
    """Cache bytes for ``tokens`` tokens (one sequence or a whole batch's total)."""
    require(isinstance(tokens, int) and tokens >= 0, f"tokens must be a whole number ≥ 0, got {tokens!r}.",
            "Enter a token count such as 2048.")
    return tokens * kv_bytes_per_token(shape, dtype)
