"""Reserve ``max_model_len`` per request, or hand out blocks of 16 tokens?

Used by the KV-cache chapter (book/kv-cache.md, notebooks/kv-cache-lab.ipynb, its paging
panel). Pure rules: request lengths in, memory accounting out.

Two ways to give requests KV-cache memory:

* **contiguous**: each request gets one slab big enough for ``max_model_len``
  tokens when it starts, because nobody knows how long it will get. What it
  does not use is wasted until it finishes (the PagedAttention paper, Kwon et
  al. 2023, §3, calls this reservation and internal fragmentation).
* **paged** (vLLM): the cache is cut into blocks of ``block_size`` tokens
  (16 on GPUs); a request takes a new block only when its last one is full,
  so at most ``block_size − 1`` slots per request are wasted.

External fragmentation (gaps between slabs in a real allocator) is left out:
it would only make contiguous reservation look worse.

The request lengths come from :func:`sample_lengths`, a seeded generator. The
distribution is a **modelling choice, not data**: prompt and output lengths are
each log-normal (positive and right-skewed: many short requests, a few very
long ones). The defaults (prompt median 1,000 tokens, output median 250)
picture a coding assistant that pastes some code and gets a function back.
Change them and watch the conclusion hold.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from llmserve.core.errors import require
from llmserve.core.vllm import GPU_DEFAULT_BLOCK_SIZE
from llmserve.kvcache import formula
from llmserve.kvcache.formula import ModelShape


@dataclass(frozen=True)
class LengthMix:
    """Log-normal prompt and output lengths (medians in tokens, sigma of the log)."""

    prompt_median: float = 1000.0
    prompt_sigma: float = 1.0
    output_median: float = 250.0
    output_sigma: float = 0.8

    def __post_init__(self) -> None:
        for name in ("prompt_median", "output_median"):
            v = getattr(self, name)
            require(isinstance(v, (int, float)) and v >= 1, f"{name} must be ≥ 1 token, got {v!r}.",
                    "Use a median length in tokens, e.g. 1000.")
        for name in ("prompt_sigma", "output_sigma"):
            v = getattr(self, name)
            require(isinstance(v, (int, float)) and v >= 0, f"{name} must be ≥ 0, got {v!r}.",
                    "Use 0 for fixed lengths, about 1 for a typical spread.")


DEFAULT_MIX = LengthMix()


def _check_len(max_model_len: int) -> None:
    require(isinstance(max_model_len, int) and not isinstance(max_model_len, bool) and max_model_len > 0,
            f"max_model_len must be a whole number of tokens > 0, got {max_model_len!r}.",
            "Use the value given to vLLM's --max-model-len, e.g. 8192.")


def sample_lengths(n: int, max_model_len: int = 8192, seed: int = 0, mix: LengthMix = DEFAULT_MIX) -> list[int]:
    """Final token counts (prompt + output) of ``n`` requests, each capped at ``max_model_len``.

    Same ``seed``, same list (``random.Random(seed)``, independent of global state).
    """
    require(isinstance(n, int) and n >= 0, f"n must be a whole number ≥ 0, got {n!r}.", "Use e.g. n=200.")
    _check_len(max_model_len)
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = max(1, round(rng.lognormvariate(math.log(mix.prompt_median), mix.prompt_sigma)))
        output = max(1, round(rng.lognormvariate(math.log(mix.output_median), mix.output_sigma)))
        out.append(min(prompt + output, max_model_len))
    return out


def blocks_for(tokens: int, block_size: int = GPU_DEFAULT_BLOCK_SIZE) -> int:
    """Blocks a request of ``tokens`` tokens holds: ``ceil(tokens / block_size)``."""
    return -(-tokens // block_size)


@dataclass(frozen=True)
class Reservation:
    """Memory a set of requests holds under one scheme, in tokens and bytes."""

    scheme: str               # "contiguous" or "paged"
    requests: int
    used_tokens: int          # tokens the requests really hold
    reserved_tokens: int      # slots set aside for them
    bytes_per_token: int

    @property
    def wasted_tokens(self) -> int:
        """Reserved slots never filled (internal fragmentation)."""
        return self.reserved_tokens - self.used_tokens

    @property
    def used_bytes(self) -> int:
        return self.used_tokens * self.bytes_per_token

    @property
    def reserved_bytes(self) -> int:
        return self.reserved_tokens * self.bytes_per_token

    @property
    def wasted_bytes(self) -> int:
        return self.wasted_tokens * self.bytes_per_token

    @property
    def waste_fraction(self) -> float:
        """Share of the reservation that is wasted (0 = none)."""
        return self.wasted_tokens / self.reserved_tokens if self.reserved_tokens else 0.0


def _check_lengths(lengths, max_model_len: int) -> None:
    _check_len(max_model_len)
    for t in lengths:
        require(isinstance(t, int) and 0 < t <= max_model_len,
                f"every request length must be a whole number in 1…{max_model_len}, got {t!r}.",
                "vLLM rejects requests longer than --max-model-len; cap or drop them.")


def contiguous(lengths: list[int], max_model_len: int, bytes_per_token: int = 1) -> Reservation:
    """Every request reserves ``max_model_len`` slots."""
    _check_lengths(lengths, max_model_len)
    return Reservation("contiguous", len(lengths), sum(lengths), len(lengths) * max_model_len, bytes_per_token)


def paged(lengths: list[int], block_size: int = GPU_DEFAULT_BLOCK_SIZE, bytes_per_token: int = 1,
          max_model_len: int | None = None) -> Reservation:
    """Every request holds ``ceil(length / block_size)`` blocks of ``block_size`` slots."""
    require(isinstance(block_size, int) and block_size > 0, f"block_size must be > 0, got {block_size!r}.",
            "vLLM uses 16 tokens per block on GPUs.")
    _check_lengths(lengths, max_model_len or max(lengths, default=1))
    reserved = sum(blocks_for(t, block_size) for t in lengths) * block_size
    return Reservation("paged", len(lengths), sum(lengths), reserved, bytes_per_token)


def fit_contiguous(budget_bytes: int, max_model_len: int, bytes_per_token: int) -> int:
    """Requests that fit at once when each reserves ``max_model_len`` tokens."""
    _check_len(max_model_len)
    require(budget_bytes >= 0 and bytes_per_token > 0, "budget must be ≥ 0 and bytes_per_token > 0.",
            "Give the KV-cache memory in bytes and the model's bytes per token.")
    return budget_bytes // (max_model_len * bytes_per_token)


def fit_paged(lengths: list[int], budget_bytes: int, bytes_per_token: int,
              block_size: int = GPU_DEFAULT_BLOCK_SIZE) -> int:
    """Requests, taken in order, whose blocks all fit in the budget at once.

    Counts each request at its final length: the most it will ever hold. vLLM
    itself admits more and preempts (pauses) a request if blocks run out.
    """
    require(budget_bytes >= 0 and bytes_per_token > 0, "budget must be ≥ 0 and bytes_per_token > 0.",
            "Give the KV-cache memory in bytes and the model's bytes per token.")
    free_blocks = budget_bytes // (block_size * bytes_per_token)
    count = 0
    for t in lengths:
        need = blocks_for(t, block_size)
        if need > free_blocks:
            break
        free_blocks -= need
        count += 1
    return count


@dataclass(frozen=True)
class Comparison:
    """Both schemes for one mix of requests, one model and one KV budget."""

    model: str
    dtype: str
    max_model_len: int
    block_size: int
    budget_bytes: int
    lengths: list[int]
    contiguous: Reservation
    paged: Reservation
    fit_contiguous: int
    fit_paged: int

    @property
    def mean_length(self) -> float:
        return sum(self.lengths) / len(self.lengths) if self.lengths else 0.0

    @property
    def fit_ratio(self) -> float:
        return self.fit_paged / self.fit_contiguous if self.fit_contiguous else float("inf")


def compare(lengths: list[int], max_model_len: int, budget_bytes: int,
            shape: ModelShape = formula.QWEN25_CODER_7B, dtype: str = "bf16",
            block_size: int = GPU_DEFAULT_BLOCK_SIZE) -> Comparison:
    """Contiguous reservation vs paged blocks for ``lengths`` in a KV budget of ``budget_bytes``."""
    require(isinstance(budget_bytes, int) and budget_bytes >= 0,
            f"budget_bytes must be a whole number ≥ 0, got {budget_bytes!r}.", "Use e.g. 8 * 2**30.")
    bpt = formula.kv_bytes_per_token(shape, dtype)
    return Comparison(shape.name, dtype, max_model_len, block_size, budget_bytes, list(lengths),
                      contiguous(lengths, max_model_len, bpt),
                      paged(lengths, block_size, bpt, max_model_len),
                      fit_contiguous(budget_bytes, max_model_len, bpt),
                      fit_paged(lengths, budget_bytes, bpt, block_size))


__all__ = ["LengthMix", "DEFAULT_MIX", "sample_lengths", "blocks_for", "Reservation", "contiguous", "paged",
           "fit_contiguous", "fit_paged", "Comparison", "compare"]
