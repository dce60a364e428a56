"""Live actions of the Service chapter: wait for a Ready endpoint, then ask vLLM through a port-forward.

Used by ``notebooks/service-lab.ipynb``. Layer: live. The EndpointSlices are read and
polled by :mod:`llmserve.world.portforward` (over :func:`llmserve.core.waiting.wait_until`),
the requests go through :mod:`llmserve.core.http`; every failure is a
:class:`~llmserve.core.errors.CourseError` naming the fix. The ``kubectl`` and ``curl``
commands that do the same by hand are in :func:`llmserve.service.rules.kubectl_commands`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from llmserve.core import http
from llmserve.core.endpoints import Endpoint, endpoints
from llmserve.core.names import system
from llmserve.world import portforward


def wait_ready(cluster, timeout_s: float = 600.0, interval_s: float = 5.0,
               progress: Callable[[float, str], None] | None = None) -> list[Endpoint]:
    """Poll the Service's EndpointSlices until an endpoint is ``ready: true``; return the Ready ones.

    Raises :class:`~llmserve.core.errors.ClusterError` after ``timeout_s`` with the last
    endpoints seen and the fix.
    """
    slices = portforward.wait_for_ready_endpoint(cluster, timeout_s=timeout_s, interval_s=interval_s,
                                                 progress=progress)
    return [e for e in endpoints(slices) if e.ready and e.pod]


@dataclass(frozen=True)
class Answers:
    """What one Pod of the Service answered through the port-forward."""

    url: str
    pod: str
    remote_port: int
    health: http.HttpResult
    models: http.HttpResult

    @property
    def model_ids(self) -> list[str]:
        return http.model_ids(self.models)

    def __str__(self) -> str:
        return (f"{self.url} → Pod {self.pod}, port {self.remote_port}\n{self.health}\n"
                f"served models: {', '.join(self.model_ids) or '(none)'}")


def ask_vllm(cluster, api_key: str | None = None, timeout_s: float = 10.0, opener=None) -> Answers:
    """Port-forward to a Ready Pod of the Service, then GET ``/health`` and ``/v1/models``.

    ``/health`` needs no key; ``/v1/models`` sends ``api_key`` (default: ``$VLLM_API_KEY``)
    as a Bearer token, because vLLM guards the paths under ``/v1``. ``opener`` replaces the
    kubernetes client's stream in tests (see :func:`llmserve.world.portforward.forward`).
    """
    key = api_key if api_key is not None else http.api_key_from_env()
    # remote_port None: the Service's only port (choose_endpoint refuses a Service with several).
    with portforward.forward(cluster, f"service/{system().service}", opener=opener) as url:
        health = http.get(url, "/health", timeout=timeout_s)
        models = http.get(url, "/v1/models", timeout=timeout_s, api_key=key)
        return Answers(str(url), url.pod, url.remote_port, health, models)
