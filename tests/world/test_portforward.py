"""llmserve.world.portforward: the endpoint it picks, the byte pump, and the port-forward through the real client.

Stand-ins, each behaving as the real component where the course depends on it:

* :class:`tests.fakes.vllm.FakeVllm` answers as vLLM's OpenAI server does
  (``/health`` open, ``/v1/*`` behind the API key: 401 ``{"error": "Unauthorized"}``);
* :class:`tests.fakes.apiserver.FakeAPIServer` upgrades
  ``…/pods/<pod>/portforward`` to the v4.channel.k8s.io WebSocket protocol, refuses
  with 403 (RBAC) or 404 (no such Pod) before the upgrade, and when nothing listens
  in the Pod writes the kubelet's ``error forwarding port …`` on the error channel
  (see :mod:`tests.fakes.portforward` for the sources).

Sources for the EndpointSlice cases: the EndpointSlice API reference
(EndpointConditions: "ready … A nil value indicates an unknown state. In most
cases consumers should interpret this unknown state as ready"; "serving … If
nil, consumers should defer to the ready condition"; "terminating … Consumers
should interpret this unknown state to mean that the endpoint is not
terminating") and https://kubernetes.io/docs/concepts/services-networking/endpoint-slices/.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from llmserve.core import http
from llmserve.core.endpoints import choose_endpoint, describe_endpoints, endpoints
from llmserve.core.errors import ClusterError, InputError, ServerError
from llmserve.core.names import system
from llmserve.world import portforward as pf
from llmserve.world.cluster import Cluster, ObjectRef
from tests.fakes import portforward as fake_pf
from tests.fakes.resources import by_kind
from tests.fakes.serving import fake_cluster
from tests.fakes.vllm import KEY, MODEL, FakeVllm
from tests.support import REPO

N = system()
POD = "vllm-abc"


@pytest.fixture()
def fake_vllm():
    with FakeVllm() as server:
        yield server.address


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
    (e,) = endpoints([_slice({"addresses": ["10.0.0.1"], "targetRef": {"kind": "Pod", "name": "a"}})])
    assert e.ready and e.serving and not e.terminating
    assert e.namespace == "ai-platform"  # from the slice when targetRef has none


def test_choose_endpoint_takes_a_ready_pod_and_the_named_port():
    slices = [_slice(_ep("a-loading", "10.0.0.1", ready=False), _ep("b-ready", "10.0.0.2", ready=True))]
    endpoint, port = choose_endpoint(slices, port="http")
    assert (endpoint.pod, port) == ("b-ready", 8000)
    assert choose_endpoint(slices)[1] == 8000          # the only port
    assert choose_endpoint(slices, port=9000)[1] == 9000  # a number is the Pod port


def test_terminating_pod_is_not_chosen():
    # "ready should never be true for terminating endpoints"
    slices = [_slice(_ep("old", "10.0.0.1", ready=False, serving=True, terminating=True))]
    with pytest.raises(ClusterError) as err:
        choose_endpoint(slices)
    assert "terminating" in str(err.value)


def test_no_ready_pod_points_to_the_deployment_chapter():
    slices = [_slice(_ep("a", "10.0.0.1", ready=False))]
    with pytest.raises(ClusterError) as err:
        choose_endpoint(slices)
    assert "not Ready yet" in err.value.what
    assert "Deployment chapter" in err.value.fix


@pytest.mark.parametrize("slices", [[], [_slice()]], ids=["no slices", "empty slice"])
def test_no_endpoints_points_to_the_selector(slices):
    with pytest.raises(ClusterError) as err:
        choose_endpoint(slices)
    assert "selector" in err.value.fix


def test_unknown_port_name():
    with pytest.raises(ClusterError) as err:
        choose_endpoint([_slice(_ep("a", "10.0.0.1", ready=True))], port="grpc")
    assert "'grpc'" in err.value.what and "http" in err.value.what


def test_describe_endpoints():
    text = describe_endpoints([_slice(_ep("a", "10.0.0.1", ready=False))])
    assert "Pod a" in text and "NOT ready" in text and "http=8000" in text


@pytest.mark.parametrize("target, expected", [
    ("service/x", ("Service", "x")), ("svc/x", ("Service", "x")), ("services/x", ("Service", "x")),
    ("pod/p", ("Pod", "p")), ("po/p", ("Pod", "p")), ("pods/p", ("Pod", "p")), ("Pod/p", ("Pod", "p")),
    ("x", ("Service", "x")),
    ({"kind": "Pod", "metadata": {"name": "p"}}, ("Pod", "p")),
    (ObjectRef("v1", "Service", "s", "ns"), ("Service", "s")),
])
def test_parse_target(target, expected):
    assert pf.parse_target(target) == expected


@pytest.mark.parametrize("target, what, fix", [
    ("deployment/x", "'deployment/x' is not service/NAME or pod/NAME.", "Write e.g. 'service/vllm-qwen25-coder-7b'."),
    ("service/", "'service/' is not service/NAME or pod/NAME.", "Write e.g. 'service/vllm-qwen25-coder-7b'."),
    ({"kind": "Deployment", "metadata": {"name": "d"}}, "Cannot port-forward to a Deployment.",
     "Pass a Service or Pod manifest, or 'service/NAME'."),
    ({"metadata": {"name": "d"}}, "Cannot port-forward to a dict.", "Pass a Service or Pod manifest, or 'service/NAME'."),
    ({"kind": "Service", "metadata": {}}, "Cannot port-forward to a Service.",
     "Pass a Service or Pod manifest, or 'service/NAME'."),
])
def test_parse_target_rejects_other_kinds(target, what, fix):
    with pytest.raises(InputError) as err:
        pf.parse_target(target)
    assert (err.value.what, err.value.fix) == (what, fix)


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
    assert len(opened) == 2 and fwd.connections == 2


def test_listener_is_on_localhost_with_a_free_port():
    with pf.LocalForwarder(_echo_remote) as fwd:
        assert fwd.host == "127.0.0.1" and fwd.port > 0
        assert fwd.url == f"http://127.0.0.1:{fwd.port}"


def test_a_busy_local_port_names_the_fix():
    with pf.LocalForwarder(_echo_remote) as fwd:
        with pytest.raises(InputError) as err:
            pf.LocalForwarder(_echo_remote, port=fwd.port)
    assert f"Cannot listen on 127.0.0.1:{fwd.port}" in err.value.what and "port at 0" in err.value.fix


def test_close_stops_the_listener():
    fwd = pf.LocalForwarder(_echo_remote)
    port = fwd.port
    fwd.close()
    with pytest.raises(ServerError) as err:
        http.get(f"http://127.0.0.1:{port}", "/health", timeout=2)
    assert "refused" in err.value.what


def test_failed_remote_closes_the_client_and_is_kept():
    def broken():
        raise ClusterError("stream refused", "fix")

    with pf.LocalForwarder(broken) as fwd:
        with pytest.raises(ServerError) as err:
            http.get(fwd.url, "/health", timeout=3)
        assert "closed without an answer" in err.value.what
        assert isinstance(fwd.errors[0], ClusterError) and fwd.connections == 0


def test_a_stalled_remote_ends_the_pump_instead_of_hanging():
    # The remote never reads: once the socket buffers are full, sendall waits at most stall_s.
    ours, theirs = socket.socketpair()
    client_side, feeder = socket.socketpair()
    stop = threading.Event()
    pump = threading.Thread(target=pf.pump, args=(client_side, ours, stop), kwargs={"stall_s": 0.3}, daemon=True)
    pump.start()
    feeder.settimeout(0.05)
    start = time.monotonic()
    try:
        while pump.is_alive() and time.monotonic() - start < 10:
            try:
                feeder.sendall(b"x" * 65536)
            except OSError:
                pass
        pump.join(5)
        assert not pump.is_alive() and time.monotonic() - start < 10
        assert ours.fileno() == -1 and client_side.fileno() == -1     # both sides closed
    finally:
        stop.set()
        for s in (theirs, feeder):
            s.close()


def test_pump_stops_when_asked():
    a, a_peer = socket.socketpair()
    b, b_peer = socket.socketpair()
    stop = threading.Event()
    t = threading.Thread(target=pf.pump, args=(a, b, stop), kwargs={"poll_s": 0.05}, daemon=True)
    t.start()
    stop.set()
    t.join(2)
    assert not t.is_alive() and a.fileno() == -1 and b.fileno() == -1
    a_peer.close()
    b_peer.close()


def test_pump_says_when_it_ends_before_it_closes_the_sockets():
    a, a_peer = socket.socketpair()
    b, b_peer = socket.socketpair()
    open_at_end = []
    t = threading.Thread(target=pf.pump, args=(a, b, threading.Event()),
                         kwargs={"on_end": lambda: open_at_end.append(a.fileno() != -1)}, daemon=True)
    t.start()
    b_peer.close()
    t.join(2)
    assert open_at_end == [True] and a.fileno() == -1
    a_peer.close()


def test_when_a_plain_remote_closes_the_client_sees_the_end_at_once():
    ours, theirs = socket.socketpair()
    with pf.LocalForwarder(lambda: ours) as fwd:
        with socket.create_connection((fwd.host, fwd.port), timeout=3) as c:
            c.sendall(b"x")
            assert theirs.recv(1) == b"x"
            theirs.close()                      # the far end goes away, without a kubelet to say why
            assert c.recv(10) == b""            # the local client learns it (not a hang until its timeout)
        assert fwd.errors == []


def test_a_remote_that_reports_an_error_without_an_explainer_keeps_its_words():
    class _Stream:
        def __init__(self):
            self.sock, self.peer = socket.socketpair()

        def __getattr__(self, name):
            return getattr(self.sock, name)

        def kubelet_error(self):
            return "error forwarding port 8000 to pod x, uid : boom"

    stream = _Stream()
    with pf.LocalForwarder(lambda: stream) as fwd:
        with socket.create_connection((fwd.host, fwd.port), timeout=3) as c:
            stream.peer.close()
            assert c.recv(10) == b""
        [err] = fwd.errors
    assert isinstance(err, ClusterError) and err.what == "error forwarding port 8000 to pod x, uid : boom"


def test_the_listener_still_accepts_after_a_quiet_while_and_after_a_failed_stream():
    opened = []

    def open_remote():
        opened.append(1)
        if len(opened) == 1:
            raise ClusterError("the first stream is refused", "fix")
        return _echo_remote()

    with pf.LocalForwarder(open_remote) as fwd:
        time.sleep(0.5)                           # longer than the accept loop's 0.2 s wake-up
        with socket.create_connection((fwd.host, fwd.port), timeout=3) as c:
            assert c.recv(10) == b""              # refused: closed at once
        with socket.create_connection((fwd.host, fwd.port), timeout=3) as c:
            c.sendall(b"ok")
            assert c.recv(10) == b"OK"
    assert len(opened) == 2 and fwd.connections == 1


def test_close_is_bounded_even_when_a_pump_is_stuck_in_a_send():
    ours, theirs = socket.socketpair()           # the remote never reads: its buffers fill up
    fwd = pf.LocalForwarder(lambda: ours)
    c = socket.create_connection((fwd.host, fwd.port), timeout=3)
    c.settimeout(0.05)
    start = time.monotonic()
    while time.monotonic() - start < 3:          # until the pump is blocked in sendall
        try:
            c.sendall(b"x" * 65536)
        except OSError:
            break
    start = time.monotonic()
    fwd.close(timeout_s=0.3)
    assert time.monotonic() - start < 2          # not the 30 s the stalled send may wait
    c.close()
    theirs.close()


def test_a_forgotten_forwarder_does_not_keep_python_from_exiting():
    code = ("import socket\nfrom llmserve.world.portforward import LocalForwarder\n"
            "def remote():\n    a, b = socket.socketpair()\n    remote.keep = b\n    return a\n"
            "fwd = LocalForwarder(remote)\nc = socket.create_connection((fwd.host, fwd.port))\nc.sendall(b'x')\n"
            "import time; time.sleep(0.5)\nprint('done')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr


def test_two_default_forwarders_get_two_free_ports():
    with pf.LocalForwarder(_echo_remote) as one, pf.LocalForwarder(_echo_remote) as two:
        assert one.port != two.port and 1024 < min(one.port, two.port)


def test_closing_a_forwarder_with_an_idle_connection_is_quick():
    fwd = pf.LocalForwarder(_echo_remote)
    c = socket.create_connection((fwd.host, fwd.port), timeout=3)
    time.sleep(0.3)                              # the pump is now waiting in select()
    start = time.monotonic()
    fwd.close()
    assert time.monotonic() - start < 1.0        # the pump wakes every 0.2 s to see the stop
    c.close()


def test_closing_a_forwarder_just_after_a_connection_opens_is_quick():
    # Leaving the `with` block right after a request: the pump has just entered select() and
    # must wake within its 0.2 s poll to see the stop, not keep the notebook waiting.
    fwd = pf.LocalForwarder(_echo_remote)
    c = socket.create_connection((fwd.host, fwd.port), timeout=3)
    c.sendall(b"x")
    assert c.recv(10) == b"X"                    # the pump is running
    start = time.monotonic()
    fwd.close()
    assert time.monotonic() - start < 1.0
    c.close()


# -- HTTP through the forwarder, against the stand-in vLLM ---------------------------------------
def _tcp_opener(address):
    return lambda: socket.create_connection(address, timeout=5)


def test_health_and_models_through_the_forwarder(fake_vllm):
    with pf.LocalForwarder(_tcp_opener(fake_vllm)) as fwd:
        health = http.get(fwd.url, "/health", timeout=5)
        assert health.status == 200
        models = http.get(fwd.url, "/v1/models", timeout=5, api_key=KEY)
        assert http.model_ids(models) == [MODEL]


def test_401_without_key_says_set_vllm_api_key(fake_vllm):
    with pf.LocalForwarder(_tcp_opener(fake_vllm)) as fwd:
        with pytest.raises(ServerError) as err:
            http.get(fwd.url, "/v1/models", timeout=5)
    assert "401" in err.value.what and "VLLM_API_KEY" in err.value.fix


def test_401_with_wrong_key_says_the_key_is_wrong(fake_vllm):
    with pf.LocalForwarder(_tcp_opener(fake_vllm)) as fwd:
        with pytest.raises(ServerError) as err:
            http.get(fwd.url, "/v1/models", timeout=5, api_key="nope")
    assert "not the server's" in err.value.what


def test_404(fake_vllm):
    with pytest.raises(ServerError) as err:
        http.get("http://%s:%d" % fake_vllm, "/nope", timeout=5)
    assert "404" in err.value.what


def test_connection_refused():
    with pytest.raises(ServerError) as err:
        http.get(f"http://127.0.0.1:{_free_port()}", "/health", timeout=2)
    assert "refused" in err.value.what and "port-forward" in err.value.fix


def test_timeout_says_the_model_may_be_loading():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts (in the kernel) but never answers
    try:
        start = time.monotonic()
        with pytest.raises(ServerError) as err:
            http.get("http://127.0.0.1:%d" % silent.getsockname()[1], "/health", timeout=0.5)
        assert time.monotonic() - start < 5
        assert "did not answer within 0.5 s" in err.value.what and "loading" in err.value.fix
    finally:
        silent.close()


def test_api_key_from_env(monkeypatch):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    assert http.api_key_from_env() is None
    monkeypatch.setenv("VLLM_API_KEY", "")
    assert http.api_key_from_env() is None
    monkeypatch.setenv("VLLM_API_KEY", "k")
    assert http.api_key_from_env() == "k"


# -- forward() with a stand-in cluster --------------------------------------------------
class _FakeCluster:
    host = "https://fake:6443"
    api_client = None

    def __init__(self, slices, service_exists=True):
        self.slices, self.service_exists, self.listed, self.got = slices, service_exists, [], []

    def get(self, ref):
        self.got.append(ref)
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

    with pf.forward(cluster, "service/vllm-qwen25-coder-7b", "http", opener=opener, probe_wait_s=0.05) as url:
        assert url.startswith("http://127.0.0.1:") and url.pod == "vllm-abc" and url.remote_port == 8000
        assert http.get(url, "/health").status == 200
        port = url.forwarder.port
    assert asked == [("vllm-abc", "ai-platform", 8000)]
    assert cluster.got == [ObjectRef("v1", "Service", "vllm-qwen25-coder-7b", "ai-platform")]
    assert cluster.listed == [("discovery.k8s.io/v1", "EndpointSlice", "ai-platform",
                               "kubernetes.io/service-name=vllm-qwen25-coder-7b")]
    with pytest.raises(ServerError):  # the listener is gone after the block
        http.get(f"http://127.0.0.1:{port}", "/health", timeout=2)


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


def test_forward_to_a_server_that_speaks_first():
    # Some servers greet before the client says anything; a stream without a kubelet error
    # channel (a stand-in opener) that is readable at once is not a failure.
    def greeting():
        ours, theirs = socket.socketpair()
        theirs.sendall(b"hello\n")
        greeting.keep.append(theirs)
        return ours

    greeting.keep = []
    cluster = _FakeCluster([_slice(_ep("vllm-abc", "10.0.0.9", ready=True))])
    with pf.forward(cluster, opener=lambda *a: greeting, probe_wait_s=0.5) as url:
        with socket.create_connection((url.forwarder.host, url.forwarder.port), timeout=3) as c:
            assert c.recv(10) == b"hello\n"
    for s in greeting.keep:
        s.close()


def test_forward_to_a_pod_needs_a_port_number():
    for port in (None, "http"):
        with pytest.raises(InputError):
            with pf.forward(_FakeCluster([]), "pod/x", remote_port=port, opener=lambda *a: _echo_remote):
                pass


def test_forward_to_a_pod_skips_the_service(fake_vllm):
    cluster = _FakeCluster([])
    asked = []
    with pf.forward(cluster, "pod/vllm-x", remote_port="8000", namespace="lab",
                    opener=lambda *a: asked.append(a) or _tcp_opener(fake_vllm), probe_wait_s=0.05) as url:
        assert http.get(url, "/health").status == 200
    assert asked == [("vllm-x", "lab", 8000)] and cluster.got == [] and cluster.listed == []


def test_forward_accepts_an_object_ref(fake_vllm):
    cluster = _FakeCluster([_slice(_ep("vllm-abc", "10.0.0.9", ready=True))])
    ref = ObjectRef("v1", "Service", "vllm-qwen25-coder-7b", "elsewhere")
    with pf.forward(cluster, ref, opener=lambda *a: _tcp_opener(fake_vllm), probe_wait_s=0.05) as url:
        assert http.get(url, "/health").status == 200
    assert cluster.listed[0][2] == "elsewhere"   # the ref's namespace wins


# -- against a real cluster ----------------------------------------------------------------
@pytest.mark.cluster
@pytest.mark.skipif(os.environ.get("COURSE_MODE") != "live",
                    reason="needs the course's cluster with vLLM running: set COURSE_MODE=live")
def test_real_port_forward_to_vllm():
    with pf.forward(Cluster()) as url:
        assert http.get(url, "/health", timeout=10).status == 200
        models = http.get(url, "/v1/models", timeout=10, api_key=http.api_key_from_env())
        assert "qwen25-coder-7b" in http.model_ids(models)


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


# -- the real kubernetes client against the fake API server and kubelet -------------------------------
@pytest.fixture
def api(tmp_path, monkeypatch):
    with fake_cluster(tmp_path, monkeypatch) as server:
        yield server


def _with_a_ready_pod(api, fake_vllm=None, **pod_port):
    """The fake cluster holds the Service, one Ready Pod behind it, and what the kubelet finds on its port."""
    api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": N.namespace}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": N.service, "namespace": N.namespace},
             "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "http"}]}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": POD, "namespace": N.namespace},
             "spec": {"containers": [{"name": N.container}]}},
            _slice(_ep(POD, "10.0.0.9", ready=True)))
    api.forward_pod_port(N.namespace, POD, N.container_port, address=fake_vllm, **pod_port)
    return Cluster(request_timeout_s=5)


def _streams(api) -> list:
    return [r for r in api.sent("GET", "pods") if r.subresource == "portforward"]


def test_kubernetes_client_portforward_through_the_local_listener(api, fake_vllm):
    # The whole path offline: urllib → LocalForwarder → kubernetes.stream.portforward
    # (its WebSocket and proxy thread) → fake API server and kubelet → stand-in vLLM.
    cluster = _with_a_ready_pod(api, fake_vllm)
    with pf.forward(cluster) as url:
        assert http.get(url, "/health", timeout=10).status == 200
        models = http.get(url, "/v1/models", timeout=10, api_key=KEY)
        assert http.model_ids(models) == [MODEL]
    # one probe stream at start, then one stream per HTTP request
    streams = _streams(api)
    assert [(r.namespace, r.name, r.param("ports")) for r in streams] == [(N.namespace, POD, "8000")] * 3
    assert all(r.code == 101 and r.headers["upgrade"].lower() == "websocket"
               and "v4.channel.k8s.io" in r.headers["sec-websocket-protocol"] for r in streams)
    assert streams[0].authorized_as() == [("get", "", "pods/portforward", N.namespace),
                                          ("create", "", "pods/portforward", N.namespace)]


def test_nothing_listening_in_the_pod_shows_the_kubelets_words_at_once(api):
    cluster = _with_a_ready_pod(api)   # no address: the kubelet finds nothing on the port
    with pytest.raises(ClusterError) as err:
        with pf.forward(cluster):
            pass
    assert fake_pf.refused_text(N.container_port) in err.value.what
    assert f"Nothing listens on port {N.container_port} in the Pod" in err.value.fix
    assert len(_streams(api)) == 1


def test_the_kubelets_error_inside_the_block_replaces_closed_without_an_answer(api, fake_vllm):
    cluster = _with_a_ready_pod(api, fake_vllm)
    said = "error forwarding port 8000 to pod 5f0c, uid : container not running (exited)"
    with pytest.raises(ClusterError) as err:
        with pf.forward(cluster) as url:
            api.forward_pod_port(N.namespace, POD, N.container_port, kubelet_error=said)   # the container died
            http.get(url, "/health", timeout=5)
    assert said in err.value.what and "kubectl logs" in err.value.fix
    assert isinstance(err.value.__cause__, ServerError)
    assert "closed without an answer" in err.value.__cause__.what


def test_an_error_inside_the_block_without_a_kubelet_error_is_kept(api, fake_vllm):
    cluster = _with_a_ready_pod(api, fake_vllm)
    with pytest.raises(ServerError) as err:
        with pf.forward(cluster) as url:
            http.get(url, "/v1/models", timeout=5)   # no key: vLLM's own 401
    assert "401" in err.value.what


def test_a_forbidden_port_forward_shows_the_api_servers_words(api, fake_vllm):
    cluster = _with_a_ready_pod(api, fake_vllm)
    api.forbid("create", "pods/portforward")
    with pytest.raises(ClusterError) as err:
        with pf.forward(cluster):
            pass
    assert (f'pods "{POD}" is forbidden: User "{api.user}" cannot create resource "pods/portforward" in API group '
            f'"" in the namespace "{N.namespace}"') in err.value.what
    assert "-+-+-" not in err.value.what       # not the client's raw handshake dump
    assert "`get` and `create` on pods/portforward" in err.value.fix
    assert [r.code for r in _streams(api)] == [403]


def test_a_pod_gone_before_the_upgrade_is_404_with_the_fix(api, fake_vllm):
    cluster = _with_a_ready_pod(api, fake_vllm)
    api.store.delete(by_kind("v1", "Pod"), N.namespace, POD)
    with pytest.raises(ClusterError) as err:
        with pf.forward(cluster):
            pass
    assert f'pods "{POD}" not found' in err.value.what and "enter it again" in err.value.fix
    assert [r.code for r in _streams(api)] == [404]


@pytest.mark.parametrize("text, code, said", [
    ("Handshake status 403 Forbidden -+-+- {'a': 'b'} -+-+- " + '{"kind": "Status", "message": "no"}', 403, "no"),
    ("Handshake status 404 Not Found -+-+- {} -+-+- None", 404, "Handshake status 404 Not Found -+-+- {} -+-+- None"),
    ("Handshake status 500 Internal -+-+- {} -+-+- oops", 500, "oops"),
    ('Handshake status 403 F -+-+- {} -+-+- {"kind": "Status"}', 403, '{"kind": "Status"}'),   # no message in it
    ("Handshake status 403 F -+-+- {} -+-+- ", 403, "Handshake status 403 F -+-+- {} -+-+- "),    # an empty body
    ("Handshake status 500 F -+-+- {} -+-+- 5", 500, "5"),                                        # JSON, no Status
    ("Connection refused", 0, "Connection refused"),
])
def test_upgrade_refusal_keeps_the_api_servers_message(text, code, said):
    assert pf._upgrade_refusal(text) == (code, said)


def test_other_upgrade_answers_are_explained():
    class _Odd(Exception):
        status = 0
        reason = "Handshake status 502 Bad Gateway -+-+- {} -+-+- upstream down"

    err = pf.explain_stream_error(_Odd(), POD, N.namespace, 8000, "https://k:6443")
    assert err.what == f"The API server answered 502 to the port-forward to {N.namespace}/{POD}:8000: upstream down"
    assert err.fix == f"Check the Pod with `kubectl get pod {POD} -n {N.namespace}` and retry."


def test_a_stream_error_with_an_http_status_is_explained_as_any_api_answer():
    from kubernetes.client.exceptions import ApiException
    err = pf.explain_stream_error(ApiException(status=401, reason="Unauthorized"), POD, N.namespace, 8000, "h")
    assert err.what == (f"The cluster rejected your credentials while trying to port-forward to "
                        f"{N.namespace}/{POD}:8000 (401 Unauthorized).")


def test_a_stream_error_without_a_status_keeps_its_words_and_the_host():
    err = pf.explain_stream_error(OSError("network unreachable"), POD, N.namespace, 8000, "https://k:6443")
    assert err.what == (f"Could not open a port-forward stream to {N.namespace}/{POD}:8000 through https://k:6443: "
                        f"network unreachable")
    assert "blocks WebSocket upgrades" in err.fix


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
    two = [_ep("p", "10.0.0.1", ready=False), _ep("q", "10.0.0.2", ready=False)]
    seq = [[], [_slice(*two)], [_slice(_ep("p", "10.0.0.1", ready=True))]]
    cluster, now, seen = _ChangingCluster(seq), [0.0], []
    slices = pf.wait_for_ready_endpoint(cluster, "router", "lab", timeout_s=60, interval_s=5,
                                        progress=lambda t, s: seen.append((t, s)),
                                        clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert choose_endpoint(slices)[0].pod == "p"
    assert seen == [(0.0, describe_endpoints([])),     # one line each, endpoints joined with "; "
                    (5.0, "; ".join(str(e) for e in endpoints([_slice(*two)]))),
                    (10.0, str(endpoints(seq[2])[0]))]
    assert cluster.listed == [("discovery.k8s.io/v1", "EndpointSlice", "lab", "kubernetes.io/service-name=router")] * 3


def test_wait_for_ready_endpoint_times_out_with_the_diagnosis():
    cluster, now = _ChangingCluster([[_slice(_ep("p", "10.0.0.1", ready=False))]]), [0.0]
    with pytest.raises(ClusterError) as err:
        pf.wait_for_ready_endpoint(cluster, timeout_s=30, interval_s=10,
                                   clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert err.value.what == (f"Service {N.namespace}/{N.service} had no Ready endpoint after 30 s "
                              f"(last: {endpoints([_slice(_ep('p', '10.0.0.1', ready=False))])[0]}).")
    assert "Deployment chapter" in err.value.fix and "selector checker" in err.value.fix


def test_service_slices_come_from_the_api_server_by_label(api):
    _with_a_ready_pod(api)
    cluster = Cluster(request_timeout_s=5)
    api.clear()
    assert [s["metadata"]["name"] for s in pf.service_slices(cluster)] == ["vllm-qwen25-coder-7b-abcde"]
    [sent] = api.sent("GET", "endpointslices")
    assert sent.query == {"labelSelector": [f"kubernetes.io/service-name={N.service}"]}
