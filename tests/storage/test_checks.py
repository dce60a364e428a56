"""The learner's checkers: a claim, a volume, the pair, the Pod's mount and the model folder.

The examples under manifests/examples/storage are schema-valid and wrong in meaning; each
checker must say what is wrong and name the fix. Doc references as in test_rules.py.
"""
from __future__ import annotations

import pytest

from llmserve.core.errors import ManifestError
from llmserve.core.findings import Report
from llmserve.storage import checks, live, rules
from llmserve.world import manifests
from tests.storage.objects import REF, pv, pvc

UNRESERVED = "volume-unreserved"


def claim_file(name: str) -> dict:
    return live.example(name)


# --- Claims --------------------------------------------------------------------------------
def test_check_course_claim_is_ok():
    report = checks.check_claim(live.course_claim(), live.course_volume())
    assert report.ok and report.verdict.binds, str(report)
    assert isinstance(report, Report)


def test_check_claim_without_class_example():
    report = checks.check_claim(claim_file("claim-without-class"), live.example(UNRESERVED))
    assert not report.ok and report.verdict.outcome == "provisions"
    assert any('storageClassName: ""' in f.fix for f in report.errors)


def test_check_claim_too_big_example():
    report = checks.check_pair(live.example(UNRESERVED), claim_file("claim-too-big"))
    assert not report.ok
    assert any("the claim asks 300Gi but the volume has 200Gi" in f.what for f in report.errors)


def test_every_broken_example_is_schema_valid_and_reported():
    for name in ("claim-without-class", "claim-too-big", "claim-read-write-many", "claim-wrong-selector"):
        bad = claim_file(name)
        assert not manifests.validate(bad), name
        report = checks.check_claim(bad, live.example(UNRESERVED))
        assert not report.ok, (name, str(report))


def test_check_claim_namespace():
    no_ns = pvc()
    del no_ns["metadata"]["namespace"]
    report = checks.check_claim(no_ns, pv(claimRef=REF))
    assert any("no metadata.namespace" in f.what and "namespace: ai-platform" in f.fix for f in report.warnings)
    elsewhere = pvc()
    elsewhere["metadata"]["namespace"] = "default"
    report = checks.check_claim(elsewhere, pv())
    assert any("namespace 'default'" in f.what for f in report.errors)


def test_check_claim_warns_about_write_modes_and_a_named_class():
    report = checks.check_claim(pvc(accessModes=["ReadWriteOnce", "ReadOnlyMany"], storageClassName="manual"),
                                pv(accessModes=["ReadWriteOnce", "ReadOnlyMany"], storageClassName="manual"))
    assert report.ok
    whats = " ".join(f.what for f in report.warnings)
    assert "access mode ReadWriteOnce: serving only reads the weights" in whats
    assert "storageClassName 'manual'" in whats and "no volumeName" in whats


def test_check_claim_report_says_each_thing_once():
    report = checks.check_pair(live.example(UNRESERVED), claim_file("claim-without-class"))
    whats = [f.what for f in report.findings]
    assert len(whats) == len(set(whats))


# --- Volumes -------------------------------------------------------------------------------
def test_check_volume_reclaim_policies():
    # [PV-reclaim] Retain keeps the data; Recycle scrubs (rm -rf); Delete removes the storage asset.
    assert checks.check_volume(pv(claimRef=REF)).ok
    for policy in ("Recycle", "Delete"):
        report = checks.check_volume(pv(persistentVolumeReclaimPolicy=policy, claimRef=REF))
        assert not report.ok and any("Retain" in f.fix for f in report.errors)


def test_check_volume_warns_hostpath_access_modes_are_not_enforced():
    # [PV-access] hostPath supports ReadWriteOnce only; "access modes do not enforce write protection"
    report = checks.check_volume(live.course_volume())
    assert report.ok and any("never enforced" in f.what for f in report.warnings)


def test_check_volume_claimref_without_namespace():
    report = checks.check_volume(pv(claimRef={"name": "model-storage-claim"}))
    assert not report.ok


def test_check_volume_hostpath_type_and_class():
    report = checks.check_volume(pv(claimRef=REF, hostPath={"path": "/models", "type": "DirectoryOrCreate"},
                                    storageClassName="manual"))
    whats = " ".join(f.what for f in report.warnings)
    assert "hostPath type DirectoryOrCreate: a missing /models is created empty" in whats
    assert "the volume has class 'manual'" in whats
    unreserved = checks.check_volume(pv())
    assert any("no claimRef" in f.what and "name: model-storage-claim" in f.fix for f in unreserved.warnings)


def test_local_pv_example_has_node_affinity():
    obj = live.example("local-pv")
    assert obj["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert checks.check_volume(obj).ok
    assert not any("nodeAffinity" in f.what for f in checks.check_volume(obj).findings)
    assert rules.binding_verdict(obj, live.course_claim()).binds


# --- The Pod's mount -----------------------------------------------------------------------
def deployment() -> dict:
    return live.base_object("Deployment")


def test_check_mount_course_deployment():
    assert checks.check_mount(deployment()).ok


def test_check_mount_read_write_pod_example():
    report = checks.check_mount(live.example("pod-mounts-read-write"))
    assert not report.ok and any("readOnly: true" in f.fix for f in report.errors)


def test_check_mount_model_outside_mount():
    dep = deployment()
    c = dep["spec"]["template"]["spec"]["containers"][0]
    c["args"] = ["--model=/weights/qwen" if a.startswith("--model=") else a for a in c["args"]]
    report = checks.check_mount(dep)
    assert not report.ok and any("not inside any mount" in f.what for f in report.errors)


def test_check_mount_hub_name_is_a_warning():
    dep = deployment()
    c = dep["spec"]["template"]["spec"]["containers"][0]
    c["args"] = ["--model", "Qwen/Qwen2.5-Coder-7B-Instruct-AWQ"] + [a for a in c["args"]
                                                                  if not a.startswith("--model=")]
    report = checks.check_mount(dep)
    assert any("is a hub name" in f.what and "--model=/models/qwen25-coder-7b-awq" in f.fix
               for f in report.warnings)


def test_check_mount_without_the_claim():
    dep = deployment()
    dep["spec"]["template"]["spec"]["volumes"] = [v for v in dep["spec"]["template"]["spec"]["volumes"]
                                                  if "persistentVolumeClaim" not in v]
    assert not checks.check_mount(dep).ok


def test_check_mount_needs_a_pod_template():
    with pytest.raises(ManifestError, match="has no Pod template"):
        checks.check_mount(live.course_claim())


# --- Model directory layout ----------------------------------------------------------------
PLAIN = ["qwen25-coder-7b-awq/config.json", "qwen25-coder-7b-awq/generation_config.json",
         "qwen25-coder-7b-awq/tokenizer.json", "qwen25-coder-7b-awq/tokenizer_config.json",
         "qwen25-coder-7b-awq/vocab.json", "qwen25-coder-7b-awq/merges.txt",
         "qwen25-coder-7b-awq/model-00001-of-00002.safetensors",
         "qwen25-coder-7b-awq/model-00002-of-00002.safetensors",
         "qwen25-coder-7b-awq/model.safetensors.index.json"]


def test_the_model_folder_is_the_deployments():
    assert checks.model_dir_name() == "qwen25-coder-7b-awq"


def test_plain_model_dir_is_ok():
    report = checks.check_model_dir(PLAIN)
    assert report.ok and "2 safetensors files" in report.findings[0].what


def test_listing_with_the_mount_prefix_is_accepted():
    assert checks.check_model_dir([f"./models/{p}" for p in PLAIN]).ok


def test_hub_cache_layout_is_explained():
    snap = "models--Qwen--Qwen2.5-Coder-7B-Instruct-AWQ/snapshots/0123456789abcdef0123456789abcdef01234567"
    report = checks.check_model_dir([f"{snap}/config.json", f"{snap}/model.safetensors"])
    assert not report.ok and snap in report.errors[0].fix


def test_empty_listing_says_how_to_download():
    report = checks.check_model_dir([])
    assert not report.ok and "hf download Qwen/Qwen2.5-Coder-7B-Instruct-AWQ --local-dir" in report.errors[0].fix


def test_model_dir_missing_pieces():
    report = checks.check_model_dir([p for p in PLAIN if not p.endswith(("config.json", "tokenizer.json",
                                                                         "vocab.json"))])
    whats = " ".join(f.what for f in report.errors)
    assert "config.json" in whats and "tokenizer" in whats


def test_model_dir_shards_without_index_and_bin_only():
    report = checks.check_model_dir([p for p in PLAIN if not p.endswith("index.json")])
    assert report.ok and any("no model.safetensors.index.json" in f.what for f in report.warnings)
    bins = [p for p in PLAIN if not p.endswith(".safetensors")] + ["qwen25-coder-7b-awq/pytorch_model.bin"]
    report = checks.check_model_dir(bins)
    assert report.ok and any("only .bin" in f.what for f in report.warnings)
