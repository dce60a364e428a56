"""llmserve.security.live without a server: what it sends, refuses and tells the user to run.

The bypass shown and then blocked, on the real CPU engine behind the real nginx, is checked by
the API-key lab's own assertion cells (notebooks/api-key-lab.ipynb), executed once per test run
by the strict book build and read by tests/book/test_notebooks.py; under CI a lab without its
engine fails there (``mode.ran_for_real``)."""
from __future__ import annotations

from contextlib import contextmanager

import pytest

from llmserve.core.errors import InputError, ServerError
from llmserve.security import checks, live
from llmserve.serving.engine import free_port
from llmserve.world import mode



def test_nothing_to_talk_to_sends_nothing():
    servers = live.LabServers("none", "COURSE_SKIP_VLLM=1 and no cluster")
    with servers:
        answers, report = servers.probe(through_gateway=False)
    assert answers == [] and report.checks("skip") and "nothing sent" in report.findings[0].what
    assert servers.other_routes() == []


def test_live_probes_need_the_key(monkeypatch):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    with pytest.raises(InputError, match="VLLM_API_KEY"):
        live.LabServers("cluster", "test", cluster=object()).start()


def test_a_closed_port_is_the_cores_connection_error():
    with pytest.raises(ServerError, match="nothing listens there"):
        live.send(f"http://127.0.0.1:{free_port()}", "GET", "/v1/models", timeout=2)


def test_by_hand_commands():
    assert live.port_forward_commands()[1].startswith("kubectl port-forward -n ai-platform svc/vllm-api-gateway")
    lines = live.curl_commands("http://127.0.0.1:8080", "m")
    assert len(lines) == len(checks.PROBES) and all(line.startswith("curl ") for line in lines)


def test_lab_servers_follow_the_mode(monkeypatch):
    offline = mode.Mode("offline", "test", "cpu", "test")
    monkeypatch.setattr(mode, "detect_server", lambda m: ("none", "nothing here"))
    assert live.lab_servers(offline).kind == "none"
    monkeypatch.setattr(mode, "detect_server", lambda m: ("local", "the CPU engine"))
    monkeypatch.setattr(live, "gateway_available", lambda: False)
    servers = live.lab_servers(offline)
    assert servers.kind == "none" and "nginx" in servers.reason


class FakeCluster:
    def __init__(self):
        self.applied = []

    def apply(self, objects):
        self.applied += list(objects)
        return [(o["kind"], o["metadata"]["name"]) for o in objects]


def test_apply_gateway_applies_the_component_and_waits_for_its_service(monkeypatch):
    waited = {}
    monkeypatch.setattr(live.portforward, "wait_for_ready_endpoint",
                        lambda cluster, service, timeout_s: waited.update(service=service))
    cluster = FakeCluster()
    refs = live.apply_gateway(cluster)
    assert {k for k, _ in refs} == {"ConfigMap", "Deployment", "Service", "NetworkPolicy"}
    assert all(o["kind"] != "Secret" for o in cluster.applied)
    assert waited == {"service": "vllm-api-gateway"}
    assert live.apply_command() == "kubectl apply --server-side -k manifests/components/api-gateway"


def test_lab_servers_in_a_cluster_forward_to_both_services(monkeypatch):
    opened = []

    @contextmanager
    def forward(cluster, target=None):
        opened.append(target or "service/vllm-qwen25-coder-7b")
        yield f"http://127.0.0.1:{1000 + len(opened)}"
        opened.append(f"closed {target}")

    monkeypatch.setattr(live.portforward, "forward", forward)
    monkeypatch.setenv("VLLM_API_KEY", "k")
    with live.LabServers("cluster", "test", cluster=object()) as servers:
        assert servers.urls == {False: "http://127.0.0.1:1001", True: "http://127.0.0.1:1002"}
        assert servers.api_key == "k" and servers.model == "qwen25-coder-7b"
        assert any("base64 -d" in line for line in servers.by_hand())
        assert servers.curl_commands(through_gateway=True)[0].endswith("http://127.0.0.1:1002/v1/models")
    assert opened == ["service/vllm-qwen25-coder-7b", "service/vllm-api-gateway",
                      "closed service/vllm-api-gateway", "closed None"]
