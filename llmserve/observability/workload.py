"""Pure rules of the autoscaling lab: the load that rises and falls, as phases of concurrency.

Used by :mod:`llmserve.observability.load` (which sends it), :mod:`llmserve.observability.autoscaler`
(whose lab run walks through the phases), notebooks/observability-lab.ipynb and
notebooks/full-stack-lab.ipynb. Layer: pure rules (times are passed in).

A :class:`Phase` keeps ``concurrency`` requests in flight (a closed loop: each client sends its
next request when its last one ends); a *bursty* phase does so for ``on_s`` seconds, then sends
nothing for ``off_s`` seconds, and again — a queue that keeps appearing and vanishing, which is
what makes a too-short stabilisation window flap. A phase ends after ``min_s`` seconds, or later,
when the lab waits for something (the new replica to serve, the scale-down), but never after
``max_s``.
"""
from __future__ import annotations

from dataclasses import dataclass

from llmserve.core.errors import require

#: Requests in flight at most, whatever a phase asks (each is one client thread).
MAX_CONCURRENCY = 12


@dataclass(frozen=True)
class Phase:
    name: str
    concurrency: int
    min_s: float
    max_s: float | None = None
    on_s: float | None = None       # bursty: in flight for on_s, then idle for off_s
    off_s: float | None = None
    until: str = ""                 # what the lab waits for before ending the phase (after min_s)

    def __post_init__(self) -> None:
        require(isinstance(self.concurrency, int) and 0 <= self.concurrency <= MAX_CONCURRENCY,
                f"A phase's concurrency is between 0 and {MAX_CONCURRENCY}, got {self.concurrency!r}.",
                "Two cores serve a handful of requests at once; use e.g. 1 and 6.")
        require(self.min_s > 0 and (self.max_s is None or self.max_s >= self.min_s),
                f"Phase {self.name!r}: need 0 < min_s ≤ max_s, got {self.min_s} and {self.max_s}.",
                "Give min_s (and max_s for a phase that waits for something).")
        bursty_ok = self.on_s is None and self.off_s is None or (self.on_s or 0) > 0 and (self.off_s or 0) > 0
        require(bursty_ok,
                f"Phase {self.name!r}: a bursty phase needs both on_s > 0 and off_s > 0.",
                "Use e.g. on_s=3, off_s=5.")

    @property
    def bursty(self) -> bool:
        return self.on_s is not None

    @property
    def longest_s(self) -> float:
        return self.max_s if self.max_s is not None else self.min_s

    def concurrency_at(self, t_s: float) -> int:
        """Requests to keep in flight ``t_s`` seconds into the phase."""
        if not self.bursty:
            return self.concurrency
        return self.concurrency if t_s % (self.on_s + self.off_s) < self.on_s else 0


@dataclass(frozen=True)
class Profile:
    """The phases, in order."""

    phases: tuple[Phase, ...]

    def __post_init__(self) -> None:
        require(len(self.phases) > 0, "A profile needs at least one phase.", "Give e.g. low, high, low.")

    @property
    def max_concurrency(self) -> int:
        return max(p.concurrency for p in self.phases)

    @property
    def longest_s(self) -> float:
        """The profile's duration when every phase runs to its bound: the lab's time budget."""
        return sum(p.longest_s for p in self.phases)

    def phase(self, name: str) -> Phase:
        for p in self.phases:
            if p.name == name:
                return p
        raise KeyError(name)


def rise_and_fall(low: int = 1, high: int = 6, *, warm_s: float = 8, high_min_s: float = 20,
                  high_max_s: float = 150, bursts_s: float = 30, on_s: float = 3, off_s: float = 5,
                  cool_min_s: float = 10, cool_max_s: float = 90) -> Profile:
    """The lab's load: low, high until the new replica serves, bursts, then low until the scale-down."""
    return Profile((
        Phase("low", low, warm_s),
        Phase("high", high, high_min_s, high_max_s, until="the new replica has served requests"),
        Phase("bursts", high, bursts_s, on_s=on_s, off_s=off_s),
        Phase("cool", low, cool_min_s, cool_max_s, until="the autoscaler has scaled back down"),
    ))
