"""Live: the observability lab on this machine — engines behind the router, a real Prometheus, runs of load.

Used by notebooks/observability-lab.ipynb, notebooks/full-stack-lab.ipynb (its local form) and
tests/observability. Typical use::

    lab = ObservabilityLab(LabSettings(engines=2)).start()   # fleet + Prometheus, rules loaded
    window = lab.observe(Phase("steady", 6, 30))            # 30 s of load; (start, end) in unix seconds
    lab.series("ttft_p95", *window)                          # Prometheus range query, by name
    run = run_autoscaling(lab, rise_and_fall(), Behavior(min_replicas=1, max_replicas=2,
                          scale_down_window_s=15), target_per_replica=1.0)
    lab.stop()                                               # also at interpreter exit

The engines are the routing chapter's (:class:`~llmserve.routing.fleet.Fleet`): the tiny model
on the CPU, prefix caching on, a KV cache of a few blocks and few sequences per batch, so that a
handful of requests in flight already fill a replica, queue and preempt. Prometheus scrapes each
engine's ``/metrics`` as the job the PodMonitor would name (:func:`~llmserve.observability.alerts.engine_job`)
and the router's metrics as :data:`ROUTER_JOB`, every second, with the course's rules loaded.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from llmserve.core.errors import require
from llmserve.core.waiting import wait_until
from llmserve.observability import alerts, catalogue
from llmserve.observability.autoscaler import Action, Autoscaler, FleetActuator, Tick, waiting_query
from llmserve.observability.load import Load
from llmserve.observability.prometheus import LocalPrometheus, Series
from llmserve.observability.scaling import Behavior, Controller
from llmserve.observability.workload import Phase, Profile
from llmserve.routing.fleet import EngineSettings, Fleet

#: The router's scrape job (its Pods' app.kubernetes.io/name in manifests/components/router).
ROUTER_JOB = alerts.router_job()
Progress = Callable[[str], None]

#: A system prompt every request shares, then a question of its own. With the tiny model's tokenizer the
#: system prompt is about 170 tokens: one full block of 128 that prefix caching can share, and a partial one.
SHARED_PROMPT = ("You are the on-call assistant of a small team that serves language models with vLLM on "
                 "Kubernetes. Answer briefly, name the object and the field, and give one kubectl command. "
                 "Prefer the smallest change that fixes the problem, and say how to check that it worked.")
QUESTIONS = ("Why is my Pod Pending?", "Why does the Service have no endpoints?", "Why is the claim unbound?",
             "Why was the container OOMKilled?", "Why does /v1/models answer 401?", "Why is TTFT so high?")


def messages_for(number: int) -> list[dict]:
    """Request ``number``'s chat: the shared system prompt, one of six questions, and its number."""
    return [{"role": "system", "content": SHARED_PROMPT},
            {"role": "user", "content": f"{QUESTIONS[number % len(QUESTIONS)]} (ticket {number})"}]


@dataclass(frozen=True)
class LabSettings:
    """The lab's fleet and Prometheus."""

    engines: int = 2
    policy: str = "round_robin"       # spreads requests evenly: every replica shows load
    engine: EngineSettings = field(default_factory=lambda: EngineSettings(
        # A request is ~220 prompt tokens + 112 generated: 2 blocks at admission, 3 at the end, so four in
        # flight outgrow the 6 blocks and vLLM preempts; more than four wait.
        kv_cache_blocks=6, max_model_len=384, max_num_seqs=4,
        # vLLM drains requests in flight for up to 20 s on SIGTERM, as the Deployment's --shutdown-timeout.
        extra_args=("--shutdown-timeout", "20")))
    scrape_interval_s: float = 1.0
    max_tokens: int = 112
    startup_timeout_s: float = 60.0


class ObservabilityLab:
    """The fleet and the Prometheus scraping it (see the module docstring)."""

    def __init__(self, settings: LabSettings | None = None, progress: Progress | None = print) -> None:
        self.settings = settings or LabSettings()
        self.progress = progress
        self.job = alerts.engine_job()
        self.fleet: Fleet | None = None
        self.prometheus: LocalPrometheus | None = None
        self.last_load: dict = {}

    def _say(self, text: str) -> None:
        if self.progress:
            self.progress(text)

    def start(self) -> "ObservabilityLab":
        """Prometheus, then the fleet, then Prometheus told where the fleet is (everything stopped on failure)."""
        try:
            self.start_prometheus()
            self.start_fleet()
        except BaseException:
            self.stop()
            raise
        return self

    def start_prometheus(self) -> LocalPrometheus:
        s = self.settings
        if self.prometheus is None:
            self.prometheus = LocalPrometheus([self.job, ROUTER_JOB], rule_files=[alerts.rules_path()],
                                              scrape_interval_s=s.scrape_interval_s).start()
            self._say(f"Prometheus {self.prometheus.url}: scrapes every {s.scrape_interval_s:g} s, "
                      f"rules of {alerts.RULES_FILE} loaded")
        if self.fleet is not None:
            self._watch_fleet()
        return self.prometheus

    def start_fleet(self) -> Fleet:
        s = self.settings
        if self.fleet is None:
            self.fleet = Fleet(engines=s.engines, policy=s.policy, settings=s.engine, progress=self._say).start()
        if self.prometheus is not None:
            self._watch_fleet()
        return self.fleet

    def _watch_fleet(self) -> None:
        self.retarget()
        self.prometheus.wait_for_targets(len(self.fleet.engines) + 1, timeout_s=self.settings.startup_timeout_s)
        self._say(f"Prometheus scrapes {len(self.fleet.engines)} engine(s) as job {self.job!r} "
                  f"and the router as {ROUTER_JOB!r}")

    def retarget(self) -> None:
        """Tell Prometheus the fleet's current engines and router (after any change)."""
        self.prometheus.set_targets(self.job, self.fleet.engine_urls)
        self.prometheus.set_targets(ROUTER_JOB, [self.fleet.router_metrics_url.removesuffix("/metrics")])

    def stop(self) -> None:
        if self.fleet is not None:
            self.fleet.stop()
        if self.prometheus is not None:
            self.prometheus.stop()

    def __enter__(self) -> "ObservabilityLab":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- load and what Prometheus saw
    def load(self, clients: int = 8) -> Load:
        return Load(self.fleet.base_url, self.fleet.model, clients=clients, messages=messages_for,
                    max_tokens=self.settings.max_tokens)

    def observe(self, phase: Phase) -> tuple[float, float]:
        """Run one phase of load for its ``min_s``; returns its (start, end) in unix seconds."""
        with self.load(clients=max(1, phase.concurrency)) as load:
            start = time.time()
            load.set_phase(phase)
            time.sleep(phase.min_s)
        self.last_load = load.summary()
        return start, time.time()

    def series(self, name: str, start: float, end: float, step_s: float = 1.0, window: str = "10s") -> list[Series]:
        """One of :func:`catalogue.lab_queries` (or any PromQL) over a time range."""
        expr = catalogue.lab_queries(window).get(name, name)
        return self.prometheus.query_range(expr, start, end, step_s)


# --------------------------------------------------------------------------- the autoscaling run

@dataclass
class ScalingRun:
    """What one autoscaling run saw and did (plain data for the plots and the assertions)."""

    start: float
    end: float
    phases: list[tuple[float, str]]
    ticks: list[Tick]
    actions: list[Action]
    load: dict
    requests: list[dict]
    behavior: Behavior
    target_per_replica: float
    first_served: dict = field(default_factory=dict)     # engine URL → time.time() of its first finished request

    def cold_starts(self) -> list[dict]:
        """Per scale-up: decision → engine healthy and registered → first request finished on it."""
        out = []
        for a in self.actions:
            if a.direction != "up" or a.error:
                continue
            served = self.first_served.get(a.engine_url)
            out.append({"engine": a.engine_url, "engine_startup_s": a.startup_s, "decision_to_ready_s": a.lag_s,
                        "decision_to_first_served_s": None if served is None else served - a.wanted_at})
        return out


def _served_by(lab: ObservabilityLab, engine_url: str) -> float:
    """Requests the engine has finished, from Prometheus (0 before its first scrape)."""
    return lab.prometheus.value(_served_expr(engine_url), default=0.0) or 0.0


def _served_expr(engine_url: str) -> str:
    return f'sum(vllm:request_success_total{{instance="{engine_url.split("//", 1)[-1]}"}})'


def first_served(lab: ObservabilityLab, engine_url: str, start: float, end: float) -> float | None:
    """When Prometheus first saw the engine with a finished request (to the scrape interval)."""
    for series in lab.prometheus.query_range(_served_expr(engine_url), start, end, lab.settings.scrape_interval_s):
        for t, v in series.points:
            if v > 0:
                return t
    return None


def run_autoscaling(lab: ObservabilityLab, profile: Profile, behavior: Behavior, target_per_replica: float = 1.0,
                    interval_s: float = 1.0, progress: Progress | None = print) -> ScalingRun:
    """Drive the profile's phases through the router while the loop scales the fleet; everything stopped after.

    A phase with ``until`` ends once its condition holds (after ``min_s``, at most ``max_s``): the
    high phase once a replica the loop added has finished a request, the cool phase once the loop
    has scaled back to ``min_replicas`` and the actuator has stopped the engine.
    """
    require(behavior.max_replicas <= 4, "The lab runs at most 4 engines on two cores.", "Use max_replicas ≤ 4.")
    actuator = FleetActuator(lab.fleet, lab.prometheus, lab.job)
    loop = Autoscaler(lab.prometheus, actuator, Controller(target_per_replica, behavior), waiting_query(lab.job),
                      interval_s=interval_s)

    def new_replica_served() -> bool:
        return any(a.direction == "up" and a.done_at and not a.error and _served_by(lab, a.engine_url) > 0
                   for a in actuator.actions)

    def scaled_down() -> bool:
        return loop.wanted == behavior.min_replicas and actuator.ready() == behavior.min_replicas

    until = {"high": new_replica_served, "cool": scaled_down}
    load = lab.load(clients=profile.max_concurrency)
    start = time.time()
    actuator.start()
    try:
        with load, loop:
            for phase in profile.phases:
                load.set_phase(phase)
                if progress:
                    progress(f"{time.time() - start:5.0f} s  phase {phase.name!r}: {phase.concurrency} in flight"
                             + (f" in bursts of {phase.on_s:g} s every {phase.on_s + phase.off_s:g} s"
                                if phase.bursty else "") + (f", until {phase.until}" if phase.until else ""))
                hold_phase(phase, until.get(phase.name))
    finally:
        actuator.stop()
        lab.retarget()
    end = time.time()
    served = {a.engine_url: first_served(lab, a.engine_url, a.wanted_at, end)
              for a in actuator.actions if a.direction == "up" and not a.error}
    return ScalingRun(start, end, load.phases, list(loop.ticks), list(actuator.actions), load.summary(),
                      list(load.results), behavior, target_per_replica, served)


def hold_phase(phase: Phase, condition: Callable[[], bool] | None, poll_s: float = 0.5) -> None:
    """Wait out a phase: ``min_s``, then until ``condition`` holds (bounded by ``max_s``)."""
    time.sleep(phase.min_s)
    if condition is not None and phase.max_s is not None:
        wait_until(lambda: (condition(), None), timeout_s=phase.max_s - phase.min_s, interval_s=poll_s)


def waiting_series(lab: ObservabilityLab, run: ScalingRun) -> list[tuple[float, float]]:
    """The queue the loop scaled on, as Prometheus recorded it over the run (one point a scrape): for replays."""
    found = lab.prometheus.query_range(waiting_query(lab.job), run.start, run.end, lab.settings.scrape_interval_s)
    return list(found[0].points) if found else []
