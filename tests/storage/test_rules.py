"""The PV/PVC binding rules, case by case against the Kubernetes docs and the PV controller.

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

from llmserve.core.errors import InputError, ManifestError
from llmserve.core.quantity import format_bytes, parse_quantity
from llmserve.storage import live, rules
from llmserve.world import manifests
from tests.storage.objects import REF, pv, pvc

GI = 2**30


# --- Sizes, as the rules compare them (core.quantity) [quantity] ---------------------
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
    assert parse_quantity(text) == expected
    assert rules.claim_request(pvc(storage=text)) == expected   # the claim is read through the same parser


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
        parse_quantity(bad)
    assert words in str(exc.value)
    assert "Fix:" in str(exc.value)


def test_a_bad_claim_size_names_the_claim():
    with pytest.raises(InputError, match="storage request of claim ai-platform/model-storage-claim"):
        rules.claim_request(pvc(storage="200GB"))
    with pytest.raises(ManifestError, match="requests no storage"):
        rules.claim_request({"kind": "PersistentVolumeClaim", "metadata": {"name": "c"}, "spec": {}})


def test_format_bytes_round_trips():
    for text in ("200Gi", "1Ti", "512Mi", "7Ki"):
        assert format_bytes(parse_quantity(text)) == text
    assert format_bytes(parse_quantity("1.5Ti")) == "1536Gi"


# --- Capacity [PV-binding]: "the user will always get at least what they asked for" ----
def test_claim_smaller_than_volume_binds():
    v = rules.binding_verdict(pv(), pvc(storage="100Gi"))
    assert v.binds and v.outcome == "binds"


def test_claim_equal_to_volume_binds():
    assert rules.binding_verdict(pv(), pvc(storage="200Gi")).binds


def test_claim_larger_than_volume_does_not_bind():
    # [PV-binding] "a cluster provisioned with many 50Gi PVs would not match a PVC requesting 100Gi"
    v = rules.binding_verdict(pv(capacity={"storage": "50Gi"}), pvc(storage="100Gi"))
    assert not v.binds and v.outcome == "pending"
    assert any("the claim asks 100Gi but the volume has 50Gi" in r for r in v.reasons)


def test_capacity_compares_exactly_across_units():
    # 200Gi = 214748364800 bytes > 200G = 2e11 bytes: a 200G claim fits a 200Gi volume, not the reverse.
    assert rules.binding_verdict(pv(), pvc(storage="200G")).binds
    assert not rules.binding_verdict(pv(capacity={"storage": "200G"}), pvc(storage="200Gi")).binds


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
    v = rules.binding_verdict(pv(accessModes=volume_modes), pvc(accessModes=claim_modes))
    assert v.binds is binds
    if not binds:
        missing = [m for m in claim_modes if m not in volume_modes]
        assert any(f"access mode {', '.join(missing)}" in r and "(it offers" in r for r in v.reasons)


def test_access_mode_message_is_exact():
    v = rules.binding_verdict(pv(), pvc(accessModes=["ReadWriteMany"]))
    assert any(r.startswith("access mode ReadWriteMany is not offered by the volume (it offers ReadOnlyMany)")
               for r in v.reasons)


@pytest.mark.parametrize("mode,suggestion", [("ROX", "ReadOnlyMany"), ("readonlymany", "ReadOnlyMany"),
                                             ("ReadWriteAll", None)])
def test_unknown_access_mode_is_a_manifest_error(mode, suggestion):
    # [PV-access] lists exactly four modes; the API server rejects others.
    with pytest.raises(ManifestError) as exc:
        rules.binding_verdict(pv(), pvc(accessModes=[mode]))
    assert repr(mode) in str(exc.value)
    if suggestion:
        assert repr(suggestion) in str(exc.value)


def test_readwriteoncepod_cannot_be_combined():
    with pytest.raises(ManifestError, match="cannot be combined"):
        rules.binding_verdict(pv(), pvc(accessModes=["ReadWriteOncePod", "ReadWriteOnce"]))


def test_no_access_modes_is_a_manifest_error():
    with pytest.raises(ManifestError, match="no accessModes"):
        rules.binding_verdict(pv(), pvc(accessModes=[]))


def test_access_modes_must_be_a_list():
    with pytest.raises(ManifestError, match="is not a list"):
        rules.binding_verdict(pv(), pvc(accessModes="ReadOnlyMany"))


# --- Class [PV-class] -----------------------------------------------------------------
def test_empty_class_on_both_binds():
    # "A PVC with its storageClassName set equal to "" ... can only be bound to PVs with no class"
    assert rules.binding_verdict(pv(), pvc()).binds


def test_unset_class_on_volume_counts_as_no_class():
    volume = pv()
    del volume["spec"]["storageClassName"]  # "A PV with no storageClassName has no class"
    assert rules.binding_verdict(volume, pvc()).binds


def test_class_mismatch_does_not_bind():
    v = rules.binding_verdict(pv(), pvc(storageClassName="standard"))
    assert not v.binds
    assert any("the claim's class 'standard' ≠ the volume's class ''" in r for r in v.reasons)
    # A claim naming the default class, with no volume for it, goes to that class's provisioner [PV-dynamic].
    assert v.outcome == "provisions"


def test_named_non_default_class_may_or_may_not_exist():
    v = rules.binding_verdict(pv(), pvc(storageClassName="fast"), default_storage_class="standard")
    assert not v.binds and v.outcome == "pending-or-provisions"


def test_same_named_class_binds():
    assert rules.binding_verdict(pv(storageClassName="manual"), pvc(storageClassName="manual")).binds


def test_unset_claim_class_gets_the_default_and_a_new_empty_volume():
    # [PV-class] "All PVCs that have no storageClassName can be bound only to PVs of that default."
    v = rules.binding_verdict(pv(), pvc(storageClassName=None), default_storage_class="standard")
    assert not v.binds and v.outcome == "provisions" and v.claim_class == "standard"
    assert any(r.startswith("no storageClassName: the admission plugin fills in the default StorageClass "
                            "'standard'") for r in v.reasons)
    assert any("NEW, EMPTY volume" in r for r in v.reasons)
    # k3s's and kind's local-path provisioner refuses ReadOnlyMany: the verdict says that outcome too.
    assert any("ProvisioningFailed" in r for r in v.reasons)


def test_unset_claim_class_without_a_default_means_no_class():
    # [PV-class] "If the administrator does not specify a default, the cluster responds ... as if the
    # admission plugin were turned off": the claim then binds only to PVs with no class.
    v = rules.binding_verdict(pv(), pvc(storageClassName=None), default_storage_class=None)
    assert v.binds and v.claim_class == ""


def test_beta_annotation_counts_as_class():
    # [PV-class] "the annotation volume.beta.kubernetes.io/storage-class ... is still working"
    claim = pvc(storageClassName=None)
    claim["metadata"]["annotations"] = {"volume.beta.kubernetes.io/storage-class": ""}
    assert rules.binding_verdict(pv(), claim).binds
    volume = pv(storageClassName="")
    volume["metadata"]["annotations"] = {"volume.beta.kubernetes.io/storage-class": "slow"}
    assert rules.volume_class(volume) == "slow" and not rules.binding_verdict(volume, pvc()).binds


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
    v = rules.binding_verdict(pv(), pvc(selector=selector))
    assert v.binds is binds
    if not binds:
        assert any("does not match the volume's labels" in r for r in v.reasons)
        # [PV-selector] note: "a PVC with a non-empty selector can't have a PV dynamically provisioned"
        assert v.outcome == "pending"


def test_selector_message_names_the_requirement():
    v = rules.binding_verdict(pv(), pvc(selector={"matchLabels": {"app": "x"}}))
    assert any(r.startswith("selector app=x does not match the volume's labels") for r in v.reasons)


def test_bad_selector_operator_is_a_manifest_error():
    with pytest.raises(ManifestError, match="operator 'Equals'"):
        rules.binding_verdict(pv(), pvc(selector={"matchExpressions": [{"key": "a", "operator": "Equals"}]}))


def test_set_operator_without_values_is_a_manifest_error():
    with pytest.raises(ManifestError, match="has no values"):
        rules.selector_matches({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}, {"a": "b"})


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
    assert rules.parse_selector_text(text) == expected


def test_selector_text_round_trips_through_describe():
    text = "app=x,tier in (a,b),gpu,!legacy,zone notin (eu)"
    assert rules.describe_selector(rules.parse_selector_text(text)) == text
    assert rules.describe_selector(None) == "(none)"


def test_selector_text_rejects_garbage():
    with pytest.raises(InputError, match="not a label requirement"):
        rules.parse_selector_text("app => x")


# --- volumeName and claimRef [PV-reserve] --------------------------------------------------
def test_volume_name_other_volume():
    v = rules.binding_verdict(pv(), pvc(volumeName="other"))
    assert not v.binds and v.outcome == "pending"
    assert any("the claim names volumeName 'other'" in r for r in v.reasons)


def test_volume_name_ignores_selector():
    # [PV-reserve] "The binding happens regardless of some volume matching criteria"
    v = rules.binding_verdict(pv(), pvc(volumeName="model-storage", selector={"matchLabels": {"app": "x"}}))
    assert v.binds and any("selector is ignored" in w for w in v.warnings)


@pytest.mark.parametrize("change,words", [
    ({"storage": "300Gi"}, "the claim asks 300Gi but the volume has 200Gi"),
    ({"storageClassName": "standard"}, "the claim's class 'standard' ≠ the volume's class ''"),
    ({"accessModes": ["ReadWriteOnce"]}, "access mode ReadWriteOnce is not offered"),
])
def test_volume_name_still_checks_class_modes_size(change, words):
    # [PV-reserve] "The control plane still checks that storage class, access modes, and requested
    # storage size are valid."
    v = rules.binding_verdict(pv(), pvc(volumeName="model-storage", **change))
    assert not v.binds and v.outcome == "pending"   # a claim with volumeName is never provisioned
    assert any(words in r for r in v.reasons)


def test_volume_mode_mismatch():
    # [PV-vmode] PV Filesystem (or unspecified) with PVC Block: NO BIND
    v = rules.binding_verdict(pv(), pvc(volumeMode="Block"))
    assert not v.binds and any("volumeMode Block" in r for r in v.reasons)
    assert rules.binding_verdict(pv(volumeMode="Filesystem"), pvc()).binds   # unspecified = Filesystem


def test_claim_ref_to_another_claim_blocks():
    v = rules.binding_verdict(pv(claimRef={"namespace": "ns", "name": "other"}), pvc())
    assert not v.binds
    assert any("the volume is pre-bound by claimRef to ns/other" in r for r in v.reasons)


def test_claim_ref_to_another_claim_blocks_even_with_volume_name():
    v = rules.binding_verdict(pv(claimRef={"namespace": "ns", "name": "other"}), pvc(volumeName="model-storage"))
    assert not v.binds and any("pre-bound by claimRef to ns/other" in r for r in v.reasons)


def test_claim_ref_in_another_namespace_does_not_match():
    v = rules.binding_verdict(pv(claimRef={"namespace": "default", "name": "model-storage-claim"}), pvc())
    assert not v.binds


def test_claim_ref_with_an_old_uid_blocks_a_new_claim_of_the_same_name():
    # [controller] IsVolumeBoundToClaim compares the uid too: the event is "already bound to a different claim."
    claim = pvc(volumeName="model-storage")
    claim["metadata"]["uid"] = "new-uid"
    v = rules.binding_verdict(pv(claimRef={**REF, "uid": "old-uid"}), claim)
    assert not v.binds and v.path == "volumeName set, volume reserved for another claim"


def test_claim_ref_to_this_claim_skips_class_and_selector_not_size():
    # [controller] FindMatchingVolume returns a volume pre-bound to the claim before comparing
    # class and selector; capacity, volumeMode and (via the access-mode index) modes still apply.
    volume = pv(claimRef=REF)
    v = rules.binding_verdict(volume, pvc(storageClassName="other", selector={"matchLabels": {"a": "b"}}))
    assert v.binds and any("ignored because the volume's claimRef names this claim" in w for w in v.warnings)
    assert not rules.binding_verdict(volume, pvc(storage="300Gi")).binds
    assert not rules.binding_verdict(volume, pvc(accessModes=["ReadWriteMany"])).binds


def test_pre_bound_both_ways_binds_without_checks_but_warns():
    # [controller] volumeName + claimRef naming each other: "volume already bound, finishing the binding"
    v = rules.binding_verdict(pv(claimRef=REF), pvc(volumeName="model-storage", storage="300Gi"))
    assert v.binds and v.path.startswith("pre-bound both ways")
    assert any("300Gi" in w and "not checked" in w for w in v.warnings)


def test_course_pair_binds_cleanly():
    v = rules.binding_verdict(live.course_volume(), live.course_claim())
    assert v.binds and v.warnings == [] and v.path.startswith("pre-bound both ways")


def test_free_match_warns_that_another_claim_could_take_it():
    v = rules.binding_verdict(pv(), pvc())
    assert v.binds and any("pre-bind with volumeName" in w for w in v.warnings)


def test_verdict_reads_as_text():
    v = rules.binding_verdict(pv(), pvc(storage="300Gi", volumeName="model-storage"))
    text = str(v)
    assert text.startswith("STAYS PENDING — volumeName set") and "✗ the claim asks 300Gi" in text
    assert not v


def test_a_pv_where_a_claim_belongs_is_named():
    with pytest.raises(ManifestError, match="Expected a PersistentVolumeClaim, got a PersistentVolume"):
        rules.binding_verdict(pv(), pv())
    with pytest.raises(ManifestError, match="has no spec"):
        rules.binding_verdict(pv(), {"kind": "PersistentVolumeClaim", "metadata": {"name": "c"}})


# --- The course's manifests, as the rules read them --------------------------------------
def test_course_manifests_keep_the_contract():
    """The names, labels and fields other chapters rely on."""
    vol, claim = live.course_volume(), live.course_claim()
    assert vol["spec"]["storageClassName"] == "" and claim["spec"]["storageClassName"] == ""
    assert vol["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert vol["spec"]["claimRef"] == REF and claim["spec"]["volumeName"] == "model-storage"
    assert parse_quantity(vol["spec"]["capacity"]["storage"]) == 200 * GI
    assert vol["spec"]["hostPath"]["path"] == "/models"
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"]
    for obj in (vol, claim, manifests.load_one("base/namespace.yaml")):
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "vllm-course"
    assert Fraction(rules.claim_request(claim)) == 200 * GI


# --- Reuse after deleting the claim [PV-reclaim], claims in use, the default class ---------
def test_reuse_patch_removes_only_the_old_uid():
    # [PV-reclaim] Retain: after the claim is deleted the volume is "released" but "not yet available
    # for another claim"; dropping the old claim's uid from claimRef makes the reservation by name usable.
    released = {"spec": {"claimRef": {"namespace": "ai-platform", "name": "model-storage-claim",
                                      "uid": "1234", "resourceVersion": "99"}}, "status": {"phase": "Released"}}
    assert rules.reuse_patch(released) == [{"op": "remove", "path": "/spec/claimRef/uid"},
                                           {"op": "remove", "path": "/spec/claimRef/resourceVersion"}]
    assert rules.reuse_patch(live.course_volume()) == []


def test_pods_using_claim():
    pods = [{"metadata": {"name": "vllm-1"}, "spec": {"volumes": [
        {"name": "models", "persistentVolumeClaim": {"claimName": "model-storage-claim"}}]}},
            {"metadata": {"name": "other"}, "spec": {"volumes": [{"name": "x", "emptyDir": {}}]}}]
    assert rules.pods_using_claim(pods, "model-storage-claim") == ["vllm-1"]
    assert rules.pods_using_claim(pods, "another-claim") == []


def test_default_storage_class():
    # https://kubernetes.io/docs/concepts/storage/storage-classes/#default-storageclass :
    # the annotation storageclass.kubernetes.io/is-default-class: "true" marks the default;
    # with several defaults, the most recently created one is used.
    kind_standard = {"metadata": {"name": "standard", "creationTimestamp": "2026-01-01T00:00:00Z",
                                  "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}
    newer = {"metadata": {"name": "newer", "creationTimestamp": "2026-02-01T00:00:00Z",
                          "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}
    other = {"metadata": {"name": "fast", "annotations": {"storageclass.kubernetes.io/is-default-class": "false"}}}
    assert rules.default_storage_class([other, kind_standard]) == "standard"
    assert rules.default_storage_class([kind_standard, newer, other]) == "newer"
    assert rules.default_storage_class([other]) is None
    assert rules.default_storage_class([]) is None
    beta = {"metadata": {"name": "old", "annotations": {"storageclass.beta.kubernetes.io/is-default-class": "true"}}}
    assert [c["metadata"]["name"] for c in rules.default_storage_classes([other, beta, newer])] == ["old", "newer"]
