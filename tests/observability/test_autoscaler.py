"""The autoscaling loop's own logic, tick by tick, on scripted metric readings.

The loop on the real queue of real engines, with the real actuator (an engine's cold start,
then its removal), is the observability lab's (notebooks/observability-lab.ipynb, checked by
its assertion cells in the strict build). Here the loop is stepped with a clock the test sets,
so each decision can be named; the reading source answers ``value(query)`` as
:class:`~llmserve.observability.prometheus.LocalPrometheus` does and records what it was asked.
"""
from __future__ import annotations

from llmserve.core.errors import ServerError
from llmserve.observability.autoscaler import Autoscaler, waiting_query
from llmserve.observability.scaling import Behavior, Controller


class Readings:
    """Answers the loop's queries from a script; ``None`` is an empty answer, an exception a failure."""

    def __init__(self, script):
        self.script, self.asked = list(script), []

    def value(self, query):
        self.asked.append(query)
        reading = self.script.pop(0)
        if isinstance(reading, Exception):
            raise reading
        return reading


class Recorded:
    """An actuator that records what the loop asks and reports it as done at once."""

    def __init__(self, replicas=1):
        self.replicas, self.asked = replicas, []

    def ready(self):
        return self.replicas

    def scale_to(self, replicas):
        if replicas != self.replicas:
            self.asked.append(replicas)
        self.replicas = replicas


def loop(script, behavior=Behavior(max_replicas=3, scale_down_window_s=3)):
    actuator = Recorded()
    return Autoscaler(Readings(script), actuator, Controller(1.0, behavior), waiting_query("vllm")), actuator


def test_a_queue_scales_up_then_back_after_the_scale_down_window():
    scaler, actuator = loop([6.0, 6.0, 0.0, 0.0, 0.0])
    for now in (0, 1, 2, 3, 6):
        scaler.tick(now)
    assert scaler.prometheus.asked == ['sum(vllm:num_requests_waiting{job="vllm"})'] * 5
    # 6 waiting for a target of 1 per replica asks for 6, capped at max_replicas; at t=3 the
    # window (3 s) still holds the proposal of t=1; by t=6 it has passed and the count drops.
    assert [t.decision.desired for t in scaler.ticks] == [3, 3, 3, 3, 1]
    assert actuator.asked == [3, 1] and [t.ready for t in scaler.ticks] == [3, 3, 3, 3, 1]


def test_an_empty_answer_or_a_failed_query_keeps_the_count():
    scaler, actuator = loop([None, ServerError("Prometheus did not answer.", "Start it."), 2.0])
    first, second, third = scaler.tick(0), scaler.tick(1), scaler.tick(2)
    assert first.decision.metric is None and first.decision.desired == 1
    assert second.decision.metric is None and scaler.errors == ["Prometheus did not answer."]
    assert third.decision.desired == 2 and actuator.asked == [2]
