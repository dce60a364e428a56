"""The fleet: real engines and a real vllm-router on loopback, grown, shrunk and always stopped.

The checks without engines run in a blink; the live ones share the session's fleet
(tests/routing/conftest.py).
"""
from __future__ import annotations

import pytest

from llmserve.core.errors import InputError
from llmserve.routing.fleet import EngineSettings, Fleet
from llmserve.serving.client import stream_chat


def test_settings_refuse_a_cache_that_cannot_hold_one_request():
    with pytest.raises(InputError, match="at least 8 blocks"):
        EngineSettings(kv_cache_blocks=4, max_model_len=1024).check()
    assert EngineSettings(kv_cache_blocks=12).kv_cache_bytes() == 12 * 128 * 1024    # 1 KiB per token
    assert EngineSettings(kv_cache_blocks=12, block_size=16).kv_cache_bytes() == 12 * 16 * 1024


def test_a_fleet_is_at_most_four_engines():
    with pytest.raises(InputError, match="between 1 and 4"):
        Fleet(5)


def test_engines_get_prefix_caching_the_render_endpoint_and_one_thread():
    engine = Fleet(2)._engine(EngineSettings(kv_cache_blocks=12))
    cmd = engine.command()
    assert "--enable-prefix-caching" in cmd and "--enable-scale-out" in cmd
    assert engine.environment()["OMP_NUM_THREADS"] == "1"      # one compute thread per engine
    off = Fleet(2)._engine(EngineSettings(kv_cache_blocks=12, prefix_caching=False, scale_out=False)).command()
    assert "--no-enable-prefix-caching" in off and "--enable-scale-out" not in off


@pytest.mark.vllm
def test_the_fleet_serves_through_the_router_from_loopback_engines(fleet):
    assert sorted(fleet.router.list_workers()) == sorted(fleet.engine_urls)
    assert all(u.startswith("http://127.0.0.1:") for u in [fleet.url, *fleet.engine_urls])
    for snap in fleet.engine_metrics().values():
        # The engines' own settings: 12 blocks of 128 tokens, prefix caching on, one model directory.
        assert snap.cache_config["num_gpu_blocks"] == "12" and snap.cache_config["block_size"] == "128"
        assert snap.cache_config["enable_prefix_caching"] == "True"
    assert len({e.model_dir for e in fleet.engines}) == 1


@pytest.mark.vllm
def test_the_fleet_grows_and_shrinks_while_the_router_runs(fleet):
    fleet.restart_router("round_robin")
    before = list(fleet.engine_urls)
    extra = fleet.add_engine(max_num_seqs=2)
    try:
        assert extra.url in fleet.router.list_workers() and len(fleet.engines) == 3
        assert extra.startup_s > 0 and fleet.engine_settings[extra.url].max_num_seqs == 2
        for _ in range(3):   # round robin: one of three requests lands on the new engine
            stream_chat(fleet.base_url, fleet.model, [{"role": "user", "content": "hi"}], max_tokens=2)
        assert fleet.router.processed().get(extra.url, 0) >= 1
    finally:
        fleet.remove_engine(extra)
    assert fleet.engine_urls == before and extra.url not in fleet.router.list_workers()
    assert not extra.group_alive()
