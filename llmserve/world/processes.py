"""The last-resort stop of the servers the course starts (Live) (vLLM engines, the router, Prometheus).

Used by llmserve.serving.engine, llmserve.routing.router and llmserve.observability.prometheus
in their ``atexit`` hooks. Each server runs in a process group of its own, so one signal to the
group reaches its workers too. At exit nothing waits for a drain (only for the kill to land): a Jupyter kernel that is asked
to shut down is killed 5 s later (jupyter_client's ``KernelManager.shutdown_wait_time``), so a
graceful stop here (vLLM's ``--shutdown-timeout`` drain) would be cut short and leave the servers
running, orphaned, after the notebook is gone. Their normal stop (``stop()``) stays graceful.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Iterable


def kill_groups_now(procs: Iterable[subprocess.Popen | None], reap_s: float = 2.0) -> None:
    """SIGKILL the process group of every process still running, then reap them (``reap_s`` in all).

    Never raises. Reaping matters: an exited child that is not waited for stays a zombie in its
    group until its parent exits.
    """
    killed = []
    for proc in procs:
        if proc is None or proc.poll() is not None:
            continue
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            killed.append(proc)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + reap_s
    for proc in killed:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
