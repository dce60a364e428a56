"""Fixtures of the routing tests: the router binary, and one fleet shared by the live tests.

The fleet (two CPU vLLM engines behind vllm-router) starts once per test session: starting
engines is what costs time (30-90 s on two busy cores), sending the workload a few seconds.
Outside CI a missing router skips the live tests; in CI (scripts/setup.sh installs it) it fails.
"""
from __future__ import annotations

import os

import pytest

from llmserve.routing.fleet import EngineSettings, Fleet, router_binary

#: The lab's fleet: a cache too small for every tenant's prompt on one engine (see test_experiment).
LAB_SETTINGS = EngineSettings(kv_cache_blocks=12)


@pytest.fixture(scope="session")
def router_bin():
    path = router_binary()
    if not path.exists():
        message = f"no vllm-router at {path} (scripts/setup.sh installs it into .venv-router)"
        if os.environ.get("CI"):
            pytest.fail(message + "; in CI a missing router is a failure, not a skip")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def fleet(router_bin):
    with Fleet(2, policy="round_robin", settings=LAB_SETTINGS) as f:
        yield f
