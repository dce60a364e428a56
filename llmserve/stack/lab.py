"""The capstone's local lab: the CPU engine's settings (a deliberately small KV cache) and their prediction.

Used by notebooks/stack-lab.ipynb and book/stack.md through :mod:`llmserve.stack.target`
and :mod:`llmserve.stack.load`, and by BENCHMARKS.md's cross-check. Layer: live (it sizes a real
engine; the arithmetic is the KV-cache chapter's planner).
"""
from __future__ import annotations

from dataclasses import dataclass

from llmserve.core.errors import require
from llmserve.core.vllm import CPU_DEFAULT_BLOCK_SIZE
from llmserve.kvcache.planner import Plan, bytes_per_block, plan_from_kv_bytes
from llmserve.serving.tinymodel import TinyShape


def lab_shape() -> TinyShape:
    """The capstone's local model: Qwen2-shaped, random weights, a little larger than the KV-cache
    chapter's tiny one, so that on two cores the engine's forward passes (not the HTTP layer) limit
    the load test, and requests queue for the KV cache rather than for the API server."""
    return TinyShape(layers=4, hidden_size=1024, attention_heads=16, kv_heads=2, intermediate_size=2816)


@dataclass(frozen=True)
class LocalLab:
    """The local CPU engine's settings for the capstone: a deliberately small KV cache.

    The cache holds ``cache_blocks`` blocks of ``block_size`` tokens (vLLM's
    CPU default is 128, ``vllm/platforms/cpu.py``). With requests that grow
    to nearly ``max_model_len`` tokens, the planner predicts
    ``cache_blocks / ceil(max_model_len / block_size)`` of them fit at once;
    the load test goes well past that, so requests must wait.
    """

    #: The model; None means :func:`lab_shape`.
    shape: TinyShape | None = None
    max_model_len: int = 512
    block_size: int = CPU_DEFAULT_BLOCK_SIZE
    cache_blocks: int = 17
    #: The load test's prompt is this sentence repeated: with the tiny model's tokenizer it
    #: fills three of a request's four blocks, so a request holds most of its blocks from its
    #: first step and the scheduler cannot admit more requests than fit (the lab checks the count).
    prompt_sentence: str = "Write a Python function that parses a Kubernetes manifest. "
    prompt_repeats: int = 9
    #: Up to the planner's prediction (about four), then nearly four times it, where requests must wait.
    levels: tuple = (1, 2, 4, 16)
    margin_tokens: int = 8           # keep prompt + output safely under max_model_len
    #: vLLM shares the cache blocks of identical prompt prefixes between requests (automatic
    #: prefix caching, on by default). The load test sends one prompt many times, so with it on,
    #: requests take fewer blocks than the planner counts. Off here, to compare like with like.
    prefix_caching: bool = False
    #: The tiny model makes tokens faster than vLLM's API server can send them one HTTP chunk
    #: each on two cores, and /metrics then answers late. ``--stream-interval`` sends them in
    #: chunks of this many tokens; the first token still goes out at once
    #: (vllm/v1/engine/output_processor.py), so TTFT is unchanged.
    stream_interval: int = 8

    def engine_args(self) -> list[str]:
        args = [] if self.prefix_caching else ["--no-enable-prefix-caching"]
        if self.stream_interval > 1:
            args += ["--stream-interval", str(self.stream_interval)]
        return args

    def messages(self) -> list[dict]:
        return [{"role": "user", "content": (self.prompt_sentence * self.prompt_repeats).strip()}]

    def max_tokens_for(self, prompt_tokens: int) -> int:
        """Output tokens that make each request grow to nearly ``max_model_len`` (the planner's worst case)."""
        require(isinstance(prompt_tokens, int) and 0 < prompt_tokens < self.max_model_len - self.margin_tokens,
                f"A prompt of {prompt_tokens} tokens leaves no room under max_model_len={self.max_model_len}.",
                "Shorten the prompt (prompt_repeats) or raise max_model_len.")
        return self.max_model_len - prompt_tokens - self.margin_tokens

    def tiny_shape(self) -> TinyShape:
        return self.shape or lab_shape()

    def kv_cache_bytes(self, shape, kv_dtype: str) -> int:
        return self.cache_blocks * bytes_per_block(shape, kv_dtype, self.block_size)

    def plan(self, shape, kv_dtype: str) -> Plan:
        """The planner's prediction for exactly these settings (the engine is started with the same)."""
        return plan_from_kv_bytes(self.kv_cache_bytes(shape, kv_dtype), shape, kv_dtype, self.max_model_len,
                                  block_size=self.block_size, device="CPU")


LOCAL_LAB = LocalLab()

#: The cross-check's settings (the lab's section 7, BENCHMARKS.md): the same engine
#: as the lab, with a prompt of one block instead of three, so that at the levels it compares
#: (1 and 4) every request fits in the cache and none waits for it: both tools then time the
#: engine serving a full batch, not the queue.
CROSS_CHECK_LAB = LocalLab(prompt_repeats=3)
CROSS_CHECK_LEVELS = (1, 4)
CROSS_CHECK_REQUESTS = {1: 10, 4: 20}
CROSS_CHECK_MAX_TOKENS = 64
