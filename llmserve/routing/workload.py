"""The shared-prefix workload of the routing lab: tenants with long system prompts, rounds of questions.

Used by the routing chapter (book/routing.md, notebooks/routing-lab.ipynb) through
:mod:`llmserve.routing.experiment`, and by its tests. Pure rules: text and arithmetic, seeded.

Each of ``tenants`` tenants has its own long system prompt (``prefix_words`` words, about one
token each with the tiny model's tokenizer, so several full KV blocks). In every **round**
each tenant sends one new question under its system prompt, all tenants at the same moment
(a burst): ``rounds × tenants`` requests in all. What stays the same between a tenant's
requests is exactly its system prompt, so a request can reuse the blocks of that prompt if,
and only if, it lands on an engine that still holds them.

The cache is made small on purpose (:func:`cache_plan`): one engine cannot hold every
tenant's prompt, but each engine can hold its share when every tenant stays on one engine.
Then where a request goes decides whether its prefix is found — which is what the lab
measures. Every text is made from a fixed word list with a seeded generator, so a run is
the same run every time (the model's answers are never looked at).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from llmserve.core.errors import require
from llmserve.routing.policy import cacheable_tokens

#: Words the tiny model's tokenizer was trained on (llmserve/serving/tinymodel.py): about one token each.
WORDS = ("the a cache block token request server model kubernetes pod service volume claim deployment memory "
         "attention key value head layer batch latency throughput queue schedule prefill decode stream").split()


@dataclass(frozen=True)
class Request:
    """One request of the workload: which round, which tenant, what to send."""

    round: int
    tenant: int
    messages: list
    max_tokens: int

    @property
    def user(self) -> str:
        """The OpenAI ``user`` field: what a consistent-hash router keys on."""
        return f"tenant-{self.tenant}"


@dataclass(frozen=True)
class SharedPrefixWorkload:
    """``tenants`` long system prompts, ``rounds`` bursts of one question per tenant (see the module docstring).

    ``first_max_tokens`` for round 0 is larger than ``max_tokens``: the first burst's requests
    stay in flight long enough to overlap, so a load-aware router sees them all at once.
    """

    tenants: int = 3
    rounds: int = 6
    prefix_words: int = 640
    question_words: int = 12
    max_tokens: int = 4
    first_max_tokens: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("tenants", "rounds", "prefix_words", "question_words", "max_tokens", "first_max_tokens"):
            value = getattr(self, name)
            require(isinstance(value, int) and value > 0, f"{name} must be a whole number > 0, got {value!r}.",
                    "Use the defaults of SharedPrefixWorkload as a guide.")
        require(self.tenants * self.rounds <= 200, f"{self.tenants * self.rounds} requests is more than the lab "
                "sends (200).", "Use fewer tenants or rounds.")

    @property
    def total_requests(self) -> int:
        return self.tenants * self.rounds

    def system_prompt(self, tenant: int) -> str:
        rng = random.Random(f"{self.seed}-prefix-{tenant}")
        return f"You are assistant number {tenant}. " + " ".join(rng.choice(WORDS) for _ in range(self.prefix_words))

    def question(self, tenant: int, round_: int) -> str:
        rng = random.Random(f"{self.seed}-question-{tenant}-{round_}")
        return f"Question {round_} from tenant {tenant}: " + " ".join(
            rng.choice(WORDS) for _ in range(self.question_words))

    def request(self, tenant: int, round_: int) -> Request:
        messages = [{"role": "system", "content": self.system_prompt(tenant)},
                    {"role": "user", "content": self.question(tenant, round_)}]
        return Request(round_, tenant, messages, self.first_max_tokens if round_ == 0 else self.max_tokens)

    def bursts(self) -> list[list[Request]]:
        """The requests, one list per round (one request per tenant in each)."""
        return [[self.request(t, r) for t in range(self.tenants)] for r in range(self.rounds)]


@dataclass(frozen=True)
class CachePlan:
    """Whether a cache size makes routing matter for a workload (block arithmetic)."""

    block_size: int
    kv_cache_blocks: int
    engines: int
    prefix_blocks: int          # full blocks of one system prompt (what a hit can reuse)
    request_blocks: int         # blocks one request occupies while it runs
    all_prefixes_blocks: int    # every tenant's system prompt on one engine
    share_blocks: int           # the busiest engine's share when each tenant stays on one engine

    @property
    def one_engine_holds_all(self) -> bool:
        return self.all_prefixes_blocks <= self.kv_cache_blocks

    @property
    def share_fits(self) -> bool:
        return self.share_blocks <= self.kv_cache_blocks

    @property
    def routing_matters(self) -> bool:
        """True when no engine can hold every prefix but each can hold its share."""
        return self.share_fits and not self.one_engine_holds_all

    def text(self) -> str:
        return (f"A system prompt fills {self.prefix_blocks} full blocks of {self.block_size} tokens; a running "
                f"request {self.request_blocks}. Each engine has {self.kv_cache_blocks} blocks: every prompt "
                f"on one engine needs {self.all_prefixes_blocks} "
                f"({'fits' if self.one_engine_holds_all else 'does not fit'}); the busiest engine's share, "
                f"its prompts each with a request running, needs {self.share_blocks} "
                f"({'fits' if self.share_fits else 'does not fit'}).")


def cache_plan(workload: SharedPrefixWorkload, prefix_tokens: int, prompt_tokens: int, block_size: int,
               kv_cache_blocks: int, engines: int) -> CachePlan:
    """The block arithmetic of :class:`CachePlan` from measured token counts.

    ``prefix_tokens``: tokens the system prompt takes in the chat template (what every request
    of a tenant shares); ``prompt_tokens``: a whole request's prompt (the server's usage block).
    """
    require(0 < prefix_tokens <= prompt_tokens, "prefix_tokens must be > 0 and ≤ prompt_tokens.",
            "Pass the shared part and the whole prompt, in tokens.")
    require(block_size > 0 and kv_cache_blocks > 0 and engines > 0, "block_size, kv_cache_blocks and engines "
            "must be > 0.", "Pass the fleet's settings.")
    prefix_blocks = prefix_tokens // block_size
    longest = prompt_tokens + max(workload.max_tokens, workload.first_max_tokens)
    request_blocks = -(-longest // block_size)
    tenants_per_engine = -(-workload.tenants // engines)
    return CachePlan(block_size, kv_cache_blocks, engines, prefix_blocks, request_blocks,
                     workload.tenants * prefix_blocks, tenants_per_engine * request_blocks)


def sticky_hit_rate(workload: SharedPrefixWorkload, prefix_tokens: int, prompt_tokens: int, block_size: int) -> float:
    """The hit rate a run reaches when every tenant stays on one engine that keeps its prompt cached.

    Each tenant's first request finds nothing; each later one finds the system prompt's full
    blocks (whole blocks only, never the whole prompt: :func:`~llmserve.routing.policy.cacheable_tokens`).
    Prefix-cache counters count prompt tokens, so the rate is cached tokens over prompt tokens.
    """
    require(0 < prefix_tokens <= prompt_tokens and block_size > 0, "Need 0 < prefix_tokens ≤ prompt_tokens "
            "and block_size > 0.", "Pass the measured token counts and the engine's block size.")
    cached = min(prefix_tokens // block_size * block_size, cacheable_tokens(prompt_tokens, block_size))
    return (workload.rounds - 1) / workload.rounds * cached / prompt_tokens
