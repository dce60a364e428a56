"""How many bytes the KV cache and the weights need: the formulas, with grouped-query attention.

Used by the KV-cache chapter (book/kv-cache.md, notebooks/kv-cache-lab.ipynb), its
capacity planner and the capstone. Pure rules: numbers in, numbers out.

Per token, summed over all layers::

    2 (K and V) × layers × kv_heads × head_dim × bytes_per_value

The common shortcut ``2 × layers × hidden × bytes`` equals it only when
``kv_heads == attention_heads`` (no grouped-query attention);
:func:`formula_rows` puts the two side by side.

The weights: ``parameters × 2`` bytes in bf16/fp16; for an AWQ checkpoint,
:func:`weight_bytes` adds up the tensors that checkpoint stores (4-bit linear
layers with one fp16 scale and one 4-bit zero per group of 128 input rows,
everything else in fp16).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from llmserve.core.errors import require

#: Bytes per stored value for the KV-cache dtypes vLLM offers.
DTYPE_BYTES = {"float32": 4, "fp32": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2,
               "auto": 2, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}

#: AWQ as Qwen's AWQ checkpoint stores it: ``quantization_config`` in
#: https://huggingface.co/Qwen/Qwen2.5-Coder-7B-Instruct-AWQ/blob/main/config.json
#: (``bits`` 4, ``group_size`` 128, ``zero_point`` true, ``version`` gemm).
AWQ_BITS = 4
AWQ_GROUP_SIZE = 128
#: Weight formats :func:`weight_bytes` knows: 16-bit (bf16 or fp16) and AWQ.
WEIGHT_FORMATS = ("16-bit", "awq")


@dataclass(frozen=True)
class ModelShape:
    """The attention-relevant shape of a decoder-only transformer, and how its weights are stored.

    ``intermediate_size`` (the MLP width) is needed only to size AWQ weights;
    ``weights`` is ``"16-bit"`` (bf16/fp16) or ``"awq"``.
    """

    name: str
    layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    hidden_size: int
    max_position_embeddings: int = 32768
    parameters: int | None = None
    intermediate_size: int | None = None
    weights: str = "16-bit"

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
        require(self.weights in WEIGHT_FORMATS, f"Unknown weight format {self.weights!r}.",
                f"Use one of {WEIGHT_FORMATS}.")

    @property
    def group_size(self) -> int:
        """Query heads per KV head (1 = multi-head, attention_heads = multi-query)."""
        return self.attention_heads // self.kv_heads


#: Qwen/Qwen2.5-Coder-7B-Instruct's config.json
#: (https://huggingface.co/Qwen/Qwen2.5-Coder-7B-Instruct/blob/main/config.json): 28 layers,
#: 28 heads, 4 KV heads, hidden 3584, MLP 18944. 7,615,616,512 parameters: the linear layers,
#: untied input and output embeddings of 152,064 × 3,584, norms and q/k/v biases (the model
#: card rounds it to 7.61B; tests/kvcache/test_formula.py adds it up).
QWEN25_CODER_7B = ModelShape("Qwen2.5-Coder-7B-Instruct", layers=28, attention_heads=28, kv_heads=4,
                             head_dim=128, hidden_size=3584, max_position_embeddings=32768,
                             parameters=7_615_616_512, intermediate_size=18944)
#: Its AWQ build (Qwen/Qwen2.5-Coder-7B-Instruct-AWQ): the same shape, 4-bit linear layers.
QWEN25_CODER_7B_AWQ = ModelShape("Qwen2.5-Coder-7B-Instruct-AWQ", layers=28, attention_heads=28,
                                 kv_heads=4, head_dim=128, hidden_size=3584,
                                 max_position_embeddings=32768, parameters=7_615_616_512,
                                 intermediate_size=18944, weights="awq")
#: meta-llama/Llama-2-7b-hf config.json: 32 layers, 32 heads, no GQA.
LLAMA2_7B = ModelShape("Llama-2-7B", layers=32, attention_heads=32, kv_heads=32, head_dim=128,
                       hidden_size=4096, max_position_embeddings=4096, parameters=6_738_415_616,
                       intermediate_size=11008)

PRESETS = {shape.name: shape for shape in (QWEN25_CODER_7B, QWEN25_CODER_7B_AWQ, LLAMA2_7B)}


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
    """The shortcut ``2 × layers × hidden × bytes``: right only without GQA."""
    return 2 * shape.layers * shape.hidden_size * dtype_bytes(dtype)


def kv_bytes(shape: ModelShape, tokens: int, dtype: str = "bf16") -> int:
    """Cache bytes for ``tokens`` tokens (one sequence or a whole batch's total)."""
    require(isinstance(tokens, int) and tokens >= 0, f"tokens must be a whole number ≥ 0, got {tokens!r}.",
            "Enter a token count such as 2048.")
    return tokens * kv_bytes_per_token(shape, dtype)


# ------------------------------------------------------------------ weights

def linear_parameters(shape: ModelShape) -> int:
    """Weights of the decoder's linear layers (q, k, v, o, gate, up, down), all layers.

    These are what AWQ quantizes; embeddings, the output layer, norms and biases stay 16-bit.
    """
    require(shape.intermediate_size is not None, f"{shape.name} has no intermediate_size.",
            "Give ModelShape(intermediate_size=...) from config.json (Qwen2.5-Coder-7B: 18944).")
    q_out, kv_out = shape.attention_heads * shape.head_dim, shape.kv_heads * shape.head_dim
    attention = shape.hidden_size * (q_out + 2 * kv_out) + q_out * shape.hidden_size
    mlp = 3 * shape.hidden_size * shape.intermediate_size          # gate, up (h → i) and down (i → h)
    return shape.layers * (attention + mlp)


def weight_bytes(shape: ModelShape) -> int:
    """Bytes of the checkpoint's tensors: what loading the weights puts on the GPU, before any overhead.

    16-bit: ``parameters × 2``. AWQ (AutoAWQ's GEMM layout): each linear weight is
    4 bits; per group of 128 input rows and per output column, one fp16 scale and one
    4-bit zero point; every other parameter is fp16. vLLM's own figure, which adds
    what its kernels allocate while loading, is the start-up line
    ``Model loading took X GiB memory``.
    """
    require(shape.parameters is not None, f"No parameter count known for {shape.name}.",
            "Give ModelShape(parameters=...) from the model card, or the GiB vLLM logs "
            "as 'Model loading took X GiB'.")
    if shape.weights == "16-bit":
        return shape.parameters * 2
    linear = linear_parameters(shape)
    packed = linear * AWQ_BITS // 8
    scales_and_zeros = (linear // AWQ_GROUP_SIZE) * (16 + AWQ_BITS) // 8
    return packed + scales_and_zeros + (shape.parameters - linear) * 2


# ------------------------------------------------------------------ the formula against the shortcut

@dataclass(frozen=True)
class FormulaRow:
    """One model and KV dtype: per-token bytes by the formula and by the shortcut."""

    model: str
    layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    hidden_size: int
    dtype: str
    per_token: int          # 2 × layers × kv_heads × head_dim × bytes
    naive_per_token: int    # 2 × layers × hidden × bytes (the shortcut)
    context: int
    per_sequence: int       # per_token × context

    @property
    def naive_ratio(self) -> float:
        return self.naive_per_token / self.per_token


def formula_rows(shapes: Iterable[ModelShape] = (QWEN25_CODER_7B, LLAMA2_7B),
                 dtypes: Iterable[str] = ("bf16", "fp8"), context: int | None = None) -> list[FormulaRow]:
    """The formula against the shortcut ``2 × layers × hidden × bytes`` for each model and dtype.

    ``context`` defaults to each model's ``max_position_embeddings``.
    """
    rows = []
    for s in shapes:
        for d in dtypes:
            ctx = context or s.max_position_embeddings
            rows.append(FormulaRow(s.name, s.layers, s.attention_heads, s.kv_heads, s.head_dim, s.hidden_size,
                                   d, kv_bytes_per_token(s, d), naive_kv_bytes_per_token(s, d),
                                   ctx, kv_bytes(s, ctx, d)))
    return rows


__all__ = ["DTYPE_BYTES", "AWQ_BITS", "AWQ_GROUP_SIZE", "WEIGHT_FORMATS", "ModelShape", "QWEN25_CODER_7B",
           "QWEN25_CODER_7B_AWQ", "LLAMA2_7B", "PRESETS", "dtype_bytes", "kv_bytes_per_token",
           "naive_kv_bytes_per_token", "kv_bytes", "linear_parameters", "weight_bytes", "FormulaRow",
           "formula_rows"]
