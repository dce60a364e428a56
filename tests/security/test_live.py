"""llmserve.security.live against the real local engine (vLLM 0.32 on the CPU) and the real nginx:
the bypass shown, then blocked. One engine for the module (it takes 20-60 s to start)."""
from __future__ import annotations

import secrets
from contextlib import contextmanager

import pytest

from llmserve.core.errors import InputError, ServerError
from llmserve.security import checks, live
from llmserve.serving.engine import free_port
from llmserve.world import mode

KEY = secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def servers(nginx):
    """The lab's local pair, as the notebook starts it: the engine with KEY and the gateway."""
    with live.LabServers("local", "test", api_key=KEY) as pair:
        yield pair
    assert not pair.engine.is_running()


@pytest.fixture(scope="module")
def engine(servers):
    return servers.engine


@pytest.fixture(scope="module")
def gw(servers):
    return servers.gateway


def status_of(answers, name):
    return next(a.status for a in answers if a.probe.name == name)


@pytest.mark.vllm
def test_straight_to_vllm_v1_asks_the_key_and_invocations_does_not(engine):
    answers, report = live.probe(engine.url, engine.model, KEY, through_gateway=False)
    assert status_of(answers, "a chat completion, no key") == 401
    assert status_of(answers, "the model list, no key") == 401
    bypass = next(a for a in answers if a.probe.path == "/invocations")
    assert bypass.status == 200 and '"chat.completion"' in bypass.text   # a completion, without a key
    assert status_of(answers, "the tokenizer, no key") == 200
    assert status_of(answers, "a chat completion with the key") == 200
    assert report.checks("error") == ["the same chat body to /invocations, no key"]


@pytest.mark.vllm
def test_through_the_gateway_invocations_is_404_and_v1_still_asks_the_key(engine, gw):
    answers, report = live.probe(gw.url, engine.model, KEY, through_gateway=True)
    assert status_of(answers, "the same chat body to /invocations, no key") == 404
    assert status_of(answers, "the tokenizer, no key") == 404
    assert status_of(answers, "a chat completion, no key") == 401     # vLLM's answer, passed on
    assert status_of(answers, "a chat completion with the key") == 200
    assert report.ok and not report.warnings, str(report)


@pytest.mark.vllm
def test_the_gateway_refuses_other_open_routes_that_vllm_answers(engine, gw):
    for method, path, body in (("POST", "/detokenize", {"model": engine.model, "tokens": [1, 2]}),
                               ("GET", "/version", None), ("GET", "/metrics", None), ("GET", "/docs", None)):
        direct, _ = live.send(engine.url, method, path, body)
        through, _ = live.send(gw.url, method, path, body)
        assert (direct, through) == (200, 404), path


@pytest.mark.vllm
def test_lab_servers_probe_the_two_urls(servers):
    assert servers.urls == {False: servers.engine.url, True: servers.gateway.url}
    _, report = servers.probe(through_gateway=True)
    assert report.ok


def test_nothing_to_talk_to_sends_nothing():
    servers = live.LabServers("none", "COURSE_SKIP_VLLM=1 and no cluster")
    with servers:
        answers, report = servers.probe(through_gateway=False)
    assert answers == [] and report.checks("skip") and "nothing sent" in report.findings[0].what


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
