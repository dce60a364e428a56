"""The load test's bounds and request counts (no server: every bound is checked before any request)."""
from __future__ import annotations

import pytest

from llmserve.core.errors import InputError
from llmserve.serving.loadtest import MIN_REQUESTS, requests_for, run_load_test


@pytest.mark.parametrize("kwargs", [dict(levels=[0]), dict(levels=[100]), dict(levels=[]),
                                    dict(levels=[64, 64, 64]), dict(max_tokens=0), dict(max_duration_s=0),
                                    dict(warmup_requests=-1)])
def test_load_test_bounds(kwargs):
    args = dict(levels=[1, 2])
    args.update(kwargs)
    with pytest.raises(InputError):
        run_load_test("http://127.0.0.1:9/v1", "m", **args)


def test_load_test_refuses_non_loopback():
    with pytest.raises(InputError, match="loopback"):
        run_load_test("http://10.0.0.5:8000/v1", "m", [1])


def test_every_level_sends_enough_requests_for_its_p90():
    # The lab once printed p90 from 4 requests; now a level sends at least MIN_REQUESTS = 10.
    assert MIN_REQUESTS == 10 and [requests_for(c) for c in (1, 2, 4, 8, 16)] == [10, 10, 10, 16, 32]
    assert requests_for(4, 6) == 6 and requests_for(4, {4: 20}) == 20 and requests_for(1, {4: 20}) == 10
