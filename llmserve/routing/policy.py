"""What each routing policy does, and how vLLM names a cached prefix: the chain of block hashes.

Used by the routing chapter (book/routing.md, notebooks/routing-lab.ipynb) and by the fleet
(:mod:`llmserve.routing.fleet`, which only runs the policies listed here). Pure rules.

**Policies** (:data:`POLICIES`) are those of ``vllm-router`` 0.1.17 (``--policy``; its
``--help`` lists them) plus the Kubernetes Service, which is where every course system starts.
Each says what the router keeps in memory, whether it looks at load and at the cache, and
what a router restart costs.

**Block hashes** are computed as vLLM 0.32 computes them for automatic prefix caching
(``hash_block_tokens`` and ``get_request_block_hasher`` in vllm/v1/core/kv_cache_utils.py,
``sha256`` in vllm/utils/hashing.py): a prompt is cut into blocks of ``block_size`` tokens;
only **full** blocks get a hash; each hash covers the block's tokens **and the hash of the
block before it** (the first block starts from ``NONE_HASH``), so a block hash names the
whole prefix up to its end. The default algorithm (``CacheConfig.prefix_caching_hash_algo =
"sha256"``) hashes the pickled tuple ``(parent hash, token ids, extra keys)``; ``NONE_HASH``
is the hash of a seed: ``PYTHONHASHSEED`` when set, else the fixed ``"vllm-none-hash"``
(``init_none_hash``). Extra keys carry what else must match (a ``cache_salt`` on the first
block, LoRA, images). Hence the failure modes the chapter shows: a different block size, or
a different ``PYTHONHASHSEED``, gives different hashes for the same prompt — the engines
still cache, but a router or a KV-transfer layer that predicts hits from hashes finds none.

A lookup may hit at most ``prompt − 1`` tokens: vLLM always computes the last prompt token
(``max_cache_hit_length = request.num_tokens - 1`` in vllm/v1/core/kv_cache_manager.py), so
:func:`cacheable_tokens` is the most one request can find cached.
"""
from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from typing import Sequence

from llmserve.core.errors import require

#: The seed vLLM 0.32 derives NONE_HASH from when PYTHONHASHSEED is unset (sha256 algorithms).
DEFAULT_NONE_HASH_SEED = "vllm-none-hash"


@dataclass(frozen=True)
class Policy:
    """One way to pick a replica for a request."""

    name: str
    flag: str | None            # vllm-router --policy value (None: not a router policy)
    picks: str                  # how it chooses
    keeps: str                  # what it remembers between requests
    load_aware: bool
    cache_aware: bool
    restart_costs: str          # what a restart of the router loses
    pick_when: str


POLICIES: dict[str, Policy] = {p.name: p for p in (
    Policy("service", None,
           "kube-proxy picks a backend per TCP connection (random in iptables mode, round robin in IPVS); "
           "every request on a kept-alive connection goes to the same Pod",
           "nothing (connection tracking only)", False, False, "nothing",
           "one replica, or many replicas and requests that share nothing"),
    Policy("round_robin", "round_robin", "the next worker in turn", "a counter", False, False, "nothing",
           "identical short requests with no reusable prefix"),
    Policy("random", "random", "a worker at random", "nothing", False, False, "nothing",
           "a baseline to compare with"),
    Policy("power_of_two", "power_of_two", "the less loaded of two workers drawn at random",
           "each worker's running requests", True, False, "nothing (loads are re-learned at once)",
           "uneven request lengths, no reusable prefix"),
    Policy("consistent_hash", "consistent_hash",
           "a hash ring over the workers, keyed by a session header (x-session-id, x-user-id …), "
           "the body's user / session_id field, or else the request text",
           "nothing: the ring is recomputed from the worker list", False, True,
           "nothing while the worker list is the same (the ring is a function of it); a worker "
           "added or removed moves only the keys on its arc",
           "sessions or tenants with an id; accepts uneven load (a hot key stays on one worker)"),
    Policy("cache_aware", "cache_aware",
           "the worker whose past requests share the longest text prefix with this one, if the match "
           "exceeds --cache-threshold (0.3); otherwise, and whenever loads differ by more than "
           "--balance-abs-threshold and --balance-rel-threshold, the least-loaded worker",
           "an approximate radix tree of request text per worker (not the engines' real cache)", True, True,
           "its whole tree: every prefix is placed again as if new, wherever the load says",
           "long shared prefixes (system prompts, few-shot examples, multi-turn chats)"),
    Policy("kv_aware", "kv_aware",
           "the worker that reports the most cached blocks for this request, from the engines' own "
           "KV-cache events (--kv-event-source, ZMQ), weighed against load",
           "the block hashes each engine announced", True, True,
           "its index until the engines' events (or a replay source) refill it",
           "when engines publish KV events and the router hashes blocks exactly as they do"),
    Policy("sticky_least_loaded", "sticky_least_loaded",
           "a new session goes to the least-loaded worker and stays there", "session → worker", True, True,
           "every session's placement", "agent sessions with explicit ids"),
)}


def policy_rows() -> list[dict]:
    """The catalogue as rows for a table (plain data)."""
    return [{"policy": p.name, "router flag": p.flag or "—", "picks": p.picks, "keeps": p.keeps,
             "load-aware": "yes" if p.load_aware else "no", "cache-aware": "yes" if p.cache_aware else "no",
             "a restart loses": p.restart_costs, "pick it for": p.pick_when} for p in POLICIES.values()]


# ---------------------------------------------------------------- vLLM's prefix-cache block hashes

def _sha256(value) -> bytes:
    """vllm/utils/hashing.py ``sha256``: SHA-256 of the object pickled with the highest protocol."""
    return hashlib.sha256(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)).digest()


def none_hash(seed: str | None = None) -> bytes:
    """The parent hash of a prompt's first block: ``sha256(seed)``, seed = PYTHONHASHSEED or the default."""
    return _sha256(DEFAULT_NONE_HASH_SEED if seed is None else seed)


def block_hashes(token_ids: Sequence[int], block_size: int, *, seed: str | None = None,
                 cache_salt: str | None = None) -> list[bytes]:
    """The hash of every full block of a prompt, chained as vLLM 0.32 chains them (sha256).

    ``seed`` stands for ``PYTHONHASHSEED`` (None: unset). ``cache_salt`` is the request's
    ``cache_salt`` field: vLLM adds it to the first block's extra keys, so salted requests
    share nothing with unsalted ones.
    """
    require(isinstance(block_size, int) and block_size > 0, f"block_size must be > 0, got {block_size!r}.",
            "Use the engine's --block-size (16 on GPUs, 128 on the CPU by default).")
    parent = none_hash(seed)
    out = []
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        extra = (("cache_salt", cache_salt),) if (start == 0 and cache_salt) else None
        parent = _sha256((parent, tuple(int(t) for t in token_ids[start:start + block_size]), extra))
        out.append(parent)
    return out


def shared_blocks(a: Sequence[bytes], b: Sequence[bytes]) -> int:
    """How many leading block hashes two prompts share: the blocks one can reuse from the other."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def cacheable_tokens(prompt_tokens: int, block_size: int) -> int:
    """The most prompt tokens one request can find cached: whole blocks, the last token always computed."""
    require(prompt_tokens >= 0 and block_size > 0, "prompt_tokens must be ≥ 0 and block_size > 0.",
            "Pass the prompt length and the engine's block size.")
    return max(prompt_tokens - 1, 0) // block_size * block_size
