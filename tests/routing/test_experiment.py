"""The routing lab's arithmetic, measured on real CPU vLLM engines behind the real vllm-router.

The lab's measured claims (cache-aware routing finds nearly what a sticky policy can and round
robin far less; round robin spreads 9 and 9, cache-aware keeps each tenant on one engine; a
router restart forgets where each prompt is) are the routing lab's assertion cells
(notebooks/routing-lab.ipynb), executed once per test run by the strict book build and read
by tests/book/test_notebooks.py. What is asserted there is what the engines' own counters say
(vllm:prefix_cache_queries/hits), never the tiny model's text. Why the margins cannot flake:
with the lab's sizes (test_workload) round robin sends each tenant to the other engine every
round (the burst arrives in tenant order and three tenants do not divide over two engines),
and each engine's 12 blocks cannot keep the prompts it saw two rounds ago, so it finds (almost)
nothing; cache-aware routing keeps each tenant on one engine, whose blocks hold its prompts, so
it finds all but each tenant's first request: the sticky rate of about 0.77 against round
robin's 0 to 0.1. Here: the plan behind those margins, from the engines' own token counts.
"""
from __future__ import annotations

import re

import pytest

from llmserve.routing import experiment
from llmserve.routing.workload import SharedPrefixWorkload
from tests.support import REPO

pytestmark = pytest.mark.vllm
W = SharedPrefixWorkload()


def test_the_cache_is_too_small_for_every_prompt_on_one_engine(fleet):
    plan = experiment.plan_for(experiment.endpoints_of(fleet), W, block_size=128, kv_cache_blocks=12)
    assert plan.prefix_blocks == 5 and plan.routing_matters, plan.text()
    # The page states the same arithmetic.
    page = re.sub(r"\s+", " ", (REPO / "book" / "routing.md").read_text())
    for phrase in (f"a system prompt fills {plan.prefix_blocks} full blocks and a running request "
                   f"{plan.request_blocks}", f"would need {plan.all_prefixes_blocks}",
                   f"needs {plan.share_blocks} while both run"):
        assert phrase in page, phrase
