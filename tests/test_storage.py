"""The PV/PVC binding rules and the learner's checkers, case by case against the Kubernetes docs.

Doc references (each case cites one):
  [PV-binding]   https://kubernetes.io/docs/concepts/storage/persistent-volumes/#binding
  [PV-reserve]   https://kubernetes.io/docs/concepts/storage/persistent-volumes/#reserving-a-persistentvolume
  [PV-access]    https://kubernetes.io/docs/concepts/storage/persistent-volumes/#access-modes
  [PV-class]     https://kubernetes.io/docs/concepts/storage/persistent-volumes/#class  (PV) and #class-1 (PVC)
  [PV-selector]  https://kubernetes.io/docs/concepts/storage/persistent-volumes/#selector
  [PV-vmode]     https://kubernetes.io/docs/concepts/storage/persistent-volumes/#binding-block-volumes
  [PV-reclaim]   https://kubernetes.io/docs/concepts/storage/persistent-volumes/#reclaiming
  [PV-dynamic]   https://kubernetes.io/docs/concepts/storage/persistent-volumes/#dynamic
  [quantity]     https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/
  [labels]       https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors
  [controller]   kubernetes/kubernetes pkg/controller/volume/persistentvolume/pv_controller.go
                 (syncUnboundClaim: a claim whose volumeName names a volume whose claimRef names
                 the claim is bound "finishing the binding" without checkVolumeSatisfyClaim)
"""
from __future__ import annotations

from fractions import Fraction

import pytest

from llmserve import storage
from llmserve.world import manifests
from llmserve.core.errors import ClusterError, CourseError, InputError, ManifestError

GI = 2**30


def pv(**over) -> dict:
    """A free hostPath volume like the course's, without claimRef unless given."""
    obj = {"apiVersion": "v1", "kind": "PersistentVolume",
           "metadata": {"name": "model-storage", "labels": {"app": "llm", "tier": "weights"}},
           "spec": {"capacity": {"storage": "200Gi"}, "accessModes": ["ReadOnlyMany"],
                    "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                    "hostPath": {"path": "/models", "type": "Directory"}}}
    obj["spec"].update(over)
    return obj


def pvc(**over) -> dict:
    obj = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": "model-storage-claim", "namespace": "ai-platform"},
           "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "",
                    "resources": {"requests": {"storage": "200Gi"}}}}
    for k, v in over.items():
        if v is None:
            obj["spec"].pop(k, None)
        elif k == "storage":
            obj["spec"]["resources"]["requests"]["storage"] = v
        else:
            obj["spec"][k] = v
    return obj


REF = {"namespace": "ai-platform", "name": "model-storage-claim"}


# --- Quantities [quantity] --------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("200Gi", 200 * GI),                  # binary suffix: Gi = 2^30
    ("1.5Ti", 3 * 2**39),                 # fractional value with a binary suffix
    ("500M", 500 * 10**6),                # decimal suffix: M = 10^6
    ("1k", 1000),                         # lower-case k is the decimal kilo
    ("1Ki", 1024),
    ("12e3", 12000),                      # decimal exponent form
    ("1073741824", GI),                   # plain bytes as a string
    (1073741824, GI),                     # plain bytes as a YAML integer
    ("0", 0),
])
def test_parse_quantity(text, expected):
    assert storage.parse_quantity(text) == expected


@pytest.mark.parametrize("bad,words", [
    ("-5Gi", "negative"),
    ("200GB", "'GB'"),          # not a Kubernetes suffix: the message names it and suggests G or Gi
    ("200gi", "Gi"),            # suffixes are case-sensitive
    ("lots", "not a Kubernetes quantity"),
    ("", "not a Kubernetes quantity"),
    (None, "not a quantity"),
])
def test_bad_quantities_are_input_errors(bad, words):
    with pytest.raises(InputError) as exc:
        storage.parse_quantity(bad)
    assert words in str(exc.value)
    assert "Fix:" in str(exc.value)


def test_format_bytes_round_trips():
    for text in ("200Gi", "1Ti", "512Mi", "7Ki"):
        assert storage.format_bytes(storage.parse_quantity(text)) == text
    assert storage.format_bytes(storage.parse_quantity("1.5Ti")) == "1536Gi"


# --- Capacity [PV-binding]: "the user will always get at least what they asked for" ----
def test_claim_smaller_than_volume_binds():
    v = storage.binding_verdict(pv(), pvc(storage="100Gi"))
    assert v.binds and v.outcome == "binds"


def test_claim_equal_to_volume_binds():
    assert storage.binding_verdict(pv(), pvc(storage="200Gi")).binds


def test_claim_larger_than_volume_does_not_bind():
    # [PV-binding] "a cluster provisioned with many 50Gi PVs would not match a PVC requesting 100Gi"
    v = storage.binding_verdict(pv(capacity={"storage": "50Gi"}), pvc(storage="100Gi"))
    assert not v.binds and v.outcome == "pending"
    assert any("the claim asks 100Gi but the volume has 50Gi" in r for r in v.reasons)


def test_capacity_compares_exactly_across_units():
    # 200Gi = 214748364800 bytes > 200G = 2e11 bytes: a 200G claim fits a 200Gi volume, not the reverse.
    assert storage.binding_verdict(pv(), pvc(storage="200G")).binds
    assert not storage.binding_verdict(pv(capacity={"storage": "200G"}), pvc(storage="200Gi")).binds


# --- Access modes [PV-access]: the volume must offer every mode the claim asks ----------
@pytest.mark.parametrize("volume_modes,claim_modes,binds", [
    (["ReadOnlyMany"], ["ReadOnlyMany"], True),
    (["ReadOnlyMany"], ["ReadWriteOnce"], False),
    (["ReadOnlyMany"], ["ReadWriteMany"], False),
    (["ReadWriteOnce", "ReadOnlyMany"], ["ReadOnlyMany"], True),   # "you might be granted more, but never less"
    (["ReadWriteOnce", "ReadOnlyMany"], ["ReadWriteOnce", "ReadOnlyMany"], True),
    (["ReadWriteOnce"], ["ReadWriteOnce", "ReadOnlyMany"], False),  # every requested mode must be offered
    (["ReadWriteOncePod"], ["ReadWriteOncePod"], True),
    (["ReadWriteOnce"], ["ReadWriteOncePod"], False),
])
def test_access_modes(volume_modes, claim_modes, binds):
    v = storage.binding_verdict(pv(accessModes=volume_modes), pvc(accessModes=claim_modes))
    assert v.binds is binds
    if not binds:
        missing = [m for m in claim_modes if m not in volume_modes]
        assert any(f"access mode {', '.join(missing)}" in r and "(it offers" in r for r in v.reasons)


def test_access_mode_message_is_exact():
    v = storage.binding_verdict(pv(), pvc(accessModes=["ReadWriteMany"]))
    assert any(r.startswith("access mode ReadWriteMany is not offered by the volume (it offers ReadOnlyMany)")
               for r in v.reasons)


@pytest.mark.parametrize("mode,suggestion", [("ROX", "ReadOnlyMany"), ("readonlymany", "ReadOnlyMany"),
                                             ("ReadWriteAll", None)])
def test_unknown_access_mode_is_a_manifest_error(mode, suggestion):
    # [PV-access] lists exactly four modes; the API server rejects others.
    with pytest.raises(ManifestError) as exc:
        storage.binding_verdict(pv(), pvc(accessModes=[mode]))
    assert repr(mode) in str(exc.value)
    if suggestion:
        assert repr(suggestion) in str(exc.value)


def test_readwriteoncepod_cannot_be_combined():
    with pytest.raises(ManifestError, match="cannot be combined"):
        storage.binding_verdict(pv(), pvc(accessModes=["ReadWriteOncePod", "ReadWriteOnce"]))


def test_no_access_modes_is_a_manifest_error():
    with pytest.raises(ManifestError, match="no accessModes"):
        storage.binding_verdict(pv(), pvc(accessModes=[]))


# --- Class [PV-class] -----------------------------------------------------------------
def test_empty_class_on_both_binds():
    # "A PVC with its storageClassName set equal to "" ... can only be bound to PVs with no class"
    assert storage.binding_verdict(pv(), pvc()).binds


def test_unset_class_on_volume_counts_as_no_class():
    volume = pv()
    del volume["spec"]["storageClassName"]  # "A PV with no storageClassName has no class"
    assert storage.binding_verdict(volume, pvc()).binds


def test_class_mismatch_does_not_bind():
    v = storage.binding_verdict(pv(), pvc(storageClassName="standard"))
    assert not v.binds
    assert any("the claim's class 'standard' ≠ the volume's class ''" in r for r in v.reasons)
    # A claim naming the default class, with no volume for it, is provisioned a new volume [PV-dynamic].
    assert v.outcome == "provisions"


def test_named_non_default_class_may_or_may_not_exist():
    v = storage.binding_verdict(pv(), pvc(storageClassName="fast"), default_storage_class="standard")
    assert not v.binds and v.outcome == "pending-or-provisions"


def test_same_named_class_binds():
    assert storage.binding_verdict(pv(storageClassName="manual"), pvc(storageClassName="manual")).binds


def test_unset_claim_class_gets_the_default_and_a_new_empty_volume():
    # [PV-class] "All PVCs that have no storageClassName can be bound only to PVs of that default."
    v = storage.binding_verdict(pv(), pvc(storageClassName=None), default_storage_class="standard")
    assert not v.binds and v.outcome == "provisions" and v.claim_class == "standard"
    assert any(r.startswith("no storageClassName: the admission plugin fills in the default StorageClass "
                            "'standard'") for r in v.reasons)
    assert any("NEW, EMPTY volume" in r for r in v.reasons)


def test_unset_claim_class_without_a_default_means_no_class():
    # [PV-class] "If the administrator does not specify a default, the cluster responds ... as if the
    # admission plugin were turned off": the claim then binds only to PVs with no class.
    v = storage.binding_verdict(pv(), pvc(storageClassName=None), default_storage_class=None)
    assert v.binds and v.claim_class == ""


def test_beta_annotation_counts_as_class():
    # [PV-class] "the annotation volume.beta.kubernetes.io/storage-class ... is still working"
    claim = pvc(storageClassName=None)
    claim["metadata"]["annotations"] = {"volume.beta.kubernetes.io/storage-class": ""}
    assert storage.binding_verdict(pv(), claim).binds


# --- Selector [PV-selector] -------------------------------------------------------------
@pytest.mark.parametrize("selector,binds", [
    ({"matchLabels": {"app": "llm"}}, True),
    ({"matchLabels": {"app": "x"}}, False),
    ({"matchLabels": {"app": "llm", "tier": "weights"}}, True),
    ({"matchLabels": {"app": "llm", "tier": "cache"}}, False),           # all requirements are ANDed
    ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["weights", "x"]}]}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["weights"]}]}, False),
    ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, True),
    ({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, False),
    ({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}, True),
    ({"matchLabels": {"app": "llm"},
      "matchExpressions": [{"key": "tier", "operator": "In", "values": ["cache"]}]}, False),
])
def test_selector(selector, binds):
    v = storage.binding_verdict(pv(), pvc(selector=selector))
    assert v.binds is binds
    if not binds:
        assert any("does not match the volume's labels" in r for r in v.reasons)
        # [PV-selector] note: "a PVC with a non-empty selector can't have a PV dynamically provisioned"
        assert v.outcome == "pending"


def test_selector_message_names_the_requirement():
    v = storage.binding_verdict(pv(), pvc(selector={"matchLabels": {"app": "x"}}))
    assert any(r.startswith("selector app=x does not match the volume's labels") for r in v.reasons)


def test_bad_selector_operator_is_a_manifest_error():
    with pytest.raises(ManifestError, match="operator 'Equals'"):
        storage.binding_verdict(pv(), pvc(selector={"matchExpressions": [{"key": "a", "operator": "Equals"}]}))


@pytest.mark.parametrize("text,expected", [
    ("app=x", {"matchLabels": {"app": "x"}}),
    ("app=x, tier in (a,b)", {"matchLabels": {"app": "x"},
                              "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}),
    ("gpu,!legacy", {"matchExpressions": [{"key": "gpu", "operator": "Exists"},
                                          {"key": "legacy", "operator": "DoesNotExist"}]}),
    ("tier!=x", {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x"]}]}),
    ("", None),
])
def test_selector_text(text, expected):
    # [labels] equality-based (=, ==, !=) and set-based (in, notin, exists, !key) requirements
    assert storage.parse_selector_text(text) == expected


def test_selector_text_rejects_garbage():
    with pytest.raises(InputError, match="not a label requirement"):
        storage.parse_selector_text("app => x")


# --- volumeName and claimRef [PV-reserve] --------------------------------------------------
def test_volume_name_other_volume():
    v = storage.binding_verdict(pv(), pvc(volumeName="other"))
    assert not v.binds and v.outcome == "pending"
    assert any("the claim names volumeName 'other'" in r for r in v.reasons)


def test_volume_name_ignores_selector():
    # [PV-reserve] "The binding happens regardless of some volume matching criteria"
    v = storage.binding_verdict(pv(), pvc(volumeName="model-storage", selector={"matchLabels": {"app": "x"}}))
    assert v.binds and any("selector is ignored" in w for w in v.warnings)


@pytest.mark.parametrize("change,words", [
    ({"storage": "300Gi"}, "the claim asks 300Gi but the volume has 200Gi"),
    ({"storageClassName": "standard"}, "the claim's class 'standard' ≠ the volume's class ''"),
    ({"accessModes": ["ReadWriteOnce"]}, "access mode ReadWriteOnce is not offered"),
])
def test_volume_name_still_checks_class_modes_size(change, words):
    # [PV-reserve] "The control plane still checks that storage class, access modes, and requested
    # storage size are valid."
    v = storage.binding_verdict(pv(), pvc(volumeName="model-storage", **change))
    assert not v.binds and v.outcome == "pending"   # a claim with volumeName is never provisioned
    assert any(words in r for r in v.reasons)


def test_volume_mode_mismatch():
    # [PV-vmode] PV Filesystem (or unspecified) with PVC Block: NO BIND
    v = storage.binding_verdict(pv(), pvc(volumeMode="Block"))
    assert not v.binds and any("volumeMode Block" in r for r in v.reasons)
    assert storage.binding_verdict(pv(volumeMode="Filesystem"), pvc()).binds   # unspecified = Filesystem


def test_claim_ref_to_another_claim_blocks():
    v = storage.binding_verdict(pv(claimRef={"namespace": "ns", "name": "other"}), pvc())
    assert not v.binds
    assert any("the volume is pre-bound by claimRef to ns/other" in r for r in v.reasons)


def test_claim_ref_to_another_claim_blocks_even_with_volume_name():
    v = storage.binding_verdict(pv(claimRef={"namespace": "ns", "name": "other"}), pvc(volumeName="model-storage"))
    assert not v.binds and any("pre-bound by claimRef to ns/other" in r for r in v.reasons)


def test_claim_ref_in_another_namespace_does_not_match():
    v = storage.binding_verdict(pv(claimRef={"namespace": "default", "name": "model-storage-claim"}), pvc())
    assert not v.binds


def test_claim_ref_to_this_claim_skips_class_and_selector_not_size():
    # [controller] FindMatchingVolume returns a volume pre-bound to the claim before comparing
    # class and selector; capacity, volumeMode and (via the access-mode index) modes still apply.
    volume = pv(claimRef=REF)
    v = storage.binding_verdict(volume, pvc(storageClassName="other", selector={"matchLabels": {"a": "b"}}))
    assert v.binds and any("ignored because the volume's claimRef names this claim" in w for w in v.warnings)
    assert not storage.binding_verdict(volume, pvc(storage="300Gi")).binds
    assert not storage.binding_verdict(volume, pvc(accessModes=["ReadWriteMany"])).binds


def test_pre_bound_both_ways_binds_without_checks_but_warns():
    # [controller] volumeName + claimRef naming each other: "volume already bound, finishing the binding"
    v = storage.binding_verdict(pv(claimRef=REF), pvc(volumeName="model-storage", storage="300Gi"))
    assert v.binds and v.path.startswith("pre-bound both ways")
    assert any("300Gi" in w and "not checked" in w for w in v.warnings)


def test_course_pair_binds_cleanly():
    v = storage.binding_verdict(storage.course_volume(), storage.course_claim())
    assert v.binds and v.warnings == [] and v.path.startswith("pre-bound both ways")


def test_free_match_warns_that_another_claim_could_take_it():
    v = storage.binding_verdict(pv(), pvc())
    assert v.binds and any("pre-bind with volumeName" in w for w in v.warnings)


# --- Checkers ---------------------------------------------------------------------------
def test_check_course_claim_is_ok():
    report = storage.check_claim("base/model-pvc.yaml")
    assert report.ok and report.verdict.binds, str(report)


def test_check_claim_without_class_example():
    report = storage.check_claim("examples/storage/claim-without-class.yaml",
                                 pv="examples/storage/volume-unreserved.yaml")
    assert not report.ok and report.verdict.outcome == "provisions"
    assert any('storageClassName: ""' in f.fix for f in report.errors)


def test_check_claim_too_big_example():
    report = storage.check_pair("examples/storage/volume-unreserved.yaml", "examples/storage/claim-too-big.yaml")
    assert not report.ok
    assert any("the claim asks 300Gi but the volume has 200Gi" in f.what for f in report.errors)


def test_every_broken_example_is_schema_valid_and_reported():
    for name in ("claim-without-class", "claim-too-big", "claim-read-write-many", "claim-wrong-selector"):
        rel = f"examples/storage/{name}.yaml"
        assert not manifests.validate(manifests.load(rel)), name
        report = storage.check_claim(rel, pv="examples/storage/volume-unreserved.yaml")
        assert not report.ok, (name, str(report))


def test_check_claim_accepts_yaml_text_and_dicts():
    text = manifests.to_yaml(storage.course_claim())
    assert storage.check_claim(text).ok
    assert storage.check_claim(storage.course_claim()).ok


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
        storage.check_claim(bad)
    assert isinstance(exc.value, CourseError) and "Fix:" in str(exc.value)


def test_missing_file_is_a_manifest_error():
    with pytest.raises(ManifestError, match="No manifest file"):
        storage.check_claim("examples/storage/nope.yaml")


def test_check_volume_reclaim_policies():
    # [PV-reclaim] Retain keeps the data; Recycle scrubs (rm -rf); Delete removes the storage asset.
    assert storage.check_volume(pv(claimRef=REF)).ok
    for policy in ("Recycle", "Delete"):
        report = storage.check_volume(pv(persistentVolumeReclaimPolicy=policy, claimRef=REF))
        assert not report.ok and any("Retain" in f.fix for f in report.errors)


def test_check_volume_warns_hostpath_access_modes_are_not_enforced():
    # [PV-access] hostPath supports ReadWriteOnce only; "access modes do not enforce write protection"
    report = storage.check_volume("base/model-pv.yaml")
    assert report.ok and any("never enforced" in f.what for f in report.warnings)


def test_check_volume_claimref_without_namespace():
    report = storage.check_volume(pv(claimRef={"name": "model-storage-claim"}))
    assert not report.ok


def test_local_pv_example_has_node_affinity():
    obj = manifests.load_one("examples/storage/local-pv.yaml")
    assert obj["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert storage.check_volume(obj).ok
    assert storage.binding_verdict(obj, storage.course_claim()).binds


def test_check_mount_course_deployment():
    assert storage.check_mount("base/vllm-deployment.yaml").ok


def test_check_mount_read_write_pod_example():
    report = storage.check_mount("examples/storage/pod-mounts-read-write.yaml")
    assert not report.ok and any("readOnly: true" in f.fix for f in report.errors)


def test_check_mount_model_outside_mount():
    dep = manifests.load_one("base/vllm-deployment.yaml")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    c["args"] = ["--model=/weights/qwen" if a.startswith("--model=") else a for a in c["args"]]
    report = storage.check_mount(dep)
    assert not report.ok and any("not inside any mount" in f.what for f in report.errors)


def test_check_mount_without_the_claim():
    dep = manifests.load_one("base/vllm-deployment.yaml")
    dep["spec"]["template"]["spec"]["volumes"] = [v for v in dep["spec"]["template"]["spec"]["volumes"]
                                                  if "persistentVolumeClaim" not in v]
    assert not storage.check_mount(dep).ok


# --- Model directory layout ----------------------------------------------------------------
PLAIN = ["qwen25-coder-7b-awq/config.json", "qwen25-coder-7b-awq/generation_config.json",
         "qwen25-coder-7b-awq/tokenizer.json", "qwen25-coder-7b-awq/tokenizer_config.json",
         "qwen25-coder-7b-awq/vocab.json", "qwen25-coder-7b-awq/merges.txt",
         "qwen25-coder-7b-awq/model-00001-of-00002.safetensors",
         "qwen25-coder-7b-awq/model-00002-of-00002.safetensors",
         "qwen25-coder-7b-awq/model.safetensors.index.json"]


def test_plain_model_dir_is_ok():
    report = storage.check_model_dir(PLAIN)
    assert report.ok and "2 safetensors files" in report.findings[0].what


def test_hub_cache_layout_is_explained():
    snap = "models--Qwen--Qwen2.5-Coder-7B-Instruct-AWQ/snapshots/0123456789abcdef0123456789abcdef01234567"
    report = storage.check_model_dir([f"{snap}/config.json", f"{snap}/model.safetensors"])
    assert not report.ok and snap in report.errors[0].fix


def test_model_dir_missing_pieces():
    report = storage.check_model_dir([p for p in PLAIN if not p.endswith(("config.json", "tokenizer.json",
                                                                           "vocab.json"))])
    whats = " ".join(f.what for f in report.errors)
    assert "config.json" in whats and "tokenizer" in whats


# --- Conditions for Cluster.wait_for ----------------------------------------------------------
def test_claim_phase_condition():
    assert storage.claim_phase(None) == (False, "the claim does not exist yet")
    done, status = storage.claim_phase({"metadata": {"name": "c"}, "spec": {}, "status": {"phase": "Pending"}})
    assert not done and status.startswith("Pending")
    done, status = storage.claim_phase({"metadata": {"name": "c"}, "spec": {"volumeName": "model-storage"},
                                        "status": {"phase": "Bound", "capacity": {"storage": "200Gi"},
                                                   "accessModes": ["ReadOnlyMany"]}})
    assert done and status == "Bound to model-storage (200Gi, ReadOnlyMany)"
    with pytest.raises(ClusterError, match="Lost"):
        storage.claim_phase({"metadata": {"name": "c"}, "spec": {}, "status": {"phase": "Lost"}})


def test_volume_phase_condition():
    assert storage.volume_phase({"spec": {}, "status": {"phase": "Bound"}})[0]
    assert storage.volume_phase({"spec": {}, "status": {"phase": "Available"}}) == (False, "Available")


def test_format_events():
    assert "No events" in storage.format_events([])
    text = storage.format_events([{"type": "Warning", "reason": "VolumeMismatch", "count": 3,
                                   "message": 'Cannot bind to requested volume "model-storage": requested PV is too small'}])
    assert "VolumeMismatch" in text and "(x3)" in text


def test_course_manifests_keep_the_contract():
    """The names, labels and fields other chapters rely on (and the brief fixes)."""
    vol, claim = storage.course_volume(), storage.course_claim()
    assert vol["spec"]["storageClassName"] == "" and claim["spec"]["storageClassName"] == ""
    assert vol["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert vol["spec"]["claimRef"] == REF and claim["spec"]["volumeName"] == "model-storage"
    assert storage.parse_quantity(vol["spec"]["capacity"]["storage"]) == 200 * GI
    assert vol["spec"]["hostPath"]["path"] == "/models"
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"]
    for obj in (vol, claim, manifests.load_one("base/namespace.yaml")):
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "vllm-course"
    assert Fraction(storage.claim_request(claim)) == 200 * GI


def test_reuse_patch_removes_only_the_old_uid():
    # [PV-reclaim] Retain: after the claim is deleted the volume is "released" but "not yet available
    # for another claim"; dropping the old claim's uid from claimRef makes the reservation by name usable.
    released = {"spec": {"claimRef": {"namespace": "ai-platform", "name": "model-storage-claim",
                                      "uid": "1234", "resourceVersion": "99"}}, "status": {"phase": "Released"}}
    assert storage.reuse_patch(released) == [{"op": "remove", "path": "/spec/claimRef/uid"},
                                             {"op": "remove", "path": "/spec/claimRef/resourceVersion"}]
    assert storage.reuse_patch(storage.course_volume()) == []
    assert storage.volume_phase_in("Released", "Available")(released) == (True, "Released")
    assert storage.volume_phase_in("Available")(None)[0] is False


def test_pods_using_claim():
    pods = [{"metadata": {"name": "vllm-1"}, "spec": {"volumes": [
        {"name": "models", "persistentVolumeClaim": {"claimName": "model-storage-claim"}}]}},
            {"metadata": {"name": "other"}, "spec": {"volumes": [{"name": "x", "emptyDir": {}}]}}]
    assert storage.pods_using_claim(pods) == ["vllm-1"]


def test_default_storage_class():
    # https://kubernetes.io/docs/concepts/storage/storage-classes/#default-storageclass :
    # the annotation storageclass.kubernetes.io/is-default-class: "true" marks the default.
    kind_standard = {"metadata": {"name": "standard", "creationTimestamp": "2026-01-01T00:00:00Z",
                                  "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}
    other = {"metadata": {"name": "fast", "annotations": {"storageclass.kubernetes.io/is-default-class": "false"}}}
    assert storage.default_storage_class([other, kind_standard]) == "standard"
    assert storage.default_storage_class([other]) is None
    assert storage.default_storage_class([]) is None
