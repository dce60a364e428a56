"""The lab for real: one CPU engine behind the router, Prometheus scraping both with the course's rules,
load through the router. Every dashboard query must answer; the control loop must act on the real queue.

One fleet for the module (an engine takes 20-90 s to start on two busy cores); the loop's
actuator is a recorder here (a real engine start is the notebook's: notebooks/observability-lab.ipynb
asserts its cold start), so the loop is tested on the real metric without paying a cold start.
"""
from __future__ import annotations

import math
import time

import pytest

from llmserve.core.errors import InputError
from llmserve.core.waiting import wait_until
from llmserve.observability import catalogue, scaling
from llmserve.observability.autoscaler import Autoscaler, waiting_query
from llmserve.observability.lab import LabSettings, ObservabilityLab, messages_for
from llmserve.observability.load import Load
from llmserve.observability.scaling import Behavior, Controller
from llmserve.observability.workload import Phase

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def lab(prometheus_bin):
    with ObservabilityLab(LabSettings(engines=1), progress=None) as running:
        running.observe(Phase("warm", 5, 12))      # histograms with observations in the last minute
        yield running


class Recorded:
    """An actuator that records what the loop asks and reports it as done at once."""

    def __init__(self) -> None:
        self.replicas, self.asked = 1, []

    def ready(self) -> int:
        return self.replicas

    def scale_to(self, replicas: int) -> None:
        if replicas != self.replicas:
            self.asked.append(replicas)
        self.replicas = replicas


def test_prometheus_scrapes_the_engine_and_the_router(lab):
    assert {(t["job"], t["health"]) for t in lab.prometheus.targets()} == {(lab.job, "up"), ("vllm-router", "up")}
    ok = lab.last_load["ok"]

    def counted() -> tuple[bool, float]:
        # The load's last requests reach the counter at the next scrape, not at once.
        routed = lab.prometheus.query("sum(vllm_router_processed_requests_total)")
        value = routed[0].value if routed else 0.0
        return value >= ok, value

    waited = wait_until(counted, timeout_s=10 * lab.settings.scrape_interval_s, interval_s=0.5)
    assert ok > 0 and waited.done, f"the router counted {waited.status:g} of {ok} requests after {waited.elapsed_s:.0f} s"


def test_every_dashboard_query_answers_while_load_runs(lab):
    with lab.load(clients=4) as load:
        load.set_phase(Phase("dashboard", 4, 1))
        time.sleep(6)
        board = catalogue.dashboard_queries(catalogue.load_dashboard())
        answers = {q.expr: lab.prometheus.query(q.expr) for q in board}
    empty = [expr for expr, samples in answers.items() if not samples]
    assert not empty, empty
    latency = [expr for expr in answers if "seconds" in expr]
    assert latency and all(any(math.isfinite(s.value) for s in answers[e]) for e in latency)


def test_the_gpu_dashboard_queries_parse_and_find_no_exporter(lab):
    for q in catalogue.dashboard_queries(catalogue.load_dashboard(catalogue.GPU_DASHBOARD)):
        assert lab.prometheus.query(q.expr) == []          # valid PromQL (no error), no DCGM here


def test_the_recording_rules_run_on_the_engines_series(lab):
    assert {r["health"] for g in lab.prometheus.rule_groups() for r in g["rules"]} == {"ok"}
    [up] = lab.prometheus.query("job:vllm_replicas_up:sum")
    assert (up.labels["job"], up.value) == (lab.job, 1.0)
    assert lab.prometheus.query("instance:vllm_prefix_cache_hit:ratio_1m")[0].value > 0.3


def test_the_loop_scales_on_the_real_queue_and_back(lab):
    """Six in flight on one replica of four sequences: requests wait, the loop asks for more; then it settles."""
    actuator = Recorded()
    loop = Autoscaler(lab.prometheus, actuator, Controller(1.0, Behavior(max_replicas=3, scale_down_window_s=3)),
                      waiting_query(lab.job), interval_s=0.5)
    with lab.load(clients=6) as load:
        load.set_phase(Phase("high", 6, 1))
        with loop:
            deadline = time.monotonic() + 40
            while not actuator.asked and time.monotonic() < deadline:
                time.sleep(0.5)
            load.set_phase(Phase("idle", 0, 1))
            time.sleep(8)
    assert actuator.asked and actuator.asked[0] > 1, [t.decision for t in loop.ticks][-5:]
    assert actuator.replicas == 1 and loop.ticks[-1].decision.metric == 0.0
    assert max(t.decision.metric or 0 for t in loop.ticks) >= 1


def test_an_empty_query_is_what_keda_reads_as_zero(lab):
    typo = waiting_query(lab.job).replace("waiting", "waitng")
    assert lab.prometheus.raw_result(typo) == []
    assert scaling.keda_reading(lab.prometheus.raw_result(typo)) == 0.0
    assert scaling.keda_reading(lab.prometheus.raw_result(waiting_query(lab.job))) is not None


def test_the_load_stays_within_its_request_budget(lab):
    with Load(lab.fleet.base_url, lab.fleet.model, clients=3, messages=messages_for, max_tokens=8,
              max_requests=5) as load:
        load.set_phase(Phase("burst", 3, 1))
        time.sleep(8)
    assert load.summary()["requests"] == 5


def test_the_load_refuses_a_non_loopback_url():
    with pytest.raises(InputError, match="loopback"):
        Load("http://10.0.0.1:8000/v1", "m")
