"""llmserve.world.cluster against a recording fake API server: what it sends, and every failure it explains.

No real cluster: the kubeconfigs point at 127.0.0.1 only — a closed port, or
:class:`tests.fakes.apiserver.FakeAPIServer`, which answers as the real API
server does (``Status`` bodies, selectors, server-side apply rules) and keeps
every request whole, so each test asserts what was sent, not only what came back.

The safety properties (what cleanup deletes, that no PersistentVolume is ever
deleted, that apply is server-side apply, that ``pods_of`` sends the selector)
each have a check function and a bite test: the same check run against a copy of
``cluster.py`` with that property broken must fail.
"""
from __future__ import annotations

import ast
import json
import socket
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from llmserve.core.errors import ClusterError, CourseError
from llmserve.core.names import system
from llmserve.core.objects import pod_summary, selector_of
from llmserve.deployment import live
from llmserve.world import cluster as cl
from llmserve.world import manifests, mode
from tests.fakes.resources import by_kind
from tests.fakes.serving import fake_cluster
from tests.support import REPO

N = system()
OBJECTS = {o["kind"]: o for o in manifests.render("base")}
DEPLOYMENT, SERVICE = OBJECTS["Deployment"], OBJECTS["Service"]
NS_PATH = f"/api/v1/namespaces/{N.namespace}"


@pytest.fixture(autouse=True)
def quick_probe(monkeypatch):
    monkeypatch.setattr(mode, "PROBE_TIMEOUT_S", 1.0)
    for var in ("KUBERNETES_SERVICE_HOST", "COURSE_CONTEXT", "COURSE_MODE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def api(tmp_path, monkeypatch):
    with fake_cluster(tmp_path, monkeypatch) as server:
        yield server


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


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


def pod(name, labels, phase="Running", ready=True):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": N.namespace, "labels": labels},
            "spec": {"containers": [{"name": N.container, "image": N.image}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": str(ready)}],
                       "containerStatuses": [{"name": N.container, "ready": ready, "restartCount": 0, "image": "x",
                                              "imageID": "", "state": {"running": {}}}]}}


def mutated_cluster_module(old: str, new: str) -> types.ModuleType:
    """A copy of llmserve.world.cluster with one piece of source replaced (for the bite tests)."""
    source = Path(cl.__file__).read_text(encoding="utf-8")
    assert source.count(old) == 1, f"the bite test's mutation no longer matches cluster.py: {old!r}"
    module = types.ModuleType("mutated_cluster")
    module.__file__ = cl.__file__
    sys.modules[module.__name__] = module   # dataclasses look their module up while the class is made
    try:
        exec(compile(source.replace(old, new), cl.__file__, "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module


# -- connecting: every failure names the fix ----------------------------------------------
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


def test_context_from_course_context_is_used(tmp_path, monkeypatch, api):
    api.kubeconfig(tmp_path / "kc", context="k3s", contexts=("k3s", "workshop"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kc"))
    monkeypatch.setenv("COURSE_CONTEXT", "workshop")
    assert cl.Cluster().context == "workshop"
    assert cl.Cluster(context="k3s").context == "k3s"     # an explicit context wins
    monkeypatch.delenv("COURSE_CONTEXT")
    assert cl.Cluster().context == "k3s"                  # else the kubeconfig's current one


def test_in_cluster_without_a_token_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.43.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(ClusterError) as err:   # no ServiceAccount token is mounted here
        cl.Cluster()
    assert "inside a Pod" in err.value.what and "automountServiceAccountToken" in err.value.fix


def test_inside_a_pod_the_service_account_is_used_and_no_volume_can_be_deleted(tmp_path, monkeypatch):
    # JupyterHub runs each notebook in a Pod: no kubeconfig, the ServiceAccount's token instead.
    from kubernetes.config import incluster_config
    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("not-a-real-token")
    ca.write_text("not a real certificate")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.43.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    c = cl.Cluster()
    assert (c.context, c.host) == ("in-cluster", "https://10.43.0.1:443")
    with pytest.raises(CourseError, match="never deletes a PersistentVolume"):   # refused before any request
        c.call("delete", c.core.delete_persistent_volume, N.pv)


def test_the_chosen_context_is_the_one_connected_to(tmp_path, monkeypatch):
    path = kubeconfig(tmp_path, "http://127.0.0.1:1", contexts=("k3s",), current="k3s")
    text = json.loads(path.read_text())
    text["clusters"].append({"name": "lab", "cluster": {"server": "http://127.0.0.1:2"}})
    text["contexts"].append({"name": "workshop", "context": {"cluster": "lab", "user": "learner"}})
    path.write_text(json.dumps(text))
    monkeypatch.setenv("KUBECONFIG", str(path))
    assert cl.Cluster(context="workshop").host == "http://127.0.0.1:2"
    monkeypatch.setenv("COURSE_CONTEXT", "workshop")
    assert cl.Cluster().host == "http://127.0.0.1:2"


def test_the_kubeconfig_read_is_the_first_of_kubeconfig_else_the_home_one(tmp_path, monkeypatch):
    import os
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    assert cl.kubeconfig_path() == tmp_path / "a"
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cl.kubeconfig_path() == tmp_path / ".kube" / "config"


def test_closed_port(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, f"http://127.0.0.1:{closed_port()}")))
    with pytest.raises(ClusterError) as err:
        cl.probe(timeout_s=2)
    assert "Could not reach" in err.value.what and "cluster running" in err.value.fix
    assert "Connection refused" in err.value.what        # the cause, shortened, stays in the message
    c = cl.Cluster(request_timeout_s=2)
    with pytest.raises(ClusterError) as err:
        c.pods_of(DEPLOYMENT)
    assert "Could not reach" in err.value.what and f"list Pods in {N.namespace}" in err.value.what
    m, reason, _ = mode.detect_cluster()
    assert m == "offline" and "did not answer" in reason and "Could not reach" in reason
    monkeypatch.setenv("COURSE_MODE", "live")
    with pytest.raises(ClusterError):
        mode.detect_cluster()


def test_live_when_the_api_server_answers(api):
    m, reason, ctx = mode.detect_cluster()
    assert m == "live" and "v1.36.0" in reason and api.url in reason and ctx == "course"
    assert [str(r) for r in api.requests] == ["GET /version → 200"]


def test_probe_reports_host_version_and_context(api, tmp_path, monkeypatch):
    assert cl.probe() == {"host": api.url, "version": "v1.36.0", "context": "course"}
    api.kubeconfig(tmp_path / "two", context="k3s", contexts=("k3s", "workshop"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "two"))
    assert cl.probe(context="workshop")["context"] == "workshop"


class _Hangup:
    """A TCP server that accepts each connection and closes it without an answer, counting them."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.accepted = 0
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def test_the_probe_asks_once_and_a_cluster_never_repeats_a_broken_request(tmp_path, monkeypatch):
    server = _Hangup()
    try:
        url = "http://127.0.0.1:%d" % server.sock.getsockname()[1]
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, url)))
        with pytest.raises(ClusterError) as err:
            cl.probe(timeout_s=2)
        assert err.value.what.startswith(f"Could not reach {url} while trying to read the cluster version (")
        assert server.accepted == 1
        with pytest.raises(ClusterError):
            cl.Cluster(request_timeout_s=2).pods(N.namespace)   # the request may have been done: not again
        assert server.accepted == 2
    finally:
        server.close()


def test_namespace_missing(api):
    # Server-side apply into a namespace that does not exist: the API server answers
    # 404 with details.kind "namespaces" (what `kubectl apply` prints as
    # 'namespaces "ai-platform" not found').
    with pytest.raises(ClusterError) as err:
        cl.Cluster(request_timeout_s=5).apply(SERVICE)
    assert f"namespace '{N.namespace}' does not exist" in err.value.what
    assert f'namespaces "{N.namespace}" not found' in err.value.what
    assert "namespace.yaml" in err.value.fix and f"kubectl create namespace {N.namespace}" in err.value.fix


def test_a_missing_namespace_is_named_as_the_server_names_it(api):
    elsewhere = json.loads(json.dumps(SERVICE))
    elsewhere["metadata"]["namespace"] = "lab"
    with pytest.raises(ClusterError) as err:
        cl.Cluster(request_timeout_s=5).apply(elsewhere)
    assert err.value.what.startswith("The namespace 'lab' does not exist, so the cluster could not apply Service")
    assert "`kubectl create namespace lab`" in err.value.fix


def test_a_status_without_a_name_or_a_message_still_names_the_fix():
    from kubernetes.client.exceptions import ApiException
    exc = ApiException(status=404, reason="Not Found")
    exc.body = json.dumps({"kind": "Status", "code": 404, "details": {"kind": "namespaces"}})
    err = cl.explain(exc, "apply x")
    assert err.what == f"The namespace '{N.namespace}' does not exist, so the cluster could not apply x: Not Found"


def test_forbidden_by_rbac(api):
    api.forbid("list", "pods")
    with pytest.raises(ClusterError) as err:
        cl.Cluster(request_timeout_s=5).pods_of(DEPLOYMENT)
    assert "Forbidden by RBAC" in err.value.what
    assert (f'pods is forbidden: User "{api.user}" cannot list resource "pods" in API group "" in the namespace '
            f'"{N.namespace}"') in err.value.what
    assert f"kubectl auth can-i --list -n {N.namespace}" in err.value.fix


def test_timeout(api, monkeypatch):
    cluster = cl.Cluster(request_timeout_s=0.5)
    cluster.list("v1", "Pod", namespace=N.namespace)   # discovery done
    api.slow("GET", f"{NS_PATH}/pods", 3.0)
    api.slow("GET", "/version", 3.0)
    start = time.monotonic()
    with pytest.raises(ClusterError) as err:
        cluster.pods_of(DEPLOYMENT)
    assert time.monotonic() - start < 2.5  # no silent retries of a read that timed out
    assert "did not answer in time" in err.value.what and "readyz" in err.value.fix
    assert "Read timed out" in err.value.what
    m, reason, _ = mode.detect_cluster()  # PROBE_TIMEOUT_S is 1 s here
    assert m == "offline" and "did not answer in time" in reason
    monkeypatch.setenv("COURSE_MODE", "live")
    with pytest.raises(ClusterError):
        mode.detect_cluster()


@pytest.mark.parametrize("code, reason, words, fix", [
    (401, "Unauthorized", "401 Unauthorized", "refresh the kubeconfig"),
    (404, "NotFound", "Not found while trying to list Secret in ai-platform", "check the name and namespace"),
    (409, "Conflict", "Conflict while trying to list Secret", "Another manager owns these fields"),
    (422, "Invalid", "refused the object while trying to list Secret", "llmserve.world.manifests.validate()"),
    (500, "InternalError", "answered 500 while trying to list Secret", f"kubectl get events -n {N.namespace}"),
])
def test_each_status_code_names_its_fix(api, code, reason, words, fix):
    cluster = cl.Cluster(request_timeout_s=5)
    cluster.list("v1", "Secret", namespace=N.namespace)   # discovery done: only the list fails below
    api.fail("GET", f"{NS_PATH}/secrets", code, reason, "the server says no")
    with pytest.raises(ClusterError) as err:
        cluster.list("v1", "Secret", namespace=N.namespace)
    assert words in err.value.what and fix in err.value.fix
    # The API server's own words are kept, except for 401, whose Status says only "Unauthorized".
    assert ("the server says no" in err.value.what) == (code != 401)


def test_get_answers_none_for_a_missing_object_and_raises_for_other_failures(api):
    cluster = cl.Cluster(request_timeout_s=5)
    ref = cl.ObjectRef("v1", "Secret", N.api_key_secret, N.namespace)
    assert cluster.get(ref) is None
    api.fail("GET", f"{NS_PATH}/secrets/{N.api_key_secret}", 403, "Forbidden", "secrets is forbidden")
    with pytest.raises(ClusterError, match="Forbidden by RBAC"):
        cluster.get(ref)


def test_explain_without_a_status_body_uses_the_reason():
    from kubernetes.client.exceptions import ApiException
    err = cl.explain(ApiException(status=502, reason="Bad Gateway"), "list Pods")
    assert "answered 502 while trying to list Pods: Bad Gateway" in err.what


def test_explain_other_failures():
    import urllib3.exceptions as u3
    from kubernetes.config.config_exception import ConfigException
    config = cl.explain(ConfigException("bad"), "connect")
    assert config.what == "The kubeconfig could not be used while trying to connect: bad"
    assert f"Check {cl.kubeconfig_path()} (`kubectl config view`)" in config.fix
    tls = cl.explain(u3.SSLError("certificate verify failed"), "list Pods", "https://k3s:6443")
    assert "TLS handshake with https://k3s:6443 failed" in tls.what and "certificate-authority-data" in tls.fix
    assert "Could not reach" in cl.explain(ConnectionResetError("reset"), "list Pods").what
    odd = cl.explain(KeyError("x"), "list Pods")
    assert "Unexpected failure while trying to list Pods: KeyError" in odd.what and "course bug" in odd.fix
    same = ClusterError("already explained", "fix")
    assert cl.explain(same, "anything") is same


def test_a_failed_tls_handshake_keeps_its_cause():
    import urllib3.exceptions as u3
    tls = cl.explain(u3.SSLError("certificate verify failed: self-signed certificate"), "list Pods", "https://k:6443")
    assert tls.what == ("The TLS handshake with https://k:6443 failed while trying to list Pods "
                        "(certificate verify failed: self-signed certificate).")


def test_long_causes_are_shortened():
    text = cl._short(OSError("x" * 300))
    assert len(text) == 158 and text.endswith("…")
    assert cl._short(OSError("short")) == "short"
    assert cl._short(OSError("y" * 159)) == "y" * 159                  # up to 159 characters stay whole
    assert cl._short(OSError("y" * 160)) == "y" * 157 + "…"


def test_a_cause_with_a_reason_is_told_by_its_reason():
    class _Wrapped(Exception):
        reason = "the real cause"

    assert cl._short(_Wrapped("a wrapper's text")) == "the real cause"


def _verbs(c, ref):
    return {
        f"read {ref}": lambda: c.get(ref),
        f"list Secret in {N.namespace}": lambda: c.list("v1", "Secret", namespace=N.namespace),
        f"apply {ref}": lambda: c.apply(OBJECTS["Secret"]),
        f"patch {ref}": lambda: c.patch(ref, [{"op": "remove", "path": "/data"}]),
        f"delete {ref}": lambda: c.delete(ref),
        f"list Pods in {N.namespace}": lambda: c.pods(N.namespace),
        f"list ReplicaSets in {N.namespace}": lambda: c.replicasets_of(DEPLOYMENT),
        f"list Event in {N.namespace}": lambda: c.events(ref),
        f"read the log of Pod {N.namespace}/p": lambda: c.logs("p"),
    }


def test_every_verb_names_the_host_and_the_action_when_the_cluster_goes_away(tmp_path, monkeypatch):
    with fake_cluster(tmp_path, monkeypatch) as api:
        c = cl.Cluster(request_timeout_s=2)
        ref = cl.ObjectRef.of(OBJECTS["Secret"])
        for kind in ("Secret", "Pod", "ReplicaSet", "Event"):   # discovery done while the server is up
            c.list("apps/v1" if kind == "ReplicaSet" else "v1", kind, namespace=N.namespace)
    for action, verb in _verbs(c, ref).items():
        with pytest.raises(ClusterError) as err:
            verb()
        assert err.value.what.startswith(f"Could not reach {api.url} while trying to {action} ("), action
        assert "kubectl cluster-info" in err.value.fix


def test_each_verb_asks_for_the_refs_api_version(api):
    # Kind Event exists in v1 and in events.k8s.io/v1, as on a real cluster: the ref's apiVersion decides.
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": N.namespace},
             "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Started", "message": "m"}
    api.put(OBJECTS["Namespace"], event)
    c = cl.Cluster(request_timeout_s=5)
    ref = cl.ObjectRef.of(event)
    assert c.get(ref)["reason"] == "Started"
    c.patch(ref, {"message": "changed"}, patch_type="merge")
    assert c.delete(ref) is True and c.delete(ref) is False
    assert [r.path for r in api.sent() if r.resource == "events"] == [f"{NS_PATH}/events/e"] * 4


# -- apply: server-side apply, exactly ------------------------------------------------------
def check_apply_is_server_side_apply(module, api) -> None:
    cluster = module.Cluster(request_timeout_s=5)
    api.put(OBJECTS["Namespace"])
    api.clear()
    assert cluster.apply(SERVICE) == [module.ObjectRef.of(SERVICE)]
    [sent] = api.sent("PATCH")
    assert sent.path == f"{NS_PATH}/services/{N.service}"
    assert sent.content_type == "application/apply-patch+yaml"
    assert sent.query == {"fieldManager": ["llmserve-course"], "force": ["true"]}
    assert sent.manifest() == SERVICE
    assert sent.code == 201 and sent.created
    assert api.get("v1", "Service", N.service, N.namespace)["spec"] == SERVICE["spec"]


def test_apply_is_server_side_apply(api):
    check_apply_is_server_side_apply(cl, api)


def test_apply_sends_each_object_to_the_api_group_of_its_api_version(api):
    # Some kinds are served by two API groups (Event: v1 and events.k8s.io/v1; on a real cluster
    # also HorizontalPodAutoscaler: autoscaling/v1 and v2): the manifest's apiVersion decides.
    api.put(OBJECTS["Namespace"])
    api.clear()
    event = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": N.namespace},
             "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "course",
             "reportingInstance": "lab", "action": "Checked", "reason": "Checked",
             "regarding": {"kind": "Pod", "name": "p", "namespace": N.namespace}}
    assert cl.Cluster(request_timeout_s=5).apply(event) == [cl.ObjectRef.of(event)]
    assert [r.path for r in api.sent("PATCH")] == [f"/apis/events.k8s.io/v1/namespaces/{N.namespace}/events/e"]


def test_a_kind_the_cluster_does_not_serve_is_named_with_its_api_version(api):
    # The observability lab applies a PodMonitor: without the Prometheus operator its API is absent.
    api.put(OBJECTS["Namespace"])
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
               "metadata": {"name": "vllm", "namespace": N.namespace}, "spec": {}}
    with pytest.raises(ClusterError) as err:
        cl.Cluster(request_timeout_s=5).apply(monitor)
    assert "has no API for PodMonitor (monitoring.coreos.com/v1)" in err.value.what
    assert "kubectl get crd" in err.value.fix and "Prometheus operator" in err.value.fix
    assert api.sent("PATCH") == []          # nothing was sent for a kind that does not exist


def test_apply_twice_is_one_object_and_one_ref(api):
    cluster = cl.Cluster(request_timeout_s=5)
    api.put(OBJECTS["Namespace"])
    cluster.apply(SERVICE)
    cluster.apply([SERVICE])
    assert cluster.applied == [cl.ObjectRef.of(SERVICE)]
    assert [r.code for r in api.sent("PATCH")] == [201, 200]


def test_apply_wins_over_a_field_another_manager_set(api):
    # force=true: the course's manifest is the truth for the fields it applies.
    changed = json.loads(json.dumps(SERVICE))
    changed["spec"]["ports"][0]["port"] = 9999
    api.put(OBJECTS["Namespace"], changed, manager="kubectl-edit")
    cl.Cluster(request_timeout_s=5).apply(SERVICE)
    assert api.get("v1", "Service", N.service, N.namespace)["spec"]["ports"] == SERVICE["spec"]["ports"]


def test_patch_sends_a_json_patch_or_a_merge_patch(api):
    api.put(OBJECTS["Namespace"], OBJECTS["PersistentVolume"])
    cluster = cl.Cluster(request_timeout_s=5)
    ref = cl.ObjectRef.of(OBJECTS["PersistentVolume"])
    ops = [{"op": "add", "path": "/metadata/labels/checked", "value": "yes"}]
    assert cluster.patch(ref, ops)["metadata"]["labels"]["checked"] == "yes"
    cluster.patch(ref, {"metadata": {"labels": {"checked": None}}}, patch_type="merge")
    assert "checked" not in api.get("v1", "PersistentVolume", N.pv)["metadata"]["labels"]
    first, second = api.sent("PATCH")
    assert (first.content_type, first.json()) == ("application/json-patch+json", ops)
    assert second.content_type == "application/merge-patch+json" and "fieldManager" not in second.query
    with pytest.raises(CourseError) as err:
        cluster.patch(ref, ops, patch_type="strategic")
    assert (err.value.what, err.value.fix) == ("Unknown patch type 'strategic'.", "Use one of json, merge.")


# -- reading: the selectors go to the API server ------------------------------------------------
def check_pods_of_sends_the_selector(module, api) -> None:
    labels = DEPLOYMENT["spec"]["selector"]["matchLabels"]
    older = {**pod("vllm-b", labels)}
    older["metadata"] = {**older["metadata"], "creationTimestamp": "2026-01-01T00:00:00Z"}
    api.put(OBJECTS["Namespace"], older, pod("vllm-a", labels), pod("someone-elses", {"app": "x"}))
    api.clear()
    pods = module.Cluster(request_timeout_s=5).pods_of(DEPLOYMENT)
    assert [p["metadata"]["name"] for p in pods] == ["vllm-b", "vllm-a"]      # oldest first
    [sent] = api.sent("GET", "pods")
    assert sent.query == {"labelSelector": [selector_of(DEPLOYMENT)]}


def test_pods_of_sends_the_deployments_selector(api):
    check_pods_of_sends_the_selector(cl, api)


def test_pods_and_logs_through_the_fake_server(api):
    # The happy path of the Pod helpers, against API-shaped JSON.
    labels = DEPLOYMENT["spec"]["selector"]["matchLabels"]
    name = f"{N.deployment}-abc"
    api.put(OBJECTS["Namespace"], pod(name, labels))
    api.logs[(N.namespace, name)] = "line 0\nline 1\nline 2\n"
    c = cl.Cluster(request_timeout_s=5)
    pods = c.pods_of(DEPLOYMENT)
    assert [p["metadata"]["name"] for p in pods] == [name]
    assert pods[0]["status"]["containerStatuses"][0]["restartCount"] == 0  # camelCase, as the API
    assert c.logs(pods[0], tail=2) == "line 1\nline 2\n"
    [sent] = api.sent("GET", "pods")[-1:]
    assert sent.subresource == "log"
    assert sent.query == {"container": [N.container], "previous": ["false"], "tailLines": ["2"]}
    assert live.diagnose(c, DEPLOYMENT).ready
    assert pod_summary(pods[0]) == f"{name} Running, ready"


def test_logs_of_a_pod_named_in_another_namespace(api):
    api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab"}},
            {**pod("p", {}), "metadata": {"name": "p", "namespace": "lab"}})
    api.logs[("lab", "p")] = "hello\n"
    assert cl.Cluster(request_timeout_s=5).logs("p", namespace="lab") == "hello\n"


def test_logs_by_default_are_the_last_20_lines_of_the_course_container_now(api):
    api.put(OBJECTS["Namespace"], pod("vllm-y", {}))
    api.logs[(N.namespace, "vllm-y")] = "".join(f"line {i}\n" for i in range(30))
    assert cl.Cluster(request_timeout_s=5).logs("vllm-y") == "".join(f"line {i}\n" for i in range(10, 30))
    assert api.sent("GET", "pods")[-1].query == {"container": [N.container], "previous": ["false"],
                                                 "tailLines": ["20"]}


def test_a_log_that_does_not_come_is_a_timeout_not_a_hang(api):
    api.put(OBJECTS["Namespace"], pod("vllm-y", {}))
    api.slow("GET", f"{NS_PATH}/pods/vllm-y/log", 3.0)
    start = time.monotonic()
    with pytest.raises(ClusterError, match="did not answer in time while trying to read the log"):
        cl.Cluster(request_timeout_s=0.5).logs("vllm-y")
    assert time.monotonic() - start < 2.5


def test_logs_of_a_container_that_has_not_started_are_empty(api):
    waiting = pod("vllm-new", {}, phase="Pending", ready=False)
    waiting["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "ContainerCreating"}}
    api.put(OBJECTS["Namespace"], waiting)
    assert cl.Cluster(request_timeout_s=5).logs("vllm-new") == ""
    assert api.sent("GET", "pods")[-1].code == 400


def test_replicasets_of_keeps_the_deployments_own_oldest_first(api):
    labels = DEPLOYMENT["spec"]["selector"]["matchLabels"]
    api.put(OBJECTS["Namespace"], DEPLOYMENT)
    uid = api.get("apps/v1", "Deployment", N.deployment, N.namespace)["metadata"]["uid"]

    def rs(name, owner, created):
        return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {
            "name": name, "namespace": N.namespace, "labels": labels, "creationTimestamp": created,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": owner, "uid": uid}]},
            "spec": {"selector": {"matchLabels": labels}, "template": DEPLOYMENT["spec"]["template"]}}

    api.put(rs(f"{N.deployment}-1", N.deployment, "2026-01-02T00:00:00Z"),
            rs(f"{N.deployment}-2", N.deployment, "2026-01-01T00:00:00Z"),
            rs("imposter-1", "imposter", "2026-01-01T00:00:00Z"))
    api.clear()
    without_namespace = json.loads(json.dumps(DEPLOYMENT))
    del without_namespace["metadata"]["namespace"]          # the course's namespace then
    found = cl.Cluster(request_timeout_s=5).replicasets_of(without_namespace)
    assert [r["metadata"]["name"] for r in found] == [f"{N.deployment}-2", f"{N.deployment}-1"]
    [sent] = api.sent("GET", "replicasets")
    assert sent.query == {"labelSelector": [selector_of(DEPLOYMENT)]} and sent.namespace == N.namespace


def test_a_deployment_in_another_namespace_is_read_in_its_own(api):
    # A lab that deploys into its own namespace: its Pods and ReplicaSets are there, not in the course's.
    labels = DEPLOYMENT["spec"]["selector"]["matchLabels"]
    elsewhere = json.loads(json.dumps(DEPLOYMENT))
    elsewhere["metadata"]["namespace"] = "lab"
    api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab"}}, OBJECTS["Namespace"],
            {**pod("vllm-lab", labels), "metadata": {"name": "vllm-lab", "namespace": "lab", "labels": labels}},
            pod("vllm-course", labels))
    api.clear()
    c = cl.Cluster(request_timeout_s=5)
    assert [p["metadata"]["name"] for p in c.pods_of(elsewhere)] == ["vllm-lab"]
    assert c.replicasets_of(elsewhere) == []
    assert [(r.resource, r.namespace) for r in api.sent("GET")] == [("pods", "lab"), ("replicasets", "lab")]


def test_events_of_a_cluster_scoped_object_are_in_the_default_namespace(api):
    # Kubernetes records the events of a PersistentVolume or a Node in "default".
    api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    cl.Cluster(request_timeout_s=5).events(cl.ObjectRef.of(OBJECTS["PersistentVolume"]))
    assert api.sent("GET", "events")[0].path == "/api/v1/namespaces/default/events"


def test_events_sort_by_last_timestamp_else_event_time(api):
    api.put(OBJECTS["Namespace"], *[
        {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": N.namespace},
         "involvedObject": {"kind": "Pod", "name": "p"}, "reason": name, **times}
        for name, times in (("last", {"lastTimestamp": "2026-01-01T00:00:03Z"}),
                            ("event-time", {"eventTime": "2026-01-01T00:00:02.000000Z"}),
                            ("undated", {}), ("first", {"lastTimestamp": "2026-01-01T00:00:01Z"}))])
    found = cl.Cluster(request_timeout_s=5).pod_events({"metadata": {"name": "p", "namespace": N.namespace}})
    assert [e["reason"] for e in found] == ["undated", "first", "event-time", "last"]


def test_pods_without_a_selector_are_all_the_pods(api):
    api.put(OBJECTS["Namespace"], pod("a", {"x": "1"}), pod("b", {}))
    assert [p["metadata"]["name"] for p in cl.Cluster(request_timeout_s=5).pods(N.namespace)] == ["a", "b"]


def test_pods_of_a_deployment_without_a_namespace_are_in_the_courses(api):
    without = json.loads(json.dumps(DEPLOYMENT))
    del without["metadata"]["namespace"]
    api.put(OBJECTS["Namespace"])
    cl.Cluster(request_timeout_s=5).pods_of(without)
    assert api.sent("GET", "pods")[0].namespace == N.namespace


def test_a_pods_own_namespace_wins_over_the_one_passed(api):
    api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab"}},
            {**pod("p", {}), "metadata": {"name": "p", "namespace": "lab"}})
    c = cl.Cluster(request_timeout_s=5)
    assert c.delete_pod({"metadata": {"name": "p", "namespace": "lab"}}, namespace="other") == "p"
    assert api.deletes() == ["DELETE /api/v1/namespaces/lab/pods/p"]
    c.pod_events({"metadata": {"name": "p"}})      # no namespace in the dict: the course's
    assert api.sent("GET", "events")[-1].namespace == N.namespace


def test_events_of_a_pod_without_a_namespace_are_looked_up_in_the_courses(api):
    api.put(OBJECTS["Namespace"])
    assert cl.Cluster(request_timeout_s=5).pod_events({"metadata": {"name": "p"}}) == []
    assert api.sent("GET", "events")[0].namespace == N.namespace


def test_events_are_selected_by_the_api_server_and_sorted(api):
    api.put(OBJECTS["Namespace"])

    def event(name, kind, obj, when):
        return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": N.namespace},
                "involvedObject": {"kind": kind, "name": obj, "namespace": N.namespace},
                "reason": name, "message": name, "lastTimestamp": when}

    api.put(event("late", "Pod", "p", "2026-01-01T00:00:09Z"), event("early", "Pod", "p", "2026-01-01T00:00:01Z"),
            event("other-pod", "Pod", "q", "2026-01-01T00:00:05Z"),
            event("a-claim", "PersistentVolumeClaim", "p", "2026-01-01T00:00:05Z"))
    api.clear()
    c = cl.Cluster(request_timeout_s=5)
    assert [e["reason"] for e in c.pod_events({"metadata": {"name": "p", "namespace": N.namespace}})] == \
        ["early", "late"]
    [sent] = api.sent("GET", "events")
    assert sent.query == {"fieldSelector": ["involvedObject.kind=Pod,involvedObject.name=p"]}


def test_wait_for_returns_the_object_when_the_condition_holds(api, monkeypatch):
    slept = []
    monkeypatch.setattr("llmserve.core.waiting.pause", lambda s: slept.append(s) or api.put(OBJECTS["Namespace"]))
    seen = []
    ref = cl.ObjectRef.of(OBJECTS["Namespace"])
    obj = cl.Cluster(request_timeout_s=5).wait_for(
        ref, lambda o: (o is not None, "there" if o else "absent"), timeout_s=30, interval_s=1.5,
        progress=lambda t, s: seen.append(s))
    assert obj["metadata"]["name"] == N.namespace and seen == ["absent", "there"] and slept == [1.5]


def test_wait_for_without_events_says_so(api, monkeypatch):
    now = [0.0]
    monkeypatch.setattr("llmserve.core.waiting.now", lambda: now[0])
    monkeypatch.setattr("llmserve.core.waiting.pause", lambda s: now.__setitem__(0, now[0] + s))
    api.put(OBJECTS["Namespace"])
    with pytest.raises(ClusterError) as err:
        cl.Cluster(request_timeout_s=5).wait_for(cl.ObjectRef.of(SERVICE), lambda o: (False, "absent"), timeout_s=4)
    assert err.value.what.endswith("(last status: absent). Recent events: none")


def test_wait_for_times_out_with_the_last_status_and_the_events(api, monkeypatch):
    now = [0.0]
    monkeypatch.setattr("llmserve.core.waiting.now", lambda: now[0])
    monkeypatch.setattr("llmserve.core.waiting.pause", lambda s: now.__setitem__(0, now[0] + s))
    claim = OBJECTS["PersistentVolumeClaim"]
    api.put(OBJECTS["Namespace"], claim, *[{
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": f"e{i}", "namespace": N.namespace},
        "involvedObject": {"kind": "PersistentVolumeClaim", "name": N.pvc, "namespace": N.namespace},
        "reason": reason, "message": str(i), "lastTimestamp": f"2026-01-01T00:00:0{i}Z"}
        for i, reason in ((4, "D"), (1, "A"), (3, "C"), (2, "B"))])
    with pytest.raises(ClusterError) as err:
        cl.Cluster(request_timeout_s=5).wait_for(cl.ObjectRef.of(claim), lambda o: (False, "Pending"),
                                                 timeout_s=10, interval_s=5)
    assert err.value.what == (f"PersistentVolumeClaim {N.namespace}/{N.pvc} was not ready after 10 s (last status: "
                              f"Pending). Recent events: B: 2; C: 3; D: 4")   # the last three, oldest first
    assert "troubleshooting chapter" in err.value.fix and "`kubectl describe`" in err.value.fix


# -- cleanup, for real ---------------------------------------------------------------------------
UNLABELLED = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "lab-notes", "namespace": N.namespace},
              "data": {"note": "applied by the lab, but without the course label"}}
NOT_APPLIED = {"apiVersion": "v1", "kind": "Service", "metadata": {
    "name": "vllm-router", "namespace": N.namespace, "labels": {"app.kubernetes.io/part-of": "vllm-course"}},
    "spec": {"ports": [{"port": 80}]}}
APPLIED = [OBJECTS[k] for k in ("Namespace", "PersistentVolume", "PersistentVolumeClaim", "Secret", "Service",
                                "Deployment")] + [UNLABELLED]


def _path(obj: dict) -> str:
    group = "/api/v1" if obj["apiVersion"] == "v1" else f"/apis/{obj['apiVersion']}"
    plural = {"Namespace": "namespaces", "PersistentVolume": "persistentvolumes", "Secret": "secrets",
              "PersistentVolumeClaim": "persistentvolumeclaims", "Service": "services", "Deployment": "deployments",
              "ConfigMap": "configmaps", "Pod": "pods"}[obj["kind"]]
    ns = obj["metadata"].get("namespace")
    return f"{group}/namespaces/{ns}/{plural}/{obj['metadata']['name']}" if ns else \
        f"{group}/{plural}/{obj['metadata']['name']}"


def check_cleanup_deletes_exactly_what_it_should(module, api) -> None:
    """Defaults keep the Namespace and the PV; with nothing kept the PV still stays; others' objects stay."""
    first = module.Cluster(request_timeout_s=5)
    first.apply(APPLIED)
    api.put(NOT_APPLIED, manager="instructor")
    api.clear()
    report = first.cleanup()
    assert api.deletes() == [f"DELETE {_path(OBJECTS[k])}" for k in ("Deployment", "Service", "Secret",
                                                                      "PersistentVolumeClaim")]
    assert f"kept PersistentVolume {N.pv} ({module.KEEP_REASONS['PersistentVolume']})" in report
    assert f"kept Namespace {N.namespace} ({module.KEEP_REASONS['Namespace']})" in report
    assert f"kept ConfigMap {N.namespace}/lab-notes: it lacks the course label, so the course did not create it" \
        in report
    assert api.get("v1", "Service", "vllm-router", N.namespace) is not None   # not applied by this session
    assert api.get("v1", "PersistentVolume", N.pv) is not None

    second = module.Cluster(request_timeout_s=5)
    second.apply(APPLIED)
    api.clear()
    second.cleanup(keep_kinds=())
    assert api.deletes() == [f"DELETE {_path(OBJECTS[k])}" for k in ("Deployment", "Service", "Secret",
                                                                      "PersistentVolumeClaim", "Namespace")]
    assert api.get("v1", "PersistentVolume", N.pv) is not None


def test_cleanup_deletes_exactly_what_it_should(api):
    check_cleanup_deletes_exactly_what_it_should(cl, api)


def test_cleanup_dry_run_deletes_nothing_and_forgets_nothing(api):
    cluster = cl.Cluster(request_timeout_s=5)
    cluster.apply(APPLIED)
    report = cluster.cleanup(dry_run=True)
    assert api.deletes() == []
    assert [line for line in report if line.startswith("would delete")] == [
        f"would delete {cl.ObjectRef.of(OBJECTS[k])}" for k in ("Deployment", "Service", "Secret",
                                                                 "PersistentVolumeClaim")]
    assert len(cluster.applied) == len(APPLIED)
    cluster.cleanup()
    assert len(api.deletes()) == 4


def test_cleanup_of_an_object_deleted_meanwhile_says_so(api):
    cluster = cl.Cluster(request_timeout_s=5)
    cluster.apply([OBJECTS["Namespace"], OBJECTS["Secret"]])
    api.store.delete(by_kind("v1", "Secret"), N.namespace, N.api_key_secret)
    assert cluster.cleanup() == [f"Secret {N.namespace}/{N.api_key_secret} is already gone",
                                 f"kept Namespace {N.namespace} ({cl.KEEP_REASONS['Namespace']})"]
    assert api.deletes() == []
    assert cluster.applied == [cl.ObjectRef.of(OBJECTS["Namespace"])]


def test_cleanup_of_an_object_deleted_between_the_read_and_the_delete_says_so(api):
    cluster = cl.Cluster(request_timeout_s=5)
    cluster.apply([OBJECTS["Namespace"], OBJECTS["Secret"]])
    api.fail("DELETE", f"{NS_PATH}/secrets/{N.api_key_secret}", 404, "NotFound", "secrets not found")
    assert cluster.cleanup()[0] == f"Secret {N.namespace}/{N.api_key_secret} is already gone"


def test_cleanup_keeps_a_kind_it_is_asked_to_keep(api):
    cluster = cl.Cluster(request_timeout_s=5)
    cluster.apply([OBJECTS["Namespace"], OBJECTS["Secret"]])
    report = cluster.cleanup(keep_kinds=("Namespace", "Secret"))
    assert api.deletes() == [] and f"kept Secret {N.namespace}/{N.api_key_secret} (you asked cleanup to keep " \
        f"this kind)" in report


def test_a_delete_the_api_server_refuses_is_explained(api):
    cluster = cl.Cluster(request_timeout_s=5)
    cluster.apply([OBJECTS["Namespace"], OBJECTS["Secret"]])
    api.forbid("delete", "secrets")
    with pytest.raises(ClusterError, match="Forbidden by RBAC: could not delete Secret"):
        cluster.cleanup()


def test_delete_pod_by_name_in_another_namespace(api):
    api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab"}},
            {**pod("vllm-x", {}), "metadata": {"name": "vllm-x", "namespace": "lab"}})
    assert cl.Cluster(request_timeout_s=5).delete_pod("vllm-x", namespace="lab") == "vllm-x"
    assert api.deletes() == ["DELETE /api/v1/namespaces/lab/pods/vllm-x"] and api.get("v1", "Pod", "vllm-x", "lab") is None


def test_delete_pod_sends_one_delete_and_tolerates_a_gone_pod(api):
    api.put(OBJECTS["Namespace"], pod("vllm-x", {}))
    cluster = cl.Cluster(request_timeout_s=5)
    assert cluster.delete_pod({"metadata": {"name": "vllm-x", "namespace": N.namespace}}) == "vllm-x"
    assert cluster.delete_pod("vllm-x") == "vllm-x"      # already gone: 404, not an error
    assert api.deletes() == [f"DELETE {NS_PATH}/pods/vllm-x"] * 2
    assert [r.code for r in api.sent("DELETE")] == [200, 404]


# -- no PersistentVolume is ever deleted -------------------------------------------------------
def _every_way_to_delete_the_volume(module, cluster):
    """Each helper or client path that could send a DELETE for the course's PV, and the refusal it must meet.

    Two layers: Cluster's verbs refuse the kind before any request (their refusal
    names the object), and the client every Cluster builds refuses the request
    itself (its refusal names the URL path), whichever API object sends it.
    """
    ref = module.ObjectRef.of(OBJECTS["PersistentVolume"])
    pv_api = cluster.dynamic.resources.get(api_version="v1", kind="PersistentVolume")
    by_kind_, by_url = str(ref), f"/api/v1/persistentvolumes/{N.pv}"
    return {
        "Cluster.delete": (lambda: cluster.delete(ref), by_kind_),
        "Cluster.cleanup(keep_kinds=())": (lambda: cluster.cleanup(keep_kinds=()), None),
        "Cluster.call(core.delete_persistent_volume)": (lambda: cluster.call(
            "delete", cluster.core.delete_persistent_volume, N.pv), by_url),
        "core.delete_collection_persistent_volume": (lambda: cluster.core.delete_collection_persistent_volume(),
                                                     "/api/v1/persistentvolumes"),
        "the dynamic client": (lambda: pv_api.delete(name=N.pv), by_url),
        "a raw DELETE": (lambda: cluster.api_client.call_api("DELETE", f"{cluster.host}{by_url}"), by_url),
    }


def check_no_request_deletes_a_volume(module, api) -> None:
    cluster = module.Cluster(request_timeout_s=5)
    cluster.apply([OBJECTS["Namespace"], OBJECTS["PersistentVolume"]])
    for name, (attempt, refusal) in _every_way_to_delete_the_volume(module, cluster).items():
        if refusal is None:     # cleanup keeps the volume and says why
            assert f"kept PersistentVolume {N.pv} ({module.KEEP_REASONS['PersistentVolume']})" in attempt(), name
        else:
            with pytest.raises(CourseError) as err:
                attempt()
            assert err.value.what == f"Refused to delete {refusal}: the course never deletes a PersistentVolume.", \
                name
            assert "frames the model weights" in err.value.fix and "`kubectl delete pv NAME`" in err.value.fix
        assert [r for r in api.sent("DELETE") if r.resource == "persistentvolumes"] == [], name
    assert api.get("v1", "PersistentVolume", N.pv) is not None


def test_no_request_of_the_course_deletes_a_persistent_volume(api):
    check_no_request_deletes_a_volume(cl, api)


def test_cleanup_says_why_the_volume_stays_even_when_nothing_is_kept(api):
    cluster = cl.Cluster(request_timeout_s=5)
    cluster.apply([OBJECTS["Namespace"], OBJECTS["PersistentVolume"]])
    assert cluster.cleanup(keep_kinds=()) == [
        f"kept PersistentVolume {N.pv} ({cl.KEEP_REASONS['PersistentVolume']})",
        f"deleted Namespace {N.namespace}"]
    assert cluster.applied == [cl.ObjectRef.of(OBJECTS["PersistentVolume"])]


def _delete_references(tree: ast.AST) -> list[tuple[int, str]]:
    """Every ``x.<something with delete>`` in the code, called or passed on (``cluster.call(…, api.delete_…)``)."""
    return [(node.lineno, f"{ast.unparse(node.value)}.{node.attr}") for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and "delete" in node.attr]


def test_every_delete_in_the_package_goes_through_cluster():
    # Outside world/cluster.py a delete may only be a Cluster verb (delete, delete_pod):
    # a direct client call (delete_namespaced_*, resource.delete on a raw API) would bypass the rules.
    found = []
    for path in sorted((REPO / "llmserve").rglob("*.py")):
        if path == Path(cl.__file__):
            continue
        for line, name in _delete_references(ast.parse(path.read_text(encoding="utf-8"))):
            if name.rsplit(".", 1)[-1] not in ("delete", "delete_pod"):
                found.append(f"{path.relative_to(REPO)}:{line} uses {name}")
    assert found == [], "deletes that bypass llmserve.world.cluster.Cluster:\n" + "\n".join(found)


def test_inside_cluster_py_only_delete_talks_to_the_api():
    tree = ast.parse(Path(cl.__file__).read_text(encoding="utf-8"))
    owners = {}
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef):
            for _, name in _delete_references(fn):
                owners.setdefault(fn.name, []).append(name)
    assert owners == {"delete": ["resource.delete"], "cleanup": ["self.delete"], "delete_pod": ["self.delete"]}


# -- the safety checks bite ---------------------------------------------------------------------
MUTATIONS = {
    "cleanup without the label check": (
        check_cleanup_deletes_exactly_what_it_should,
        "if labels.get(COURSE_LABEL[0]) != COURSE_LABEL[1]:", "if False:"),
    "DEFAULT_KEEP_KINDS emptied": (
        check_cleanup_deletes_exactly_what_it_should,
        'DEFAULT_KEEP_KINDS = ("PersistentVolume", "Namespace")', "DEFAULT_KEEP_KINDS = ()"),
    "PV and Namespace kept only in dry runs": (
        check_cleanup_deletes_exactly_what_it_should,
        "            if ref.kind in keep:\n", "            if ref.kind in keep and dry_run:\n"),
    "cleanup may delete a PV when asked": (
        check_no_request_deletes_a_volume,
        "keep = set(keep_kinds) | {NEVER_DELETED}", "keep = set(keep_kinds)"),
    "delete accepts a PV": (
        check_no_request_deletes_a_volume,
        "        if ref.kind == NEVER_DELETED:\n            raise refuse_volume_delete(str(ref))\n", ""),
    "the client lets a PV DELETE through": (
        check_no_request_deletes_a_volume,
        "    _refuse_volume_deletes(api_client)\n", ""),
    "apply as a JSON merge patch": (
        check_apply_is_server_side_apply,
        "resource.server_side_apply, body=obj, name=ref.name,\n"
        "                      namespace=ref.namespace, field_manager=FIELD_MANAGER, force_conflicts=True",
        "resource.patch, body=obj, name=ref.name,\n"
        "                      namespace=ref.namespace, content_type='application/merge-patch+json'"),
    "apply without force": (
        check_apply_is_server_side_apply, "field_manager=FIELD_MANAGER, force_conflicts=True",
        "field_manager=FIELD_MANAGER"),
    "pods_of without a label selector": (
        check_pods_of_sends_the_selector, "return self.pods(ns, selector_of(deployment))", "return self.pods(ns)"),
}


@pytest.mark.parametrize("name", MUTATIONS)
def test_each_safety_check_fails_when_its_property_breaks(name, api):
    check, old, new = MUTATIONS[name]
    with pytest.raises((AssertionError, CourseError, pytest.fail.Exception)):
        check(mutated_cluster_module(old, new), api)

