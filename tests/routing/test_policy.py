"""The routing policies and vLLM's prefix-cache block hashing (llmserve/routing/policy.py).

The hashes are checked against vLLM 0.32's own ``hash_block_tokens`` (run in .venv-vllm), so the
page's claim "the same as vLLM" is a measured one; the pure properties are checked here directly.
"""
from __future__ import annotations

import json
import subprocess

import pytest

from llmserve.core.errors import InputError
from llmserve.routing import policy
from llmserve.world import mode

TOKENS = list(range(1, 300))


def test_every_router_flag_is_one_vllm_router_0_1_17_lists():
    # The --policy choices of `vllm-router --help` (0.1.17).
    choices = {"random", "round_robin", "cache_aware", "kv_aware", "power_of_two", "consistent_hash",
               "sticky_least_loaded"}
    flags = {p.flag for p in policy.POLICIES.values() if p.flag}
    assert flags == choices
    assert policy.POLICIES["service"].flag is None   # kube-proxy: not a router policy


def test_only_the_cache_aware_kinds_claim_to_use_the_cache():
    aware = {n for n, p in policy.POLICIES.items() if p.cache_aware}
    assert aware == {"consistent_hash", "cache_aware", "kv_aware", "sticky_least_loaded"}
    assert not policy.POLICIES["round_robin"].load_aware and policy.POLICIES["power_of_two"].load_aware
    rows = policy.policy_rows()
    assert len(rows) == len(policy.POLICIES) and {"policy", "a restart loses"} <= set(rows[0])


def test_only_full_blocks_get_a_hash():
    assert len(policy.block_hashes(TOKENS[:127], 128)) == 0
    assert len(policy.block_hashes(TOKENS[:128], 128)) == 1
    assert len(policy.block_hashes(TOKENS, 16)) == 299 // 16


def test_a_block_hash_names_the_whole_prefix_before_it():
    a = policy.block_hashes(TOKENS, 16)
    changed_first = [999] + TOKENS[1:]
    b = policy.block_hashes(changed_first, 16)
    # One token changed in block 0 changes every later hash, though the later tokens are equal.
    assert policy.shared_blocks(a, b) == 0 and not set(a) & set(b)
    changed_late = TOKENS[:40] + [999] + TOKENS[41:]
    c = policy.block_hashes(changed_late, 16)
    assert policy.shared_blocks(a, c) == 2          # blocks 0 and 1 (tokens 0-31) still match


def test_block_size_seed_and_salt_each_make_the_same_prompt_share_nothing():
    base = policy.block_hashes(TOKENS, 16)
    assert policy.shared_blocks(base, policy.block_hashes(TOKENS, 16)) == len(base)
    assert not set(base) & set(policy.block_hashes(TOKENS, 32))
    assert not set(base) & set(policy.block_hashes(TOKENS, 16, seed="1234"))
    assert not set(base) & set(policy.block_hashes(TOKENS, 16, cache_salt="tenant-a"))


def test_cacheable_tokens_keeps_the_last_prompt_token_for_the_engine():
    assert policy.cacheable_tokens(640, 128) == 512     # 640 - 1 = 639 -> 4 whole blocks
    assert policy.cacheable_tokens(641, 128) == 640
    assert policy.cacheable_tokens(0, 16) == 0
    with pytest.raises(InputError):
        policy.block_hashes(TOKENS, 0)


CASES = [(16, None), (128, None), (16, "tenant-a")]
VLLM_HASHES = """
import json, sys
from vllm.utils.hashing import sha256
from vllm.v1.core import kv_cache_utils as k
tokens, cases = json.loads(sys.argv[1])
k.init_none_hash(sha256)
result = []
for size, salt in cases:
    parent, out = None, []
    for start in range(0, len(tokens) - size + 1, size):
        extra = (("cache_salt", salt),) if (start == 0 and salt) else None
        parent = k.hash_block_tokens(sha256, parent, tokens[start:start + size], extra)
        out.append(bytes(parent).hex())
    result.append(out)
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def vllm_hashes() -> list[list[str]]:
    """vLLM's own hashes of TOKENS for every case, from one child Python (importing vLLM takes ~25 s)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}   # no PYTHONHASHSEED: the default seed
    proc = subprocess.run([str(mode.vllm_python()), "-c", VLLM_HASHES, json.dumps([TOKENS, CASES])],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.vllm
@pytest.mark.parametrize("case", range(len(CASES)))
def test_the_hashes_are_vllm_0_32s_own(vllm_hashes, case):
    size, salt = CASES[case]
    ours = [h.hex() for h in policy.block_hashes(TOKENS, size, cache_salt=salt)]
    assert ours == vllm_hashes[case] and len(ours) == 299 // size
