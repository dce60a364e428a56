"""service.live: wait for a Ready endpoint, then ask vLLM through a port-forward, with no cluster.

A scripted cluster returns the Service and its EndpointSlices (shaped as
``discovery.k8s.io/v1`` objects: https://kubernetes.io/docs/reference/kubernetes-api/service-resources/endpoint-slice-v1/);
a local HTTP server (tests/fakes/vllm.py) stands in for vLLM and behaves as its AuthenticationMiddleware does
(vllm/entrypoints/serve/middleware/authenticate.py, 0.32.0): paths under /v1 need
``Authorization: Bearer <key>`` and get ``401 {"error": "Unauthorized"}`` otherwise, /health is open.
"""
from __future__ import annotations

import socket

import pytest

from llmserve.core.errors import ClusterError, ServerError
from llmserve.core.names import system
from llmserve.service import live
from tests.fakes.vllm import KEY, FakeVllm



@pytest.fixture()
def fake_vllm():
    with FakeVllm(key=KEY, model=system().served_model_name) as server:
        yield server.address


def _slice(*ready):
    n = system()
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{n.service}-abcde", "namespace": n.namespace,
                         "labels": {"kubernetes.io/service-name": n.service}},
            "ports": [{"name": "http", "port": n.container_port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [f"10.42.0.{i}"], "conditions": {"ready": r},
                           "targetRef": {"kind": "Pod", "name": f"pod-{i}", "namespace": n.namespace}}
                          for i, r in enumerate(ready)]}


class _Cluster:
    """Answers ``get`` (the Service exists) and ``list`` (one frame of EndpointSlices per look)."""

    host = "https://fake:6443"
    api_client = None

    def __init__(self, frames):
        self.frames, self.looks = list(frames), 0

    def get(self, ref):
        return {"kind": "Service", "metadata": {"name": ref.name}}

    def list(self, api_version, kind, namespace=None, label_selector=None):
        assert (api_version, kind) == ("discovery.k8s.io/v1", "EndpointSlice")
        assert label_selector == f"kubernetes.io/service-name={system().service}"
        frame = self.frames[min(self.looks, len(self.frames) - 1)]
        self.looks += 1
        return frame


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr("llmserve.core.waiting.pause", lambda s: None)


def _tcp(address):
    def opener(pod, namespace, port):
        return lambda: socket.create_connection(address)
    return opener


def test_wait_ready_returns_the_ready_endpoints_once_one_is_ready():
    seen = []
    ready = live.wait_ready(_Cluster([[_slice(False)], [_slice(False, True)]]),
                            progress=lambda t, status: seen.append(status))
    assert [e.pod for e in ready] == ["pod-1"]
    assert "NOT ready" in seen[0] and "ready" in seen[-1]


def test_wait_ready_times_out_with_the_fix(monkeypatch):
    clock = iter(range(0, 10_000, 100))
    monkeypatch.setattr("llmserve.core.waiting.now", lambda: next(clock))
    with pytest.raises(ClusterError) as err:
        live.wait_ready(_Cluster([[_slice(False)]]), timeout_s=300)
    assert "NOT ready" in err.value.what and "readiness probe" in err.value.fix


def test_ask_vllm_reaches_health_and_the_models_with_the_key(fake_vllm):
    answers = live.ask_vllm(_Cluster([[_slice(True)]]), api_key=KEY, opener=_tcp(fake_vllm))
    assert answers.health.status == 200 and answers.pod == "pod-0"
    assert answers.model_ids == [system().served_model_name]
    assert f"served models: {system().served_model_name}" in str(answers)


def test_ask_vllm_without_the_key_names_the_secret(fake_vllm, monkeypatch):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    with pytest.raises(ServerError) as err:
        live.ask_vllm(_Cluster([[_slice(True)]]), opener=_tcp(fake_vllm))
    assert "401" in err.value.what and system().api_key_secret in err.value.fix


def test_ask_vllm_with_no_ready_pod_points_to_the_deployment_chapter():
    with pytest.raises(ClusterError) as err:
        live.ask_vllm(_Cluster([[_slice(False)]]), api_key=KEY, opener=_tcp(("127.0.0.1", 9)))
    assert "not Ready yet" in err.value.what
