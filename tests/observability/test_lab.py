"""The observability lab's load generator on real engines, and its bounds.

The lab itself (one CPU engine per replica behind the router, Prometheus scraping both with
the course's rules, every dashboard query answering under load, the recording rules on the
engines' series, the control loop scaling on the real queue and back, a cold start) is
checked by the lab's own assertion cells (notebooks/observability-lab.ipynb), executed once
per test run by the strict book build and read by tests/book/test_notebooks.py. What the
notebook cannot show is tested here, on the session's router fleet (tests/conftest.py).
"""
from __future__ import annotations

import time

import pytest

from llmserve.core.errors import InputError
from llmserve.observability.lab import messages_for
from llmserve.observability.load import Load
from llmserve.observability.workload import Phase


@pytest.mark.vllm
def test_the_load_stays_within_its_request_budget(fleet):
    with Load(fleet.base_url, fleet.model, clients=3, messages=messages_for, max_tokens=8,
              max_requests=5) as load:
        load.set_phase(Phase("burst", 3, 1))
        time.sleep(8)
    summary = load.summary()
    assert summary["requests"] == 5 and summary["errors"] == 0, summary


def test_the_load_refuses_a_non_loopback_url():
    with pytest.raises(InputError, match="loopback"):
        Load("http://10.0.0.1:8000/v1", "m")
