"""storage.live: reading the learner's input, the by-hand commands, and each cluster action.

No cluster: a Cluster whose reads and writes are replaced by a scripted volume and claim,
shaped like the API's JSON (https://kubernetes.io/docs/reference/kubernetes-api/config-and-storage-resources/).
"""
from __future__ import annotations

import copy
import json

import pytest

from llmserve.core.errors import ClusterError, CourseError, InputError, ManifestError
from llmserve.storage import checks, live, rules
from llmserve.world import manifests
from llmserve.world.cluster import Cluster, ObjectRef
from tests.storage.objects import REF, pv, pvc


# --- Reading what the learner passes --------------------------------------------------------
def test_read_object_accepts_a_path_yaml_text_and_a_dict():
    text = manifests.to_yaml(live.course_claim())
    from_text = live.read_object(text, "PersistentVolumeClaim")
    from_path = live.read_object("base/model-pvc.yaml", "PersistentVolumeClaim")
    assert from_text == from_path == live.read_object(live.course_claim(), "PersistentVolumeClaim")
    assert checks.check_claim(from_text, live.course_volume()).ok


@pytest.mark.parametrize("bad,error", [
    ("kind: PersistentVolumeClaim\n  metadata: [\n", ManifestError),      # not YAML
    ("just words", ManifestError),                                        # YAML, but not an object
    (manifests.to_yaml(pvc(storage="-1Gi")), InputError),                 # negative size
    (manifests.to_yaml(pvc(accessModes=["ReadOnly"])), ManifestError),    # unknown access mode
    (manifests.to_yaml(pv()), ManifestError),                             # a PV where a claim was expected
    (42, InputError),
])
def test_check_claim_bad_inputs_are_course_errors(bad, error):
    with pytest.raises(error) as exc:
        checks.check_claim(live.read_object(bad, "PersistentVolumeClaim"), live.course_volume())
    assert isinstance(exc.value, CourseError) and "Fix:" in str(exc.value)


def test_missing_file_is_a_manifest_error():
    with pytest.raises(ManifestError, match="No manifest file"):
        live.read_object("examples/storage/nope.yaml", "PersistentVolumeClaim")
    with pytest.raises(ManifestError, match="Pick one of: claim-read-write-many"):
        live.example_text("nope")


def test_two_claims_in_one_text_are_refused():
    text = manifests.to_yaml([pvc(), pvc()])
    with pytest.raises(ManifestError, match="holds 2 PersistentVolumeClaim objects"):
        live.read_object(text, "PersistentVolumeClaim")


def test_the_course_objects_come_from_manifests_base():
    kinds = [o["kind"] for o in live.course_objects()]
    assert kinds == ["Namespace", "PersistentVolume", "PersistentVolumeClaim"]
    assert live.course_claim() == manifests.load_one("base/model-pvc.yaml")
    assert live.base_file("PersistentVolume") == "manifests/base/model-pv.yaml"
    with pytest.raises(ManifestError):
        live.base_object("StatefulSet")


def test_example_text_keeps_the_comments():
    text = live.example_text("claim-without-class")
    assert text.startswith("# BROKEN ON PURPOSE") and live.read_object(text, "PersistentVolumeClaim") == \
        live.example("claim-without-class")


# --- By hand ---------------------------------------------------------------------------------
def test_by_hand_commands_name_the_course_objects():
    assert live.by_hand("apply") == ("kubectl apply -f manifests/base/namespace.yaml "
                                     "-f manifests/base/model-pv.yaml -f manifests/base/model-pvc.yaml")
    assert live.by_hand("describe") == "kubectl describe pvc model-storage-claim -n ai-platform"
    assert live.by_hand("get") == "kubectl get pv/model-storage pvc/model-storage-claim -n ai-platform"
    assert live.by_hand("delete") == "kubectl delete pvc model-storage-claim -n ai-platform"
    with pytest.raises(InputError, match="Ask for one of"):
        live.by_hand("explode")


def test_by_hand_release_is_the_patch_the_lab_applies():
    command = live.by_hand("release")
    assert command.startswith("kubectl patch pv model-storage --type json -p '")
    patch = json.loads(command.split(" -p ", 1)[1].strip("'"))
    released = {"spec": {"claimRef": {"uid": "u", "resourceVersion": "7"}}}
    assert patch == rules.reuse_patch(released)


# --- On a (scripted) cluster ----------------------------------------------------------------
class CoreRecorder:
    """Stands for CoreV1Api: records the patches sent to PersistentVolumes."""

    def __init__(self, cluster):
        self.cluster = cluster

    def patch_persistent_volume(self, name, body, **kwargs):
        self.cluster.patches.append((name, body, kwargs))
        volume = self.cluster.volume
        for op in body:   # what the API server does with each "remove" op
            volume["spec"]["claimRef"].pop(op["path"].rsplit("/", 1)[1], None)
        volume["status"]["phase"] = "Available"   # the PV controller's next sync
        return volume


class Scripted(Cluster):
    """A Cluster whose API is a dict of objects; each get of the claim advances its script."""

    def __init__(self, claim_frames=None, volume=None, pods=(), events=()):  # no kubeconfig needed
        self.request_timeout_s, self.host, self.applied = 1.0, "https://fake", []
        self.claim_frames = list(claim_frames or [None])
        self.volume = volume
        self.pods = list(pods)
        self.event_list = list(events)
        self.patches: list = []
        self.applied_objects: list[dict] = []
        self.deleted: list[str] = []
        self.claim_looks = 0

    @property
    def core(self):
        return CoreRecorder(self)

    def get(self, ref: ObjectRef):
        if ref.kind == "PersistentVolumeClaim":
            frame = self.claim_frames[min(self.claim_looks, len(self.claim_frames) - 1)]
            self.claim_looks += 1
            return frame
        return self.volume

    def list(self, api_version, kind, namespace=None, label_selector=None):
        if kind == "StorageClass":
            return [{"metadata": {"name": "local-path",
                                  "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}]
        return list(self.pods) if kind == "Pod" else []

    def apply(self, objects):
        self.applied_objects += list(objects)
        refs = [ObjectRef.of(o) for o in objects]
        self.applied += refs
        return refs

    def events(self, ref):
        return list(self.event_list)

    def cleanup(self, keep_kinds=("PersistentVolume", "Namespace"), dry_run=False):
        self.deleted += [str(r) for r in self.applied if r.kind not in keep_kinds]
        if self.volume is not None:
            self.volume["status"]["phase"] = "Released"
            self.volume["spec"]["claimRef"].update(uid="old-uid", resourceVersion="41")
        return [f"deleted {r}" for r in self.applied if r.kind not in keep_kinds]


def claim_at(phase: str) -> dict:
    obj = copy.deepcopy(live.course_claim())
    obj["status"] = {"phase": phase}
    if phase == "Bound":
        obj["status"].update(capacity={"storage": "200Gi"}, accessModes=["ReadOnlyMany"])
    return obj


def volume_at(phase: str, uid: str | None = None) -> dict:
    obj = copy.deepcopy(live.course_volume())
    obj["status"] = {"phase": phase}
    if uid:
        obj["spec"]["claimRef"].update(uid=uid, resourceVersion="41")
    return obj


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr("llmserve.core.waiting.pause", lambda s: None)


def test_default_class_reads_the_storage_classes():
    assert live.default_class(Scripted()) == "local-path"


def test_apply_makes_a_released_volume_available_first():
    cluster = Scripted(volume=volume_at("Released", uid="old-uid"))
    lines = live.apply_storage(cluster)
    assert lines[0] == "model-storage was Released: removed the old claim's uid from its claimRef"
    name, body, kwargs = cluster.patches[0]
    assert name == "model-storage" and kwargs["_content_type"] == "application/json-patch+json"
    assert body == [{"op": "remove", "path": "/spec/claimRef/uid"},
                    {"op": "remove", "path": "/spec/claimRef/resourceVersion"}]
    assert kwargs["_request_timeout"] == 1.0   # the patch went through Cluster.call
    assert [o["kind"] for o in cluster.applied_objects] == ["Namespace", "PersistentVolume", "PersistentVolumeClaim"]
    assert lines[1:] == ["applied Namespace ai-platform", "applied PersistentVolume model-storage",
                         "applied PersistentVolumeClaim ai-platform/model-storage-claim"]


def test_apply_leaves_an_available_volume_alone():
    cluster = Scripted(volume=volume_at("Available"))
    assert live.make_available(cluster) == [] and cluster.patches == []
    assert live.make_available(Scripted(volume=None)) == []


def test_wait_for_claim_reports_each_change_once():
    cluster = Scripted([None, claim_at("Pending"), claim_at("Pending"), claim_at("Bound")])
    seen = []
    bound = live.wait_for_claim(cluster, progress=lambda t, s: seen.append(s))
    assert bound["status"]["phase"] == "Bound"
    assert seen == ["the claim does not exist yet", "Pending",
                    "Bound to model-storage (200Gi, ReadOnlyMany)"]


def test_wait_for_claim_times_out_with_the_events(monkeypatch):
    clock = iter(range(0, 10_000, 10))
    monkeypatch.setattr("llmserve.core.waiting.now", lambda: next(clock))
    events = [{"type": "Warning", "reason": "VolumeMismatch",
               "message": 'Cannot bind to requested volume "model-storage": requested PV is too small'}]
    with pytest.raises(ClusterError) as exc:
        live.wait_for_claim(Scripted([claim_at("Pending")], events=events), timeout_s=30)
    assert "not ready after 30 s (last status: Pending)" in exc.value.what
    assert "VolumeMismatch: Cannot bind" in exc.value.what and "kubectl describe" in exc.value.fix


def test_a_lost_claim_stops_the_wait():
    with pytest.raises(ClusterError, match="Lost"):
        live.wait_for_claim(Scripted([claim_at("Lost")]))


def test_format_events():
    assert "No events" in live.format_events([])
    text = live.format_events([{"type": "Warning", "reason": "VolumeMismatch", "count": 3,
                                "message": 'Cannot bind to requested volume "model-storage": requested PV is too small'}])
    assert "VolumeMismatch" in text and "(x3)" in text
    assert "VolumeMismatch" in live.claim_events(Scripted(events=[{"type": "Warning", "reason": "VolumeMismatch",
                                                                   "message": "m"}]))


def test_delete_claim_keeps_the_volume_and_makes_it_available():
    cluster = Scripted(volume=volume_at("Bound"))
    live.apply_storage(cluster)
    lines = live.delete_claim_keep_volume(cluster)
    assert cluster.deleted == ["PersistentVolumeClaim ai-platform/model-storage-claim"]
    assert lines == ["deleted PersistentVolumeClaim ai-platform/model-storage-claim",
                     "after deleting the claim, model-storage is Released",
                     "removed the old claim's uid from the claimRef of model-storage",
                     "model-storage is Available"]
    assert "uid" not in cluster.volume["spec"]["claimRef"]


def test_delete_claim_waits_for_the_pods_that_mount_it():
    pod = {"metadata": {"name": "vllm-1"}, "spec": {"volumes": [
        {"name": "models", "persistentVolumeClaim": {"claimName": "model-storage-claim"}}]}}
    cluster = Scripted(volume=volume_at("Bound"), pods=[pod])
    assert live.delete_claim_keep_volume(cluster) == [
        "kept the claim: Pods vllm-1 mount it (delete their Deployment first)"]
    assert cluster.deleted == []


# --- Phases: what the waits wait for (doc: persistent-volumes/#phase) ---------------------------------------------------------
def test_claim_phase_condition():
    assert live.claim_phase(None) == (False, "the claim does not exist yet")
    done, status = live.claim_phase({"metadata": {"name": "c"}, "spec": {}, "status": {"phase": "Pending"}})
    assert not done and status == "Pending"
    done, status = live.claim_phase({"metadata": {"name": "c"}, "spec": {"storageClassName": "standard"},
                                      "status": {"phase": "Pending"}})
    assert not done and status.startswith("Pending (class 'standard'")
    done, status = live.claim_phase({"metadata": {"name": "c"}, "spec": {"volumeName": "model-storage"},
                                      "status": {"phase": "Bound", "capacity": {"storage": "200Gi"},
                                                 "accessModes": ["ReadOnlyMany"]}})
    assert done and status == "Bound to model-storage (200Gi, ReadOnlyMany)"
    with pytest.raises(ClusterError, match="Lost"):
        live.claim_phase({"metadata": {"name": "c"}, "spec": {}, "status": {"phase": "Lost"}})


def test_volume_phase_condition():
    assert live.volume_phase({"spec": {}, "status": {"phase": "Bound"}})[0]
    assert live.volume_phase({"spec": {}, "status": {"phase": "Available"}}) == (False, "Available")
    assert live.volume_phase({"spec": {"claimRef": REF}, "status": {"phase": "Available"}}) == \
        (False, "Available (claimRef ai-platform/model-storage-claim)")
    assert live.volume_phase(None) == (False, "the volume does not exist yet")
    released = {"spec": {"claimRef": {**REF, "uid": "1234"}}, "status": {"phase": "Released"}}
    assert live.volume_phase_in("Released", "Available")(released) == (True, "Released")
    assert live.volume_phase_in("Available")(released) == (False, "Released")
    assert live.volume_phase_in("Available")(None)[0] is False


# --- The model folder on disk ---------------------------------------------------------------
def test_list_model_dir_is_find_type_f(tmp_path):
    model = tmp_path / "qwen25-coder-7b-awq"
    model.mkdir()
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        (model / name).write_text("{}")
    (tmp_path / "blob").write_text("x")
    (model / "linked.json").symlink_to(tmp_path / "blob")   # a hub cache's files are symlinks
    assert live.list_model_dir(tmp_path) == ["blob", "qwen25-coder-7b-awq/config.json",
                                             "qwen25-coder-7b-awq/linked.json",
                                             "qwen25-coder-7b-awq/model.safetensors",
                                             "qwen25-coder-7b-awq/tokenizer.json"]
    report = live.inspect_model_folder(tmp_path)
    assert report.ok and "1 safetensors file" in report.findings[0].what


def test_list_model_dir_of_a_missing_folder(tmp_path):
    with pytest.raises(InputError, match="is not a directory"):
        live.list_model_dir(tmp_path / "nope")
    assert not live.inspect_model_folder(tmp_path).ok   # empty: nothing under /models/qwen25-coder-7b-awq
