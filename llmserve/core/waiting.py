"""One wait-with-progress loop: every wait of the course (a claim binding, a rollout,
a Ready endpoint, a local engine starting) polls through :func:`wait_until`.

Used by the storage, deployment, service and stack chapters and by the local engine.
The caller passes ``look()`` returning ``(done, status)``; the loop reports each
status through ``progress(elapsed_s, status)``, and gives up either after
``timeout_s`` or when ``give_up(status)`` has held for ``give_up_after_s``, raising
the caller's error with the last status in it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

from llmserve.core.errors import CourseError

S = TypeVar("S")


@dataclass
class Waited(Generic[S]):
    """How a wait ended: ``done`` or not, the last status, and how long it took."""

    done: bool
    status: S
    elapsed_s: float
    looks: int


def now() -> float:
    """The clock every wait reads (tests replace this name, never ``time.monotonic`` itself: the
    HTTP client's own timeouts read that one, and a fake clock there times requests out)."""
    return time.monotonic()


def pause(seconds: float) -> None:
    """How every wait sleeps between looks (tests replace this name, as :func:`now`)."""
    time.sleep(seconds)


def wait_until(look: Callable[[], tuple[bool, S]], *, timeout_s: float, interval_s: float = 2.0,
               progress: Callable[[float, S], None] | None = None,
               give_up: Callable[[S], bool] | None = None, give_up_after_s: float = 0.0,
               on_timeout: Callable[[S, float], CourseError] | None = None,
               clock: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None,
               ) -> Waited[S]:
    """Poll ``look()`` until it reports done, the time is up, or the status has been hopeless too long.

    Returns a :class:`Waited`. On timeout it raises ``on_timeout(status, elapsed)``
    when given, else returns ``Waited(done=False, …)`` so the caller can explain.
    """
    if timeout_s < 0 or interval_s <= 0:
        raise ValueError("timeout_s must be >= 0 and interval_s > 0")
    clock = clock or now       # looked up per call: tests replace now and pause
    sleep = sleep or pause
    start = clock()
    bad_since: float | None = None
    looks = 0
    while True:
        done, status = look()
        looks += 1
        elapsed = clock() - start
        if progress:
            progress(elapsed, status)
        if done:
            return Waited(True, status, elapsed, looks)
        if give_up is not None and give_up(status):
            bad_since = elapsed if bad_since is None else bad_since
            if elapsed - bad_since >= give_up_after_s:
                return Waited(False, status, elapsed, looks)
        else:
            bad_since = None
        if elapsed >= timeout_s:
            if on_timeout is not None:
                raise on_timeout(status, elapsed)
            return Waited(False, status, elapsed, looks)
        sleep(min(interval_s, max(timeout_s - elapsed, 0.0)) or interval_s)
