"""The rising and falling load, as phases (pure)."""
from __future__ import annotations

import pytest

from llmserve.core.errors import InputError
from llmserve.observability import workload
from llmserve.observability.workload import Phase


def test_a_steady_phase_keeps_its_concurrency():
    p = Phase("high", 6, 20)
    assert [p.concurrency_at(t) for t in (0, 5, 19.9)] == [6, 6, 6]


def test_a_bursty_phase_alternates_on_and_off():
    p = Phase("bursts", 6, 30, on_s=3, off_s=5)
    assert [p.concurrency_at(t) for t in (0, 2.9, 3, 7.9, 8, 10.9, 11)] == [6, 6, 0, 0, 6, 6, 0]


def test_the_lab_profile_rises_bursts_and_falls():
    profile = workload.rise_and_fall(low=1, high=6)
    assert [p.name for p in profile.phases] == ["low", "high", "bursts", "cool"]
    assert [p.concurrency for p in profile.phases] == [1, 6, 6, 1]
    assert profile.phase("bursts").bursty and profile.phase("high").until and profile.phase("cool").until
    assert profile.max_concurrency == 6
    assert profile.longest_s == 8 + 150 + 30 + 90


@pytest.mark.parametrize("kwargs, match", [
    ({"concurrency": 99, "min_s": 1}, "between 0 and"),
    ({"concurrency": 1, "min_s": 0}, "0 < min_s"),
    ({"concurrency": 1, "min_s": 10, "max_s": 5}, "min_s ≤ max_s"),
    ({"concurrency": 1, "min_s": 10, "on_s": 3}, "both on_s > 0 and off_s > 0"),
])
def test_bad_phases_are_refused(kwargs, match):
    with pytest.raises(InputError, match=match):
        Phase("x", **kwargs)
