"""Pure rules of the autoscaling chapter: the HPA's formula, tolerance, stabilisation, rate limits; KEDA's 0↔1.

Used by book/observability.md, notebooks/observability-lab.ipynb, notebooks/full-stack-lab.ipynb
and the live loop :mod:`llmserve.observability.autoscaler`. Layer: pure rules (no clock, no I/O:
every time is passed in, in seconds).

What the Kubernetes HorizontalPodAutoscaler does each sync period (15 s by default,
``--horizontal-pod-autoscaler-sync-period``), as documented in "Horizontal Pod Autoscaling"
(kubernetes.io/docs/concepts/workloads/autoscaling/horizontal-pod-autoscale/, "Algorithm details")
and implemented in ``pkg/controller/podautoscaler`` (``replica_calculator.go``, ``horizontal.go``):

1. **Formula**: ``desiredReplicas = ceil(currentReplicas × currentMetricValue / desiredMetricValue)``.
   For a target per replica (``AverageValue``, what KEDA's Prometheus trigger uses by default) the
   controller sums the metric and proposes ``ceil(total / targetPerReplica)``
   (``GetExternalPerPodMetricReplicas``): the same thing, said per replica.
2. **Tolerance**: when the ratio ``current / desired`` is within 0.1 of 1.0 nothing changes
   (``--horizontal-pod-autoscaler-tolerance``, default 0.1).
3. **Stabilisation** (``stabilizeRecommendationWithBehaviors``): every proposal is remembered with
   its time; the controller applies the *highest* proposal of the last ``scaleDown`` window
   (default 300 s) and the *lowest* of the last ``scaleUp`` window (default 0 s), so it scales
   down only when the load has stayed low for the whole window, and up at once.
4. **Rate limits** (``convertDesiredReplicasWithBehaviorRate``): by default at most double, or
   4 Pods more, per 15 s up (the larger: ``selectPolicy: Max``), and anything down per 15 s;
   then ``minReplicas``/``maxReplicas``.
5. A metric that cannot be read changes nothing: the HPA keeps the replica count and sets the
   condition ``ScalingActive=False`` (``FailedGetExternalMetric``).

KEDA (keda.sh/docs, "ScaledObject specification" and the Prometheus scaler,
``pkg/scalers/prometheus_scaler.go``) creates and feeds such an HPA for 1…N replicas, and does the
0↔1 step itself: a trigger is *active* while its value is **above** ``activationThreshold``; with
``minReplicaCount: 0`` the workload goes to zero once no trigger has been active for
``cooldownPeriod`` (300 s by default), and back to one as soon as one is. Its Prometheus trigger
reads an **empty** answer, NaN or ±Inf as **0** unless ``ignoreNullValues: "false"`` — the pitfall
of a query that matches nothing (a renamed metric, a lost target) being read as "no load".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from llmserve.core.errors import require

#: ``--horizontal-pod-autoscaler-tolerance`` (kube-controller-manager), default 0.1.
HPA_TOLERANCE = 0.1
#: ``behavior.scaleDown.stabilizationWindowSeconds`` default
#: (``--horizontal-pod-autoscaler-downscale-stabilization``).
SCALE_DOWN_WINDOW_S = 300.0
#: ``behavior.scaleUp.stabilizationWindowSeconds`` default.
SCALE_UP_WINDOW_S = 0.0
#: ``--horizontal-pod-autoscaler-sync-period`` default: how often the HPA looks.
HPA_SYNC_PERIOD_S = 15.0
#: KEDA ``pollingInterval`` and ``cooldownPeriod`` defaults (ScaledObject specification).
KEDA_POLLING_INTERVAL_S = 30.0
KEDA_COOLDOWN_PERIOD_S = 300.0

#: The HPA's default rate policies (HPAScalingRules): (type, value, periodSeconds).
DEFAULT_SCALE_UP_POLICIES = (("Percent", 100, 15), ("Pods", 4, 15))
DEFAULT_SCALE_DOWN_POLICIES = (("Percent", 100, 15),)


# --------------------------------------------------------------------------- the formula

def usage_ratio(current_replicas: int, total: float, target_per_replica: float) -> float:
    """``total / (target × replicas)``: 1.0 means every replica carries exactly its target."""
    require(target_per_replica > 0, f"The target must be > 0, got {target_per_replica!r}.",
            "Use e.g. 1 (request waiting per replica) or 0.8 (KV-cache usage).")
    require(current_replicas > 0, f"current_replicas must be > 0, got {current_replicas!r}.",
            "The HPA never computes from zero replicas: KEDA does the 0→1 step (keda_step).")
    return total / (target_per_replica * current_replicas)


def desired_replicas(current_replicas: int, current_value: float, target_value: float,
                     tolerance: float = HPA_TOLERANCE) -> int:
    """``ceil(currentReplicas × currentValue / targetValue)``, or ``currentReplicas`` within the tolerance.

    ``current_value`` is the per-replica average (what the HPA compares with its target).
    """
    require(target_value > 0, f"The target must be > 0, got {target_value!r}.", "Use e.g. 1.")
    require(current_replicas > 0, f"current_replicas must be > 0, got {current_replicas!r}.",
            "The HPA never computes from zero replicas: KEDA does the 0→1 step (keda_step).")
    ratio = current_value / target_value
    if abs(1.0 - ratio) <= tolerance:
        return current_replicas
    # The small epsilon keeps 3 × (0.7 / 0.7) from becoming 3.0000000000000004 → 4.
    return max(0, math.ceil(current_replicas * ratio - 1e-9))


def desired_for_total(current_replicas: int, total: float, target_per_replica: float,
                      tolerance: float = HPA_TOLERANCE) -> int:
    """The ``AverageValue`` form: ``ceil(total / targetPerReplica)``, unless within the tolerance."""
    if abs(1.0 - usage_ratio(current_replicas, total, target_per_replica)) <= tolerance:
        return current_replicas
    return max(0, math.ceil(total / target_per_replica - 1e-9))


# --------------------------------------------------------------------------- the behaviour

@dataclass(frozen=True)
class Behavior:
    """What an HPA's ``spec`` says about how fast it may move (defaults are Kubernetes')."""

    min_replicas: int = 1
    max_replicas: int = 10
    scale_up_window_s: float = SCALE_UP_WINDOW_S
    scale_down_window_s: float = SCALE_DOWN_WINDOW_S
    tolerance: float = HPA_TOLERANCE
    scale_up_policies: tuple = DEFAULT_SCALE_UP_POLICIES
    scale_down_policies: tuple = DEFAULT_SCALE_DOWN_POLICIES

    def __post_init__(self) -> None:
        require(1 <= self.min_replicas <= self.max_replicas,
                f"Need 1 ≤ min_replicas ≤ max_replicas, got {self.min_replicas} and {self.max_replicas}.",
                "An HPA's minReplicas is at least 1 (scale to zero is KEDA's step).")
        require(self.scale_up_window_s >= 0 and self.scale_down_window_s >= 0,
                "Stabilisation windows are ≥ 0 seconds.", "Use 0 (no stabilisation) or e.g. 300.")
        for kind, value, period in self.scale_up_policies + self.scale_down_policies:
            require(kind in ("Pods", "Percent") and value > 0 and period > 0,
                    f"Not a scaling policy: {(kind, value, period)!r}.",
                    "Use ('Pods', n, seconds) or ('Percent', p, seconds).")

    @classmethod
    def from_hpa(cls, hpa: dict) -> "Behavior":
        """The behaviour an ``autoscaling/v2`` HorizontalPodAutoscaler object asks for."""
        spec = hpa.get("spec") or {}
        behavior = spec.get("behavior") or {}

        def rules(direction: str, window: float, policies: tuple) -> tuple[float, tuple]:
            r = behavior.get(direction) or {}
            listed = tuple((p["type"], p["value"], p["periodSeconds"]) for p in r.get("policies") or [])
            return float(r.get("stabilizationWindowSeconds", window)), listed or policies

        up_window, up = rules("scaleUp", SCALE_UP_WINDOW_S, DEFAULT_SCALE_UP_POLICIES)
        down_window, down = rules("scaleDown", SCALE_DOWN_WINDOW_S, DEFAULT_SCALE_DOWN_POLICIES)
        return cls(min_replicas=int(spec.get("minReplicas", 1)), max_replicas=int(spec["maxReplicas"]),
                   scale_up_window_s=up_window, scale_down_window_s=down_window,
                   scale_up_policies=up, scale_down_policies=down)


@dataclass(frozen=True)
class Decision:
    """One look of the controller: what it read, what the formula said, what it applies, and why."""

    time_s: float
    current: int
    metric: float | None
    proposal: int            # the formula's answer (before stabilisation); = current when the metric is missing
    desired: int             # what the controller sets
    reason: str

    @property
    def change(self) -> int:
        return self.desired - self.current


@dataclass
class Controller:
    """One HPA's memory and step: proposals within the windows, and scale events for the rate limits.

    ``step(now_s, current, total)`` takes the summed metric (``AverageValue`` target per
    replica); ``total=None`` is a metric that could not be read.
    """

    target_per_replica: float
    behavior: Behavior = field(default_factory=Behavior)
    _proposals: list = field(default_factory=list)   # (time, proposal)
    _events: list = field(default_factory=list)      # (time, replica change)

    def __post_init__(self) -> None:
        require(self.target_per_replica > 0, f"The target must be > 0, got {self.target_per_replica!r}.",
                "Use e.g. 1 (request waiting per replica).")

    def step(self, now_s: float, current: int, total: float | None) -> Decision:
        b = self.behavior
        if total is None or (isinstance(total, float) and math.isnan(total)):
            return Decision(now_s, current, None, current, current,
                            "metric missing: the HPA keeps the count (ScalingActive=False)")
        proposal = desired_for_total(current, total, self.target_per_replica, b.tolerance)
        stabilized, why = self._stabilize(now_s, current, proposal)
        desired, limit = self._limit(now_s, current, stabilized)
        if desired != current:
            self._events.append((now_s, desired - current))
        longest = max(p[2] for p in b.scale_up_policies + b.scale_down_policies)
        self._events = [(t, c) for t, c in self._events if t > now_s - longest]
        reason = limit or why or ("within tolerance" if proposal == current else "formula")
        return Decision(now_s, current, total, proposal, desired, reason)

    def _stabilize(self, now_s: float, current: int, proposal: int) -> tuple[int, str]:
        """horizontal.go's stabilizeRecommendationWithBehaviors: clamp between the window's min and max."""
        b = self.behavior
        self._proposals.append((now_s, proposal))
        horizon = max(b.scale_up_window_s, b.scale_down_window_s)
        self._proposals = [(t, p) for t, p in self._proposals if t > now_s - horizon or t == now_s]
        up = min([p for t, p in self._proposals if t > now_s - b.scale_up_window_s] + [proposal])
        down = max([p for t, p in self._proposals if t > now_s - b.scale_down_window_s] + [proposal])
        recommendation = min(max(current, up), down)
        if recommendation == proposal:
            return recommendation, ""
        return recommendation, ("scale-down stabilised: a higher proposal is within the window"
                                if proposal < current else "scale-up stabilised")

    def _limit(self, now_s: float, current: int, desired: int) -> tuple[int, str]:
        """Rate policies, then min/max (convertDesiredReplicasWithBehaviorRate)."""
        b = self.behavior
        if desired > current:
            ceiling = min(b.max_replicas, max(current, self._bound(now_s, current, b.scale_up_policies, up=True)))
            if desired > ceiling:
                return ceiling, "maxReplicas" if ceiling == b.max_replicas else "scale-up rate limit"
        elif desired < current:
            floor = max(b.min_replicas, min(current, self._bound(now_s, current, b.scale_down_policies, up=False)))
            if desired < floor:
                return floor, "minReplicas" if floor == b.min_replicas else "scale-down rate limit"
        return desired, ""

    def _bound(self, now_s: float, current: int, policies: tuple, up: bool) -> int:
        """The farthest each policy allows from the count at the start of its period; the most permissive wins."""
        bounds = []
        for kind, value, period in policies:
            moved = sum(change for t, change in self._events if t > now_s - period)
            start = current - moved
            if kind == "Pods":
                bounds.append(start + value if up else start - value)
            elif up:
                bounds.append(math.ceil(start * (1 + value / 100)))
            else:
                bounds.append(int(start * (1 - value / 100)))
        return max(bounds) if up else min(bounds)


# --------------------------------------------------------------------------- KEDA

def keda_reading(result: list[dict] | None, ignore_null_values: bool = True) -> float | None:
    """What KEDA's Prometheus trigger makes of an instant-query answer (``data.result``).

    One element: its value. None, empty, NaN or ±Inf: ``0.0`` with ``ignoreNullValues``
    (KEDA's default), else ``None`` (KEDA reports an error and the HPA keeps its count).
    Several elements: KEDA refuses the query (``returned multiple elements``).
    """
    if result and len(result) > 1:
        raise ValueError("KEDA's Prometheus trigger refuses a query that returns several series: "
                         "aggregate it (sum(...)) to one element")
    value = float(result[0]["value"][1]) if result else math.nan
    if math.isnan(value) or math.isinf(value):
        return 0.0 if ignore_null_values else None
    return value


@dataclass
class KedaScaler:
    """A ScaledObject with one Prometheus trigger: KEDA's own 0↔1 step over the HPA it feeds."""

    threshold: float
    activation_threshold: float = 0.0
    min_replicas: int = 0
    max_replicas: int = 100
    cooldown_s: float = KEDA_COOLDOWN_PERIOD_S
    ignore_null_values: bool = True
    behavior: Behavior | None = None
    _hpa: Controller | None = None
    _last_active_s: float | None = None

    def __post_init__(self) -> None:
        base = self.behavior or Behavior()
        hpa_behavior = replace(base, min_replicas=max(1, self.min_replicas), max_replicas=self.max_replicas)
        self._hpa = Controller(self.threshold, hpa_behavior)

    def step(self, now_s: float, current: int, result: list[dict] | None) -> Decision:
        value = keda_reading(result, self.ignore_null_values)
        if value is None:
            return Decision(now_s, current, None, current, current,
                            "query returned nothing and ignoreNullValues is false: KEDA reports an error")
        active = value > self.activation_threshold
        if active or self._last_active_s is None:   # the cooldown counts from the first look at the latest
            self._last_active_s = now_s
        if current == 0:
            wanted = 1 if active else 0
            return Decision(now_s, 0, value, wanted, wanted, "activation" if active else "idle at zero")
        idle_for = now_s - self._last_active_s
        if not active and self.min_replicas == 0 and idle_for >= self.cooldown_s:
            return Decision(now_s, current, value, 0, 0,
                            f"no trigger active for {idle_for:.0f} s ≥ cooldownPeriod: scale to zero")
        return self._hpa.step(now_s, current, value)


# --------------------------------------------------------------------------- replay and what it shows

def replay(series: list[tuple[float, float | None]], controller: Controller, start_replicas: int = 1
           ) -> list[Decision]:
    """Feed a recorded metric series (time, total) to ``controller``, each decision applied at once."""
    decisions = []
    current = start_replicas
    for t, value in series:
        d = controller.step(t, current, value)
        decisions.append(d)
        current = d.desired
    return decisions


def scale_events(decisions: list[Decision]) -> list[Decision]:
    """The decisions that changed the replica count."""
    return [d for d in decisions if d.change]


def reversals(decisions: list[Decision]) -> int:
    """How often the direction of scaling flipped (up then down, or down then up): flapping."""
    signs = [1 if d.change > 0 else -1 for d in scale_events(decisions)]
    return sum(1 for a, b in zip(signs, signs[1:]) if a != b)


def cold_start_s(image_bytes: float, pull_bytes_per_s: float, weights_bytes: float,
                 read_bytes_per_s: float, warmup_s: float, image_cached: bool = False) -> dict:
    """What one new replica costs before it serves: image pull + weight load + warm-up, each in seconds.

    The inputs are the reader's own (``kubectl get events`` shows the pull time and image size;
    the engine's log shows the weight-loading time and the warm-up/graph capture).
    """
    for name, value in (("pull_bytes_per_s", pull_bytes_per_s), ("read_bytes_per_s", read_bytes_per_s)):
        require(value > 0, f"{name} must be > 0, got {value!r}.", "Pass a measured bandwidth in bytes per second.")
    pull = 0.0 if image_cached else image_bytes / pull_bytes_per_s
    load = weights_bytes / read_bytes_per_s
    return {"pull_s": pull, "load_s": load, "warmup_s": float(warmup_s), "total_s": pull + load + warmup_s}
