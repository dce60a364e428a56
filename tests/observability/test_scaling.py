"""The HPA's arithmetic and KEDA's step, against the documented behaviour (pure: times are given)."""
from __future__ import annotations

import math

import pytest

from llmserve.core.errors import InputError
from llmserve.observability import scaling
from llmserve.observability.scaling import Behavior, Controller, KedaScaler
from llmserve.world import manifests


# -- the formula ------------------------------------------------------------------------------
@pytest.mark.parametrize("current, value, target, expected", [
    (50, 90, 75, 60),      # the Kubernetes blog's example (HPA configurable tolerance, v1.33): 50 × 90/75
    (1, 200, 100, 2),      # the docs' "Algorithm details": 200m against 100m doubles
    (4, 50, 100, 2),       # half the target: half the replicas
    (10, 1.05, 1.0, 10),   # 5 % over the target: within the 0.1 tolerance, nothing changes
    (10, 0.91, 1.0, 10),   # 9 % under: still within
    (10, 1.2, 1.0, 12),    # 20 % over: scale
    (3, 0.7, 0.7, 3),      # exactly on target (and no float round-up to 4)
])
def test_desired_replicas_is_the_documented_formula(current, value, target, expected):
    assert scaling.desired_replicas(current, value, target) == expected


def test_the_average_value_form_proposes_ceil_total_over_target():
    # GetExternalPerPodMetricReplicas: usage / target per pod, rounded up.
    assert scaling.desired_for_total(1, 4.0, 1.0) == 4
    assert scaling.desired_for_total(2, 5.0, 2.0) == 3
    assert scaling.desired_for_total(4, 4.3, 1.0) == 4      # ratio 1.075: within tolerance
    assert scaling.desired_for_total(3, 0.0, 1.0) == 0      # min/max are applied later


def test_zero_replicas_and_bad_targets_are_refused():
    with pytest.raises(InputError, match="KEDA does the 0→1 step"):
        scaling.desired_replicas(0, 1, 1)
    with pytest.raises(InputError, match="target must be > 0"):
        scaling.desired_for_total(1, 1, 0)


# -- stabilisation and rate limits --------------------------------------------------------------
def run(controller: Controller, steps: list[tuple[float, float | None]], start: int = 1) -> list[int]:
    return [d.desired for d in scaling.replay(steps, controller, start)]


def test_scale_up_is_immediate_and_scale_down_waits_for_the_window():
    c = Controller(1.0, Behavior(min_replicas=1, max_replicas=4, scale_down_window_s=300))
    steps = [(0, 3.0)] + [(t, 0.0) for t in range(15, 300, 15)] + [(300, 0.0)]
    got = run(c, steps)
    assert got[0] == 3                                  # up at the first high reading
    assert set(got[1:-1]) == {3}                        # t=15…285: the proposal of t=0 is within 300 s
    assert got[-1] == 1                                 # t=300: horizontal.go keeps only t > now − window


def test_a_zero_window_follows_every_dip_and_flaps():
    bursts = [(t, 4.0 if (t // 4) % 2 == 0 else 0.0) for t in range(0, 64)]
    short = scaling.replay(bursts, Controller(1.0, Behavior(max_replicas=4, scale_down_window_s=0)))
    long = scaling.replay(bursts, Controller(1.0, Behavior(max_replicas=4, scale_down_window_s=20)))
    assert scaling.reversals(short) >= 10
    assert scaling.reversals(long) == 0 and {d.desired for d in long} == {4}


def test_the_default_scale_up_rate_is_double_or_four_pods_per_15_s():
    c = Controller(1.0, Behavior(min_replicas=1, max_replicas=20))
    first = c.step(0, 1, 20.0)
    assert (first.desired, first.reason) == (5, "scale-up rate limit")   # max(1 × 2, 1 + 4)
    assert c.step(10, 5, 20.0).desired == 5                               # same 15 s period
    assert c.step(16, 5, 20.0).desired == 10                              # next period: 5 × 2


def test_a_policy_of_one_pod_a_minute_adds_one_at_a_time():
    hpa = manifests.load_one("components/autoscaling-hpa/hpa.yaml")
    c = Controller(1.0, Behavior.from_hpa(hpa))
    assert [c.step(t, n, 10.0).desired for t, n in [(0, 1), (30, 2), (61, 2)]] == [2, 2, 3]


def test_min_and_max_bound_the_answer():
    c = Controller(1.0, Behavior(min_replicas=2, max_replicas=3, scale_down_window_s=0))
    assert c.step(0, 2, 50.0).desired == 3
    assert c.step(100, 3, 0.0).desired == 2


def test_a_missing_metric_changes_nothing():
    c = Controller(1.0, Behavior(max_replicas=4))
    d = c.step(0, 3, None)
    assert (d.desired, d.metric) == (3, None) and "ScalingActive=False" in d.reason
    assert c.step(1, 3, math.nan).desired == 3


def test_the_committed_hpa_reads_back_as_its_behaviour():
    b = Behavior.from_hpa(manifests.load_one("components/autoscaling-hpa/hpa.yaml"))
    assert (b.min_replicas, b.max_replicas) == (1, 4)
    assert (b.scale_up_window_s, b.scale_down_window_s) == (0, 600)
    assert b.scale_up_policies == (("Pods", 1, 60),) and b.scale_down_policies == (("Pods", 1, 300),)


def test_behaviour_defaults_are_kubernetes_defaults():
    b = Behavior()
    assert (b.scale_up_window_s, b.scale_down_window_s, b.tolerance) == (0, 300, 0.1)
    assert b.scale_up_policies == (("Percent", 100, 15), ("Pods", 4, 15))


# -- KEDA -------------------------------------------------------------------------------------
def sample(value: str) -> list[dict]:
    return [{"metric": {}, "value": [1.0, value]}]


def test_keda_reads_an_empty_answer_as_zero_unless_told_not_to():
    assert scaling.keda_reading([]) == 0.0
    assert scaling.keda_reading(sample("NaN")) == 0.0
    assert scaling.keda_reading(sample("+Inf")) == 0.0
    assert scaling.keda_reading([], ignore_null_values=False) is None
    assert scaling.keda_reading(sample("3")) == 3.0
    with pytest.raises(ValueError, match="several series"):
        scaling.keda_reading(sample("1") + sample("2"))


def test_keda_activates_from_zero_and_returns_there_after_the_cooldown():
    k = KedaScaler(threshold=1.0, activation_threshold=0.0, min_replicas=0, max_replicas=4, cooldown_s=300)
    assert k.step(0, 0, sample("0")).desired == 0           # not above the activation threshold
    assert k.step(10, 0, sample("2")).desired == 1          # active: 0 → 1, KEDA's own step
    assert k.step(20, 1, sample("3")).desired == 3          # the HPA's formula from 1 up
    assert k.step(200, 3, sample("0")).desired == 3         # the HPA's 300 s window holds it
    assert k.step(330, 3, sample("0")).desired == 0         # idle for ≥ cooldownPeriod: to zero


def test_the_empty_query_pitfall_scales_busy_replicas_to_zero():
    """A query that matches nothing (a typo, a renamed metric) reads as 0 and KEDA scales away a loaded fleet."""
    k = KedaScaler(threshold=1.0, min_replicas=0, max_replicas=4, cooldown_s=300)
    assert k.step(0, 2, sample("5")).desired == 4           # ceil(5 / 1) = 5, capped at maxReplicaCount
    assert k.step(100, 4, []).desired == 4                  # the window still holds the proposal of 5
    assert k.step(400, 4, []).desired == 0                  # "no load" for 300 s: zero replicas
    safe = KedaScaler(threshold=1.0, min_replicas=0, max_replicas=4, cooldown_s=300, ignore_null_values=False)
    safe.step(0, 2, sample("5"))
    assert safe.step(400, 4, []).desired == 4               # an error instead: the count stays


def test_cold_start_adds_its_parts():
    est = scaling.cold_start_s(10e9, 100e6, 5.6e9, 1e9, 30)
    assert est == {"pull_s": 100.0, "load_s": 5.6, "warmup_s": 30.0, "total_s": 135.6}
    assert scaling.cold_start_s(10e9, 100e6, 5.6e9, 1e9, 30, image_cached=True)["total_s"] == pytest.approx(35.6)
