"""Tests of llmserve.world.portforward that need no cluster: endpoint choice, the byte pump, HTTP errors.

A small local HTTP server stands in for vLLM, behaving as vLLM's
AuthenticationMiddleware does (vllm/entrypoints/serve/middleware/authenticate.py,
0.32.0): paths under /v1 need ``Authorization: Bearer <key>`` and get
``401 {"error": "Unauthorized"}`` otherwise; /health is open.

Sources for the EndpointSlice cases: the EndpointSlice API reference
(EndpointConditions: "ready … A nil value indicates an unknown state. In most
cases consumers should interpret this unknown state as ready"; "serving … If
nil, consumers should defer to the ready condition"; "terminating … Consumers
should interpret this unknown state to mean that the endpoint is not
terminating") and https://kubernetes.io/docs/concepts/services-networking/endpoint-slices/.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmserve.world import portforward as pf
from llmserve.core.errors import ClusterError, InputError, ServerError

KEY = "test-key"


# -- a stand-in for vLLM -------------------------------------------------------------
class _FakeVllm(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        if self.path.startswith("/v1") and self.headers.get("Authorization") != f"Bearer {KEY}":
            return self._send(401, {"error": "Unauthorized"})
        if self.path == "/health":
            return self._send(200, None)
        if self.path == "/v1/models":
            return self._send(200, {"object": "list", "data": [{"id": "qwen25-coder-7b", "object": "model"}]})
        return self._send(404, {"detail": "Not Found"})

    def _send(self, status, body):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def fake_vllm():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeVllm)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- EndpointSlices ------------------------------------------------------------------
def _slice(*eps, ports=(("http", 8000),), ns="ai-platform"):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "vllm-qwen25-coder-7b-abcde", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": "vllm-qwen25-coder-7b"}},
            "addressType": "IPv4",
            "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports],
            "endpoints": list(eps)}


def _ep(pod, ip, **conditions):
    return {"addresses": [ip], "conditions": conditions, "nodeName": "node-1",
            "targetRef": {"kind": "Pod", "name": pod, "namespace": "ai-platform"}}


def test_unset_conditions_follow_the_api_reference():
    (e,) = pf.endpoints([_slice({"addresses": ["10.0.0.1"], "targetRef": {"kind": "Pod", "name": "a"}})])
    assert e.ready and e.serving and not e.terminating
    assert e.namespace == "ai-platform"  # from the slice when targetRef has none


def test_choose_endpoint_takes_a_ready_pod_and_the_named_port():
    slices = [_slice(_ep("a-loading", "10.0.0.1", ready=False), _ep("b-ready", "10.0.0.2", ready=True))]
    endpoint, port = pf.choose_endpoint(slices, port="http")
    assert (endpoint.pod, port) == ("b-ready", 8000)
    assert pf.choose_endpoint(slices)[1] == 8000          # the only port
    assert pf.choose_endpoint(slices, port=9000)[1] == 9000  # a number is the Pod port


def test_terminating_pod_is_not_chosen():
    # "ready should never be true for terminating endpoints"
    slices = [_slice(_ep("old", "10.0.0.1", ready=False, serving=True, terminating=True))]
    with pytest.raises(ClusterError) as err:
        pf.choose_endpoint(slices)
    assert "terminating" in str(err.value)


def test_no_ready_pod_points_to_the_deployment_chapter():
    slices = [_slice(_ep("a", "10.0.0.1", ready=False))]
    with pytest.raises(ClusterError) as err:
        pf.choose_endpoint(slices)
    assert "not Ready yet" in err.value.what
    assert "Deployment chapter" in err.value.fix


@pytest.mark.parametrize("slices", [[], [_slice()]], ids=["no slices", "empty slice"])
def test_no_endpoints_points_to_the_selector(slices):
    with pytest.raises(ClusterError) as err:
        pf.choose_endpoint(slices)
    assert "selector" in err.value.fix


def test_unknown_port_name():
    with pytest.raises(ClusterError) as err:
        pf.choose_endpoint([_slice(_ep("a", "10.0.0.1", ready=True))], port="grpc")
    assert "'grpc'" in err.value.what and "http" in err.value.what


def test_describe_endpoints():
    text = pf.describe_endpoints([_slice(_ep("a", "10.0.0.1", ready=False))])
    assert "Pod a" in text and "NOT ready" in text and "http=8000" in text


@pytest.mark.parametrize("target, expected", [
    ("service/x", ("Service", "x")), ("svc/x", ("Service", "x")), ("pod/p", ("Pod", "p")), ("x", ("Service", "x")),
])
def test_parse_target(target, expected):
    assert pf.parse_target(target) == expected


def test_parse_target_rejects_other_kinds():
    with pytest.raises(InputError):
        pf.parse_target("deployment/x")


# -- the pump and the local listener ------------------------------------------------------
def _echo_remote():
    """A socketpair end whose other end echoes, like the client's port-forward socket (AF_UNIX)."""
    ours, theirs = socket.socketpair()

    def echo():
        with theirs:
            while data := theirs.recv(4096):
                theirs.sendall(data.upper())

    threading.Thread(target=echo, daemon=True).start()
    return ours


def test_pump_copies_both_ways_over_a_socketpair():
    with pf.LocalForwarder(_echo_remote) as fwd:
        with socket.create_connection((fwd.host, fwd.port), timeout=5) as c:
            c.sendall(b"hello " * 20000)  # larger than one chunk
            got = b""
            while len(got) < 6 * 20000:
                got += c.recv(65536)
        assert got == b"HELLO " * 20000
        assert fwd.connections == 1


def test_each_connection_gets_its_own_stream():
    opened = []

    def open_remote():
        opened.append(1)
        return _echo_remote()

    with pf.LocalForwarder(open_remote) as fwd:
        for word in (b"a", b"b"):
            with socket.create_connection((fwd.host, fwd.port), timeout=5) as c:
                c.sendall(word)
                assert c.recv(10) == word.upper()
    assert len(opened) == 2


def test_listener_is_on_localhost_with_a_free_port():
    with pf.LocalForwarder(_echo_remote) as fwd:
        assert fwd.host == "127.0.0.1" and fwd.port > 0
        assert fwd.url == f"http://127.0.0.1:{fwd.port}"


def test_close_stops_the_listener():
    fwd = pf.LocalForwarder(_echo_remote)
    port = fwd.port
    fwd.close()
    with pytest.raises(ServerError) as err:
        pf.http_get(f"http://127.0.0.1:{port}", "/health", timeout=2)
    assert "refused" in err.value.what


def test_failed_remote_closes_the_client_and_is_kept():
    def broken():
        raise ClusterError("stream refused", "fix")

    with pf.LocalForwarder(broken) as fwd:
        with pytest.raises(ServerError) as err:
            pf.http_get(fwd.url, "/health", timeout=3)
        assert "closed without an answer" in err.value.what
        assert isinstance(fwd.errors[0], ClusterError)


# -- http_get through the forwarder, against the stand-in --------------------------------
def _tcp_opener(address):
    return lambda: socket.create_connection(address, timeout=5)


def test_health_and_models_through_the_forwarder(fake_vllm):
    with pf.LocalForwarder(_tcp_opener(fake_vllm)) as fwd:
        health = pf.http_get(fwd.url, "/health", timeout=5)
        assert health.status == 200
        models = pf.http_get(fwd.url, "/v1/models", timeout=5, api_key=KEY)
        assert pf.model_ids(models) == ["qwen25-coder-7b"]


def test_401_without_key_says_set_vllm_api_key(fake_vllm):
    url = "http://%s:%d" % fake_vllm
    with pytest.raises(ServerError) as err:
        pf.http_get(url, "/v1/models", timeout=5)
    assert "401" in err.value.what and "VLLM_API_KEY" in err.value.fix


def test_401_with_wrong_key_says_the_key_is_wrong(fake_vllm):
    url = "http://%s:%d" % fake_vllm
    with pytest.raises(ServerError) as err:
        pf.http_get(url, "/v1/models", timeout=5, api_key="nope")
    assert "not the server's" in err.value.what


def test_404(fake_vllm):
    with pytest.raises(ServerError) as err:
        pf.http_get("http://%s:%d" % fake_vllm, "/nope", timeout=5)
    assert "404" in err.value.what


def test_connection_refused():
    with pytest.raises(ServerError) as err:
        pf.http_get(f"http://127.0.0.1:{_free_port()}", "/health", timeout=2)
    assert "refused" in err.value.what and "port-forward" in err.value.fix


def test_timeout_says_the_model_may_be_loading():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts (in the kernel) but never answers
    try:
        start = time.monotonic()
        with pytest.raises(ServerError) as err:
            pf.http_get("http://127.0.0.1:%d" % silent.getsockname()[1], "/health", timeout=0.5)
        assert time.monotonic() - start < 5
        assert "did not answer within 0.5 s" in err.value.what and "loading" in err.value.fix
    finally:
        silent.close()


def test_api_key_from_env(monkeypatch):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    assert pf.api_key_from_env() is None
    monkeypatch.setenv("VLLM_API_KEY", "")
    assert pf.api_key_from_env() is None
    monkeypatch.setenv("VLLM_API_KEY", "k")
    assert pf.api_key_from_env() == "k"


# -- forward() with a stand-in cluster --------------------------------------------------
class _FakeCluster:
    host = "https://fake:6443"
    api_client = None

    def __init__(self, slices, service_exists=True):
        self.slices, self.service_exists, self.listed = slices, service_exists, []

    def get(self, ref):
        return {"kind": "Service"} if self.service_exists else None

    def list(self, api_version, kind, namespace=None, label_selector=None):
        self.listed.append((api_version, kind, namespace, label_selector))
        return self.slices


def test_forward_end_to_end_with_a_stand_in_cluster(fake_vllm):
    cluster = _FakeCluster([_slice(_ep("vllm-abc", "10.0.0.9", ready=True))])
    asked = []

    def opener(pod, namespace, port):
        asked.append((pod, namespace, port))
        return _tcp_opener(fake_vllm)

    with pf.forward(cluster, "service/vllm-qwen25-coder-7b", "http", opener=opener) as url:
        assert url.startswith("http://127.0.0.1:") and url.pod == "vllm-abc" and url.remote_port == 8000
        assert pf.http_get(url, "/health").status == 200
        port = url.forwarder.port
    assert asked == [("vllm-abc", "ai-platform", 8000)]
    assert cluster.listed == [("discovery.k8s.io/v1", "EndpointSlice", "ai-platform",
                               "kubernetes.io/service-name=vllm-qwen25-coder-7b")]
    with pytest.raises(ServerError):  # the listener is gone after the block
        pf.http_get(f"http://127.0.0.1:{port}", "/health", timeout=2)


def test_forward_refuses_when_no_pod_is_ready():
    cluster = _FakeCluster([_slice(_ep("vllm-abc", "10.0.0.9", ready=False))])
    with pytest.raises(ClusterError) as err:
        with pf.forward(cluster, opener=lambda *a: _echo_remote):
            pass
    assert "not Ready" in err.value.what


def test_forward_to_a_missing_service():
    with pytest.raises(ClusterError) as err:
        with pf.forward(_FakeCluster([], service_exists=False), opener=lambda *a: _echo_remote):
            pass
    assert "Apply it first" in err.value.fix


def test_forward_reports_a_refused_stream_at_once():
    class _Refused(Exception):
        status = 0
        reason = "Handshake status 403 Forbidden"

    def opener(pod, namespace, port):
        def open_remote():
            raise _Refused()
        return open_remote

    cluster = _FakeCluster([_slice(_ep("vllm-abc", "10.0.0.9", ready=True))])
    with pytest.raises(ClusterError) as err:
        with pf.forward(cluster, opener=opener):
            pass
    assert "pods/portforward" in err.value.fix


def test_forward_to_a_pod_needs_a_port_number():
    with pytest.raises(InputError):
        with pf.forward(_FakeCluster([]), "pod/x", opener=lambda *a: _echo_remote):
            pass


# -- against a real cluster ----------------------------------------------------------------
@pytest.mark.cluster
@pytest.mark.skipif(os.environ.get("COURSE_MODE") != "live",
                    reason="needs the course's cluster with vLLM running: set COURSE_MODE=live")
def test_real_port_forward_to_vllm():
    from llmserve.world.cluster import Cluster
    with pf.forward(Cluster()) as url:
        assert pf.http_get(url, "/health", timeout=10).status == 200
        models = pf.http_get(url, "/v1/models", timeout=10, api_key=pf.api_key_from_env())
        assert "qwen25-coder-7b" in pf.model_ids(models)


def test_real_client_stream_failure_is_explained():
    # The kubernetes client's own portforward() against an API server address where
    # nothing listens: the WebSocket handshake fails and becomes a ClusterError.
    from kubernetes import client

    config = client.Configuration()
    config.host = f"http://127.0.0.1:{_free_port()}"
    cluster = _FakeCluster([_slice(_ep("vllm-abc", "10.0.0.9", ready=True))])
    cluster.api_client = client.ApiClient(config)
    cluster.host = config.host
    with pytest.raises(ClusterError) as err:
        with pf.forward(cluster):
            pass
    assert "vllm-abc:8000" in err.value.what and "kubectl get pods" in err.value.fix


# -- the real kubernetes client against a stand-in API server -------------------------------
@pytest.fixture()
def fake_apiserver(fake_vllm):
    """An API server that speaks only the pod portforward WebSocket protocol (v4.channel.k8s.io).

    Protocol, as the kubernetes client's PortForward expects it (kubernetes/stream/ws_client.py):
    per port, a data channel 2i and an error channel 2i+1; each first gets a 3-byte frame
    (channel, port little-endian); data frames carry the channel byte, then bytes.
    Data is relayed to the stand-in vLLM, whatever port is asked for.
    """
    tornado = pytest.importorskip("tornado")
    import asyncio
    from tornado import iostream, tcpclient, web, websocket

    seen = []

    class PortForward(websocket.WebSocketHandler):
        def select_subprotocol(self, subprotocols):
            return "v4.channel.k8s.io" if "v4.channel.k8s.io" in subprotocols else None

        async def open(self, namespace, pod):
            port = int(self.get_argument("ports"))
            seen.append((namespace, pod, port))
            self.stream = await tcpclient.TCPClient().connect(*fake_vllm)
            lo_hi = bytes((port % 256, port // 256))
            await self.write_message(b"\x00" + lo_hi, binary=True)
            await self.write_message(b"\x01" + lo_hi, binary=True)
            asyncio.ensure_future(self._relay())

        async def _relay(self):
            try:
                while True:
                    data = await self.stream.read_bytes(65536, partial=True)
                    await self.write_message(b"\x00" + data, binary=True)
            except (iostream.StreamClosedError, websocket.WebSocketClosedError):
                self.close()

        async def on_message(self, message):
            if message[:1] == b"\x00" and len(message) > 1:
                await self.stream.write(message[1:])

        def on_close(self):
            if getattr(self, "stream", None):
                self.stream.close()

    ready = threading.Event()
    state = {}

    def run():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = web.Application([(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/portforward", PortForward)])
        server = app.listen(0, "127.0.0.1")
        state["port"] = next(iter(server._sockets.values())).getsockname()[1]
        state["loop"], state["server"] = loop, server
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    yield f"http://127.0.0.1:{state['port']}", seen
    state["loop"].call_soon_threadsafe(state["server"].stop)
    state["loop"].call_soon_threadsafe(state["loop"].stop)
    thread.join(5)


def test_kubernetes_client_portforward_through_the_local_listener(fake_apiserver):
    # The whole path offline: urllib → LocalForwarder → kubernetes.stream.portforward
    # (its WebSocket and proxy thread) → stand-in API server → stand-in vLLM.
    from kubernetes import client

    host, seen = fake_apiserver
    config = client.Configuration()
    config.host = host
    cluster = _FakeCluster([_slice(_ep("vllm-abc", "10.0.0.9", ready=True))])
    cluster.api_client, cluster.host = client.ApiClient(config), host
    with pf.forward(cluster) as url:
        assert pf.http_get(url, "/health", timeout=10).status == 200
        models = pf.http_get(url, "/v1/models", timeout=10, api_key=KEY)
        assert pf.model_ids(models) == ["qwen25-coder-7b"]
    # one probe stream at start, then one stream per HTTP request
    assert seen[0] == ("ai-platform", "vllm-abc", 8000) and len(seen) == 3


# -- waiting for a Ready endpoint -------------------------------------------------------
class _ChangingCluster(_FakeCluster):
    """Slices that change from poll to poll: none, then loading, then Ready."""

    def __init__(self, sequence):
        super().__init__(sequence[0])
        self.sequence = list(sequence)

    def list(self, *args, **kwargs):
        super().list(*args, **kwargs)
        return self.sequence.pop(0) if len(self.sequence) > 1 else self.sequence[0]


def test_wait_for_ready_endpoint_polls_until_ready():
    seq = [[], [_slice(_ep("p", "10.0.0.1", ready=False))], [_slice(_ep("p", "10.0.0.1", ready=True))]]
    cluster, now, seen = _ChangingCluster(seq), [0.0], []
    slices = pf.wait_for_ready_endpoint(cluster, timeout_s=60, interval_s=5, progress=lambda t, s: seen.append(s),
                                        clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert pf.choose_endpoint(slices)[0].pod == "p"
    assert "no EndpointSlices" in seen[0] and "NOT ready" in seen[1] and "ready" in seen[2]


def test_wait_for_ready_endpoint_times_out_with_the_diagnosis():
    cluster, now = _ChangingCluster([[_slice(_ep("p", "10.0.0.1", ready=False))]]), [0.0]
    with pytest.raises(ClusterError) as err:
        pf.wait_for_ready_endpoint(cluster, timeout_s=30, interval_s=10,
                                   clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert "after 30 s" in err.value.what and "NOT ready" in err.value.what
    assert "Deployment chapter" in err.value.fix


def test_forward_accepts_an_object_ref(fake_vllm):
    from llmserve.world.cluster import ObjectRef
    cluster = _FakeCluster([_slice(_ep("vllm-abc", "10.0.0.9", ready=True))])
    ref = ObjectRef("v1", "Service", "vllm-qwen25-coder-7b", "ai-platform")
    with pf.forward(cluster, ref, opener=lambda *a: _tcp_opener(fake_vllm)) as url:
        assert pf.http_get(url, "/health").status == 200
