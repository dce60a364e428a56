"""The fake API server behaves as the real one where the course depends on it — checked through the real client.

Each behaviour below is one the course's code relies on, with its source in
:mod:`tests.fakes.apiserver` (and selectors, store, status, controllers). If the
fake drifted from the real server, the tests of llmserve.world would prove nothing.
"""
from __future__ import annotations

import base64
import json
import threading
import time

import pytest
import urllib3

from llmserve.core.errors import ClusterError
from llmserve.world import cluster as cl
from llmserve.world import manifests
from tests.fakes import portforward as fake_pf
from tests.fakes import selectors
from tests.fakes.resources import by_kind
from tests.fakes.serving import fake_cluster

OBJECTS = {o["kind"]: o for o in manifests.render("base")}
NS = OBJECTS["Namespace"]["metadata"]["name"]


@pytest.fixture
def api(tmp_path, monkeypatch):
    with fake_cluster(tmp_path, monkeypatch) as server:
        server.put(OBJECTS["Namespace"])
        server.clear()
        yield server


@pytest.fixture
def live(tmp_path, monkeypatch):
    with fake_cluster(tmp_path, monkeypatch, controllers_on=True) as server:
        yield server


def _pod(name, labels=None, phase="Running", node="a"):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": labels or {}},
            "spec": {"nodeName": node, "containers": [{"name": "c"}]}, "status": {"phase": phase}}


def _raw(api, method, path, body=b"", content_type="application/json"):
    """One request as any client could send it (no course code in between)."""
    http = urllib3.PoolManager()
    return http.request(method, api.url + path, body=body, headers={"Content-Type": content_type})


# -- selectors ------------------------------------------------------------------------------
@pytest.mark.parametrize("selector, names", [
    ("app=vllm", ["a", "b"]), ("app==vllm", ["a", "b"]), ("app!=vllm", ["c", "d"]),
    ("app in (vllm,router)", ["a", "b", "c"]), ("app notin (vllm)", ["c", "d"]),
    ("tier", ["b"]), ("!tier", ["a", "c", "d"]), ("app=vllm,tier=gpu", ["b"]), ("", ["a", "b", "c", "d"]),
])
def test_label_selectors_filter_lists_as_the_api_server_does(api, selector, names):
    api.put(_pod("a", {"app": "vllm"}), _pod("b", {"app": "vllm", "tier": "gpu"}), _pod("c", {"app": "router"}),
            _pod("d"))
    found = cl.Cluster(request_timeout_s=5).list("v1", "Pod", namespace=NS, label_selector=selector or None)
    assert [p["metadata"]["name"] for p in found] == names


def test_a_bad_label_selector_is_a_400(api):
    with pytest.raises(ClusterError) as err:
        cl.Cluster(request_timeout_s=5).list("v1", "Pod", namespace=NS, label_selector="app in ()")
    assert "answered 400" in err.value.what and "unable to parse requirement" in err.value.what


def test_field_selectors_filter_and_unknown_fields_are_refused(api):
    api.put(_pod("a", node="gpu-box"), _pod("b", phase="Pending"))
    c = cl.Cluster(request_timeout_s=5)
    assert [p["metadata"]["name"] for p in c.list("v1", "Pod", NS, field_selector="status.phase=Running")] == ["a"]
    assert [p["metadata"]["name"] for p in c.list("v1", "Pod", NS, field_selector="spec.nodeName!=gpu-box")] == ["b"]
    assert [p["metadata"]["name"] for p in c.list("v1", "Pod", NS, field_selector="metadata.name==b")] == ["b"]
    with pytest.raises(ClusterError, match="field label not supported: spec.containers"):
        c.list("v1", "Pod", NS, field_selector="spec.containers=x")
    assert selectors.field_value({"spec": {"hostNetwork": True}}, "spec.hostNetwork") == "true"


def test_lists_are_in_key_order_and_scoped_to_the_namespace(api):
    api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}},
            {**_pod("z"), "metadata": {"name": "z", "namespace": "other"}}, _pod("b"), _pod("a"))
    c = cl.Cluster(request_timeout_s=5)
    assert [p["metadata"]["name"] for p in c.list("v1", "Pod", namespace=NS)] == ["a", "b"]
    assert [p["metadata"]["name"] for p in c.list("v1", "Pod")] == ["a", "b", "z"]   # all namespaces


# -- server-side apply and patches ---------------------------------------------------------------
SVC_PATH = f"/api/v1/namespaces/{NS}/services/{OBJECTS['Service']['metadata']['name']}"


def test_apply_without_a_field_manager_is_422_as_the_real_server(api):
    r = _raw(api, "PATCH", SVC_PATH, json.dumps(OBJECTS["Service"]).encode(), "application/apply-patch+yaml")
    body = json.loads(r.data)
    assert r.status == 422 and body["reason"] == "Invalid"
    assert body["message"] == ('PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                               'is required for apply patch')
    assert body["details"]["causes"] == [{"reason": "FieldValueRequired", "field": "fieldManager",
                                          "message": "Required value: is required for apply patch"}]


def test_force_on_a_merge_patch_is_422_and_a_merge_patch_of_a_missing_object_404(api):
    r = _raw(api, "PATCH", SVC_PATH + "?force=true", b"{}", "application/merge-patch+json")
    assert r.status == 422 and "force: Forbidden: may not be specified for non-apply patch" in json.loads(r.data)[
        "message"]
    r = _raw(api, "PATCH", SVC_PATH, b"{}", "application/merge-patch+json")
    name = OBJECTS["Service"]["metadata"]["name"]
    assert r.status == 404 and json.loads(r.data)["message"] == f'services "{name}" not found'


def test_an_unknown_patch_type_is_415(api):
    r = _raw(api, "PATCH", SVC_PATH + "?fieldManager=x", b"{}", "text/plain")
    assert r.status == 415 and json.loads(r.data)["reason"] == "UnsupportedMediaType"


@pytest.mark.parametrize("change, words", [
    (lambda o: o.update(apiVersion="v2"), "does not match the expected API version"),
    (lambda o: o["metadata"].update(name="other"), "does not match the name on the URL"),
])
def test_an_apply_body_must_match_its_url(api, change, words):
    body = json.loads(json.dumps(OBJECTS["Service"]))
    change(body)
    r = _raw(api, "PATCH", SVC_PATH + "?fieldManager=x", json.dumps(body).encode(), "application/apply-patch+yaml")
    assert r.status == 400 and words in json.loads(r.data)["message"]


def test_apply_conflicts_with_another_manager_unless_forced(api):
    changed = json.loads(json.dumps(OBJECTS["Service"]))
    changed["spec"]["ports"][0]["port"] = 9999
    api.put(changed, manager="kubectl-edit")
    body = json.dumps(OBJECTS["Service"]).encode()
    r = _raw(api, "PATCH", SVC_PATH + "?fieldManager=llmserve-course", body, "application/apply-patch+yaml")
    status = json.loads(r.data)
    assert r.status == 409 and status["reason"] == "Conflict"
    assert status["message"].startswith('Apply failed with 1 conflict: - conflict with "kubectl-edit": .spec.ports')
    explained = cl.explain(_api_exception(r), "apply Service")     # what the course would show
    assert "Conflict while trying to apply Service" in explained.what and '"kubectl-edit"' in explained.what
    r = _raw(api, "PATCH", SVC_PATH + "?fieldManager=llmserve-course&force=true", body,
             "application/apply-patch+yaml")
    assert r.status == 200 and json.loads(r.data)["spec"]["ports"][0]["port"] == OBJECTS["Service"]["spec"]["ports"][0][
        "port"]


def _api_exception(response):
    from kubernetes.client.exceptions import ApiException
    exc = ApiException(status=response.status, reason=response.reason)
    exc.body = response.data.decode()
    return exc


def test_apply_removes_a_field_the_manager_stops_applying(api):
    c = cl.Cluster(request_timeout_s=5)
    labelled = json.loads(json.dumps(OBJECTS["Service"]))
    labelled["metadata"]["labels"]["extra"] = "yes"
    c.apply(labelled)
    c.apply(OBJECTS["Service"])
    live = api.get("v1", "Service", OBJECTS["Service"]["metadata"]["name"], NS)
    assert "extra" not in live["metadata"]["labels"] and live["metadata"]["generation"] == 1


def test_writes_stamp_uid_resource_version_and_generation(api):
    c = cl.Cluster(request_timeout_s=5)
    c.apply(OBJECTS["Service"])
    first = api.get("v1", "Service", OBJECTS["Service"]["metadata"]["name"], NS)["metadata"]
    changed = json.loads(json.dumps(OBJECTS["Service"]))
    changed["spec"]["ports"][0]["port"] = 81
    c.apply(changed)
    second = api.get("v1", "Service", OBJECTS["Service"]["metadata"]["name"], NS)["metadata"]
    assert second["uid"] == first["uid"] and second["creationTimestamp"] == first["creationTimestamp"]
    assert int(second["resourceVersion"]) > int(first["resourceVersion"]) and second["generation"] == 2


def test_a_secrets_string_data_is_stored_as_base64_data(api):
    cl.Cluster(request_timeout_s=5).apply(OBJECTS["Secret"])
    secret = api.get("v1", "Secret", OBJECTS["Secret"]["metadata"]["name"], NS)
    assert "stringData" not in secret
    assert base64.b64decode(secret["data"]["api-key"]).decode() == OBJECTS["Secret"]["stringData"]["api-key"]


def test_a_json_patch_that_does_not_apply_is_422(api):
    api.put(OBJECTS["PersistentVolume"])
    c = cl.Cluster(request_timeout_s=5)
    ref = cl.ObjectRef.of(OBJECTS["PersistentVolume"])
    with pytest.raises(ClusterError, match="refused the object"):
        c.patch(ref, [{"op": "replace", "path": "/spec/nothing", "value": 1}])
    with pytest.raises(ClusterError, match="refused the object"):
        c.patch(ref, [{"op": "test", "path": "/kind", "value": "Pod"}])
    c.patch(ref, [{"op": "test", "path": "/kind", "value": "PersistentVolume"},
                  {"op": "remove", "path": "/metadata/labels"}])
    assert "labels" not in api.get("v1", "PersistentVolume", OBJECTS["PersistentVolume"]["metadata"]["name"])[
        "metadata"]


# -- Status bodies -----------------------------------------------------------------------------
def test_not_found_is_worded_as_the_real_server(api):
    r = _raw(api, "GET", f"/apis/apps/v1/namespaces/{NS}/deployments/nope")
    assert r.status == 404 and json.loads(r.data) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'deployments.apps "nope" not found', "reason": "NotFound", "code": 404,
        "details": {"name": "nope", "group": "apps", "kind": "deployments"}}
    r = _raw(api, "GET", "/api/v1/nothing-here")
    assert r.status == 404 and json.loads(r.data)["message"] == "the server could not find the requested resource"


def test_create_twice_is_already_exists(api):
    body = json.dumps(OBJECTS["Service"]).encode()
    assert _raw(api, "POST", f"/api/v1/namespaces/{NS}/services", body).status == 201
    r = _raw(api, "POST", f"/api/v1/namespaces/{NS}/services", body)
    assert r.status == 409 and json.loads(r.data)["reason"] == "AlreadyExists"


def test_a_namespaced_object_needs_its_namespace(api):
    r = _raw(api, "POST", "/api/v1/namespaces/elsewhere/services", json.dumps(OBJECTS["Service"]).encode())
    assert r.status == 404 and json.loads(r.data)["details"] == {"name": "elsewhere", "kind": "namespaces"}


def test_deleting_a_namespace_deletes_what_is_in_it(api):
    api.put(_pod("a"), OBJECTS["PersistentVolume"])
    assert _raw(api, "DELETE", f"/api/v1/namespaces/{NS}").status == 200
    assert api.get("v1", "Pod", "a", NS) is None
    assert api.get("v1", "PersistentVolume", OBJECTS["PersistentVolume"]["metadata"]["name"]) is not None


def test_every_request_is_recorded_whole(api):
    _raw(api, "PATCH", SVC_PATH + "?fieldManager=m&force=true", b"kind: Service", "application/apply-patch+yaml")
    [r] = api.requests
    assert (r.method, r.path, r.query, r.body) == ("PATCH", SVC_PATH, {"fieldManager": ["m"], "force": ["true"]},
                                                   b"kind: Service")
    assert r.headers["content-type"] == "application/apply-patch+yaml" and r.code == 400
    assert (r.verb, r.group, r.resource, r.namespace, r.name) == ("patch", "", "services", NS, "vllm-qwen25-coder-7b")


# -- watches ----------------------------------------------------------------------------------
def test_a_watch_streams_the_current_objects_then_each_change(api):
    from kubernetes import watch
    api.put(_pod("a", {"app": "vllm"}), _pod("other"))
    core = cl.Cluster(request_timeout_s=5).core

    def later():
        time.sleep(0.3)
        api.put({**_pod("a", {"app": "vllm"}), "status": {"phase": "Succeeded"}})
        api.store.delete(by_kind("v1", "Pod"), NS, "a")

    threading.Thread(target=later, daemon=True).start()
    start = time.monotonic()
    events = [(e["type"], e["object"].metadata.name, e["object"].status.phase)
              for e in watch.Watch().stream(core.list_namespaced_pod, NS, label_selector="app=vllm",
                                            timeout_seconds=2)]
    assert events == [("ADDED", "a", "Running"), ("MODIFIED", "a", "Succeeded"), ("DELETED", "a", "Succeeded")]
    assert time.monotonic() - start < 4          # it ends at timeoutSeconds
    [sent] = [r for r in api.requests if r.verb == "watch"]
    assert sent.param("labelSelector") == "app=vllm" and sent.param("timeoutSeconds") == "2"


def test_a_watch_from_a_resource_version_sends_only_later_changes(api):
    api.put(_pod("a"))
    since = api.get("v1", "Pod", "a", NS)["metadata"]["resourceVersion"]
    api.put(_pod("b"))
    r = _raw(api, "GET", f"/api/v1/namespaces/{NS}/pods?watch=true&resourceVersion={since}&timeoutSeconds=1")
    lines = [json.loads(line) for line in r.data.decode().splitlines()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [("ADDED", "b")]


# -- the stand-in controllers ---------------------------------------------------------------------
def test_the_stand_in_controllers_run_a_stack_to_ready(live):
    c = cl.Cluster(request_timeout_s=5)
    c.apply(manifests.render("base"))
    claim = live.get("v1", "PersistentVolumeClaim", OBJECTS["PersistentVolumeClaim"]["metadata"]["name"], NS)
    volume = live.get("v1", "PersistentVolume", OBJECTS["PersistentVolume"]["metadata"]["name"])
    assert claim["status"]["phase"] == "Bound" and volume["status"]["phase"] == "Bound"
    assert volume["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
    [pod] = c.pods_of(OBJECTS["Deployment"])
    assert pod["status"]["phase"] == "Running" and pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    assert [e["reason"] for e in c.pod_events(pod)] == ["Scheduled", "Pulled", "Created", "Started"]
    [slice_] = c.list("discovery.k8s.io/v1", "EndpointSlice", NS)
    assert slice_["endpoints"][0]["targetRef"]["name"] == pod["metadata"]["name"]
    assert slice_["ports"][0]["port"] == OBJECTS["Deployment"]["spec"]["template"]["spec"]["containers"][0][
        "ports"][0]["containerPort"]      # the named targetPort resolved
    deployment = live.get("apps/v1", "Deployment", OBJECTS["Deployment"]["metadata"]["name"], NS)
    assert deployment["status"]["availableReplicas"] == 1


def test_a_deleted_pod_is_replaced_and_a_new_template_rolls(live):
    c = cl.Cluster(request_timeout_s=5)
    c.apply(manifests.render("base"))
    [old] = c.pods_of(OBJECTS["Deployment"])
    c.delete_pod(old)
    [new] = c.pods_of(OBJECTS["Deployment"])
    assert new["metadata"]["name"] != old["metadata"]["name"]
    changed = json.loads(json.dumps(OBJECTS["Deployment"]))
    changed["spec"]["template"]["metadata"]["labels"]["revision"] = "2"
    c.apply(changed)
    [rolled] = c.pods_of(changed)
    assert rolled["metadata"]["labels"]["revision"] == "2" and len(c.replicasets_of(changed)) == 2


def test_a_volume_whose_claim_is_deleted_is_released_then_available_again(live):
    c = cl.Cluster(request_timeout_s=5)
    c.apply([OBJECTS[k] for k in ("Namespace", "PersistentVolume", "PersistentVolumeClaim")])
    pv_ref = cl.ObjectRef.of(OBJECTS["PersistentVolume"])
    c.delete(cl.ObjectRef.of(OBJECTS["PersistentVolumeClaim"]))
    assert c.get(pv_ref)["status"]["phase"] == "Released"
    c.patch(pv_ref, [{"op": "remove", "path": "/spec/claimRef/uid"}])
    assert c.get(pv_ref)["status"]["phase"] == "Available"
    c.apply(OBJECTS["PersistentVolumeClaim"])
    assert c.get(pv_ref)["status"]["phase"] == "Bound"


def test_deleting_a_deployment_collects_its_replica_sets_and_pods(live):
    c = cl.Cluster(request_timeout_s=5)
    c.apply(manifests.render("base"))
    c.delete(cl.ObjectRef.of(OBJECTS["Deployment"]))
    assert c.pods_of(OBJECTS["Deployment"]) == [] and c.replicasets_of(OBJECTS["Deployment"]) == []


# -- the port-forward's server side ----------------------------------------------------------------
def test_a_port_forward_that_is_not_a_websocket_upgrade_is_refused(api):
    api.put(_pod("a"))
    r = _raw(api, "GET", f"/api/v1/namespaces/{NS}/pods/a/portforward?ports=8000")
    assert r.status == 400 and b"v4.channel.k8s.io" in r.data


def test_frames_are_parsed_whole_or_kept_for_later():
    masked = bytes([0x82, 0x80 | 3]) + b"\x01\x02\x03\x04" + bytes(c ^ m for c, m in zip(b"\x00hi", b"\x01\x02\x03"))
    frames, rest = fake_pf.parse_frames(masked + masked[:3])
    assert frames == [(fake_pf.OP_BINARY, b"\x00hi")] and rest == masked[:3]
    long = bytes([0x82, 126]) + (300).to_bytes(2, "big") + b"x" * 300
    assert fake_pf.parse_frames(long) == ([(fake_pf.OP_BINARY, b"x" * 300)], b"")
    assert fake_pf.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="   # RFC 6455, 1.3
