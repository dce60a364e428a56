"""Every way the cluster can fail a learner, and the message that names the fix.

No real cluster: the kubeconfigs point at 127.0.0.1 only — a closed port, or a
tiny fake API server in a thread that answers like the real one (Kubernetes
`Status` objects, https://kubernetes.io/docs/reference/using-api/api-concepts/#response-status-kind).
"""
from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmserve.world import cluster as cl
from llmserve.world import manifests, mode
from llmserve.core.errors import ClusterError
from llmserve.core.objects import pod_summary
from llmserve.deployment import live

DEPLOYMENT = manifests.load_one("base/vllm-deployment.yaml")
SERVICE = manifests.load_one("base/vllm-service.yaml")


def kubeconfig(tmp_path, server: str, contexts=("course",), current="course"):
    """A minimal kubeconfig (https://kubernetes.io/docs/concepts/configuration/organize-cluster-access-kubeconfig/)."""
    text = {
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "learner", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": c, "context": {"cluster": "fake", "user": "learner"}} for c in contexts],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(text))  # JSON is YAML
    return path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ("KUBERNETES_SERVICE_HOST", "COURSE_CONTEXT", "COURSE_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(mode, "PROBE_TIMEOUT_S", 1.0)


def status_body(code: int, reason: str, message: str, details: dict | None = None) -> bytes:
    # The shape of a real Kubernetes Status object (metav1.Status).
    return json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": message, "reason": reason, "details": details or {}, "code": code}).encode()


class FakeAPI:
    """A loopback HTTP server; ``routes`` maps (method, path) to (code, body, delay_s)."""

    def __init__(self, routes: dict):
        outer = self
        self.routes = routes
        self.seen: list[tuple[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                path = self.path.split("?", 1)[0].rstrip("/") or "/"
                outer.seen.append((self.command, path))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                code, body, delay = outer.routes.get((self.command, path),
                                                     (404, status_body(404, "NotFound", "the server could not find the requested resource"), 0))
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(code)
                    # The log endpoint answers text/plain, everything else JSON.
                    kind = "application/json" if body[:1] == b"{" else "text/plain"
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_PATCH = do_POST = do_DELETE = _answer

            def log_message(self, *args):  # keep pytest output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


# What GET /version returns (every field of version.Info; `kubectl version -o json` shows them).
VERSION = (200, json.dumps({"major": "1", "minor": "36", "gitVersion": "v1.36.0", "gitCommit": "0" * 40,
                            "gitTreeState": "clean", "buildDate": "2026-08-26T00:00:00Z", "goVersion": "go1.25.0",
                            "compiler": "gc", "platform": "linux/amd64"}).encode(), 0)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


# ---------------------------------------------------------------------------
def test_no_kubeconfig(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "config"
    monkeypatch.setenv("KUBECONFIG", str(missing))
    with pytest.raises(ClusterError) as err:
        cl.Cluster()
    assert str(missing) in err.value.what and "KUBECONFIG" in err.value.fix
    m, reason, _ = mode.detect_cluster()
    assert m == "offline" and "no kubeconfig" in reason
    monkeypatch.setenv("COURSE_MODE", "live")
    with pytest.raises(ClusterError):
        mode.detect_cluster()


@pytest.mark.parametrize("content", ["just some text\n", "apiVersion: v1\nkind: Config\nclusters: [\n", ""])
def test_not_a_kubeconfig(tmp_path, monkeypatch, content):
    path = tmp_path / "config"
    path.write_text(content)
    monkeypatch.setenv("KUBECONFIG", str(path))
    with pytest.raises(ClusterError) as err:
        cl.Cluster()
    assert "not a usable kubeconfig" in err.value.what and "kubectl config view" in err.value.fix
    m, reason, _ = mode.detect_cluster()
    assert m == "offline" and "not a usable kubeconfig" in reason


def test_wrong_context(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, "http://127.0.0.1:1", contexts=("k3s", "kind-course"),
                                                      current="k3s")))
    with pytest.raises(ClusterError) as err:
        cl.Cluster(context="minikube")
    assert "'minikube'" in err.value.what and "k3s" in err.value.what and "kind-course" in err.value.what
    assert "kubectl config use-context" in err.value.fix
    monkeypatch.setenv("COURSE_CONTEXT", "minikube")
    m, reason, _ = mode.detect_cluster()
    assert m == "offline" and "minikube" in reason


def test_closed_port(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, f"http://127.0.0.1:{closed_port()}")))
    with pytest.raises(ClusterError) as err:
        cl.probe(timeout_s=2)
    assert "Could not reach" in err.value.what and "cluster running" in err.value.fix
    c = cl.Cluster(request_timeout_s=2)
    with pytest.raises(ClusterError) as err:
        c.pods_of(DEPLOYMENT)
    assert "Could not reach" in err.value.what and "list Pods in ai-platform" in err.value.what
    m, reason, _ = mode.detect_cluster()
    assert m == "offline" and "did not answer" in reason and "Could not reach" in reason
    monkeypatch.setenv("COURSE_MODE", "live")
    with pytest.raises(ClusterError):
        mode.detect_cluster()


def test_live_when_the_api_server_answers(tmp_path, monkeypatch):
    with FakeAPI({("GET", "/version"): VERSION}) as api:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, api.url)))
        m, reason, ctx = mode.detect_cluster()
    assert m == "live" and "v1.36.0" in reason and ctx == "course"


def test_namespace_missing(tmp_path, monkeypatch):
    # Server-side apply into a namespace that does not exist: the API server answers
    # 404 with details.kind "namespaces" (what `kubectl apply` prints as
    # 'namespaces "ai-platform" not found').
    discovery_core = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": [
        {"name": "services", "singularName": "service", "namespaced": True, "kind": "Service",
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"], "shortNames": ["svc"]}]}
    routes = {
        ("GET", "/version"): VERSION,
        ("GET", "/api"): (200, json.dumps({"kind": "APIVersions", "versions": ["v1"],
                                           "serverAddressByClientCIDRs": []}).encode(), 0),
        ("GET", "/apis"): (200, json.dumps({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}).encode(), 0),
        ("GET", "/api/v1"): (200, json.dumps(discovery_core).encode(), 0),
        ("PATCH", "/api/v1/namespaces/ai-platform/services/vllm-qwen25-coder-7b"):
            (404, status_body(404, "NotFound", 'namespaces "ai-platform" not found',
                              {"name": "ai-platform", "kind": "namespaces"}), 0),
    }
    with FakeAPI(routes) as api:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, api.url)))
        monkeypatch.setenv("TMPDIR", str(tmp_path))  # the dynamic client's discovery cache
        with pytest.raises(ClusterError) as err:
            cl.Cluster(request_timeout_s=5).apply(SERVICE)
    assert "namespace 'ai-platform' does not exist" in err.value.what
    assert "namespace.yaml" in err.value.fix


def test_forbidden_by_rbac(tmp_path, monkeypatch):
    # The real API server's 403 body for a ServiceAccount without a Role:
    # https://kubernetes.io/docs/reference/access-authn-authz/rbac/
    message = ('pods is forbidden: User "system:serviceaccount:ai-platform:learner" cannot list resource '
               '"pods" in API group "" in the namespace "ai-platform"')
    routes = {("GET", "/api/v1/namespaces/ai-platform/pods"):
              (403, status_body(403, "Forbidden", message, {"kind": "pods"}), 0)}
    with FakeAPI(routes) as api:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, api.url)))
        with pytest.raises(ClusterError) as err:
            cl.Cluster(request_timeout_s=5).pods_of(DEPLOYMENT)
    assert "Forbidden by RBAC" in err.value.what and "cannot list resource" in err.value.what
    assert "kubectl auth can-i" in err.value.fix


def test_timeout(tmp_path, monkeypatch):
    routes = {("GET", "/version"): (200, VERSION[1], 3.0),
              ("GET", "/api/v1/namespaces/ai-platform/pods"): (200, b'{"kind":"PodList","items":[]}', 3.0)}
    with FakeAPI(routes) as api:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, api.url)))
        start = time.monotonic()
        with pytest.raises(ClusterError) as err:
            cl.Cluster(request_timeout_s=0.5).pods_of(DEPLOYMENT)
        assert time.monotonic() - start < 2.5  # no silent retries of a read that timed out
        assert "did not answer in time" in err.value.what and "readyz" in err.value.fix
        m, reason, _ = mode.detect_cluster()  # PROBE_TIMEOUT_S is 1 s here
        assert m == "offline" and "did not answer in time" in reason
        monkeypatch.setenv("COURSE_MODE", "live")
        with pytest.raises(ClusterError):
            mode.detect_cluster()


def test_pods_and_logs_through_the_fake_server(tmp_path, monkeypatch):
    # The happy path of the new helpers, against API-shaped JSON.
    pod = {"metadata": {"name": "vllm-qwen25-coder-7b-abc", "namespace": "ai-platform",
                        "creationTimestamp": "2026-11-27T10:00:00Z"},
           "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                      "containerStatuses": [{"name": "vllm", "ready": True, "restartCount": 0, "image": "x",
                                             "imageID": "", "state": {"running": {}}}]}}
    routes = {
        ("GET", "/api/v1/namespaces/ai-platform/pods"):
            (200, json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [pod]}).encode(), 0),
        ("GET", "/api/v1/namespaces/ai-platform/pods/vllm-qwen25-coder-7b-abc/log"): (200, b"line 1\nline 2\n", 0),
        ("GET", "/api/v1/namespaces/ai-platform/events"):
            (200, json.dumps({"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": []}).encode(), 0),
    }
    with FakeAPI(routes) as api:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, api.url)))
        c = cl.Cluster(request_timeout_s=5)
        pods = c.pods_of(DEPLOYMENT)
        assert [p["metadata"]["name"] for p in pods] == ["vllm-qwen25-coder-7b-abc"]
        assert pods[0]["status"]["containerStatuses"][0]["restartCount"] == 0  # camelCase, as the API
        assert c.logs(pods[0], tail=2) == "line 1\nline 2\n"
        assert live.diagnose(c, DEPLOYMENT).ready
    assert pod_summary(pod) == "vllm-qwen25-coder-7b-abc Running, ready"
