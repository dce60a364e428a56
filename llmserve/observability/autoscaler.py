"""Live: the autoscaling lab's control loop — the HPA's formula on a real query, real engines started and stopped.

Used by notebooks/observability-lab.ipynb, notebooks/full-stack-lab.ipynb and tests/observability.
What stands in for what (book/observability.md says it in prose):

* the **loop** (:class:`Autoscaler`) is the HorizontalPodAutoscaler: every ``interval_s`` it asks
  Prometheus for the summed metric (by default the requests waiting in all engines), steps a
  :class:`~llmserve.observability.scaling.Controller` (formula, tolerance, stabilisation, rate
  limits, min/max) and sets the wanted replica count — the HPA writes ``spec.replicas`` of the
  Deployment's scale subresource;
* the **actuator** (:class:`FleetActuator`) is the Deployment controller, the scheduler and the
  kubelet: it starts a real CPU vLLM engine (the cold start: process start, model load, warm-up),
  registers it with the router (the Service's endpoints once the Pod is Ready) and tells
  Prometheus to scrape it (what the PodMonitor does by itself); scaling down deregisters the
  newest engine first and then stops it, its requests in flight drained by vLLM's
  ``--shutdown-timeout`` as in the Deployment.

The loop and the actuator run in two threads, as the HPA and the Deployment controller are two
controllers: the loop keeps looking while an engine starts. Everything it saw and did is kept
(:attr:`Autoscaler.ticks`, :attr:`FleetActuator.actions`) for the plots.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from llmserve.core.errors import CourseError
from llmserve.observability.prometheus import LocalPrometheus
from llmserve.observability.scaling import Controller, Decision
from llmserve.routing.fleet import Fleet


def waiting_query(job: str) -> str:
    """The metric the lab scales on: requests waiting, summed over the job's engines."""
    return f'sum(vllm:num_requests_waiting{{job="{job}"}})'


@dataclass(frozen=True)
class Tick:
    """One look of the loop: when, what it read, what the controller decided, what was ready."""

    time: float                  # time.time()
    ready: int                   # engines serving behind the router at that moment
    decision: Decision


@dataclass
class Action:
    """One change the actuator made: a start (cold) or a stop, with its timings."""

    direction: str               # "up" or "down"
    wanted_at: float             # time.time() when the loop asked for it
    done_at: float | None = None
    engine_url: str = ""
    startup_s: float | None = None   # the engine's own start-up (process start → /health)
    error: str = ""

    @property
    def lag_s(self) -> float | None:
        """From the loop's decision to the change being in place (registered, or stopped)."""
        return None if self.done_at is None else self.done_at - self.wanted_at


class Actuator(Protocol):
    """What the loop drives: something with a replica count it can ask to change."""

    def ready(self) -> int: ...

    def scale_to(self, replicas: int) -> None: ...


class FleetActuator:
    """Reconciles a :class:`~llmserve.routing.fleet.Fleet` towards the wanted count, one engine at a time."""

    def __init__(self, fleet: Fleet, prometheus: LocalPrometheus, job: str, router_job: str | None = None) -> None:
        self.fleet, self.prometheus, self.job, self.router_job = fleet, prometheus, job, router_job
        self.actions: list[Action] = []
        self._wanted = len(fleet.engines)
        self._wanted_at = time.time()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def ready(self) -> int:
        return len(self.fleet.engines)

    def scale_to(self, replicas: int) -> None:
        with self._changed:
            if replicas != self._wanted:
                self._wanted, self._wanted_at = replicas, time.time()
                self._changed.notify()

    def start(self) -> "FleetActuator":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="lab-actuator", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 120) -> None:
        """Stop reconciling (a start in progress finishes first: an engine is never left half-started)."""
        self._stop.set()
        with self._changed:
            self._changed.notify()
        if self._thread:
            self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._changed:
                if self._wanted == self.ready():
                    self._changed.wait(0.5)
                    continue
                wanted_at, up = self._wanted_at, self._wanted > self.ready()
            self._one_step(up, wanted_at)

    def _one_step(self, up: bool, wanted_at: float) -> None:
        action = Action("up" if up else "down", wanted_at)
        self.actions.append(action)
        try:
            if up:
                engine = self.fleet.add_engine()
                action.engine_url, action.startup_s = engine.url, engine.startup_s
            else:
                action.engine_url = self.fleet.engine_urls[-1]
                self.fleet.remove_engine()
            self.prometheus.set_targets(self.job, self.fleet.engine_urls)
        except CourseError as err:
            action.error = err.what
            self._stop.wait(2)          # do not hammer a failing start
        action.done_at = time.time()


class Autoscaler:
    """The loop: every ``interval_s``, read ``query`` from Prometheus, step ``controller``, tell the actuator."""

    def __init__(self, prometheus: LocalPrometheus, actuator: Actuator, controller: Controller, query: str, *,
                 interval_s: float = 1.0, max_ticks: int = 3600,
                 on_tick: Callable[[Tick], None] | None = None) -> None:
        self.prometheus, self.actuator, self.controller = prometheus, actuator, controller
        self.query, self.interval_s, self.max_ticks = query, interval_s, max_ticks
        self.on_tick = on_tick
        self.ticks: list[Tick] = []
        self.errors: list[str] = []
        self.wanted = actuator.ready()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def read(self) -> float | None:
        """The metric now; None when the query answers nothing (or Prometheus fails): no decision."""
        try:
            return self.prometheus.value(self.query)
        except CourseError as err:
            self.errors.append(err.what)
            return None

    def tick(self, now: float | None = None) -> Tick:
        now = time.time() if now is None else now
        decision = self.controller.step(now, self.wanted, self.read())
        self.wanted = decision.desired
        self.actuator.scale_to(self.wanted)
        tick = Tick(now, self.actuator.ready(), decision)
        self.ticks.append(tick)
        if self.on_tick:
            self.on_tick(tick)
        return tick

    def start(self) -> "Autoscaler":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="lab-autoscaler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.ticks) < self.max_ticks:
            started = time.monotonic()
            self.tick()
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.interval_s + 15)

    def __enter__(self) -> "Autoscaler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
