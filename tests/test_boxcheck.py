"""The GPU box check: pure decisions over fake nodes, temporary model folders and nvidia-smi text."""
from __future__ import annotations

import json
import os
from collections import namedtuple
from pathlib import Path, PurePosixPath

import pytest

from llmserve import boxcheck as bc
from llmserve.world import manifests
from llmserve import troubleshooting
from llmserve.world.mode import Mode

OFFLINE = Mode("offline", "COURSE_MODE=offline is set", "cpu", "torch sees no CUDA GPU")
OTHER_UID = 54321  # a uid that owns none of the test files: only the "other" permission bits apply


# ------------------------------------------------------------------ fakes
def node(name: str, gpus=None, images=()) -> dict:
    """A Node as the API returns it: allocatable quantities are strings (API reference: NodeStatus)."""
    alloc = {"cpu": "16", "memory": "131811264Ki", "pods": "110"}
    if gpus is not None:
        alloc[bc.GPU_RESOURCE] = str(gpus)
    return {"metadata": {"name": name},
            "status": {"allocatable": alloc, "capacity": dict(alloc),
                       "images": [{"names": list(n), "sizeBytes": 1} for n in images]}}


def pod(node_name, gpus, phase="Running") -> dict:
    limits = {bc.GPU_RESOURCE: str(gpus)} if gpus else {}
    return {"metadata": {"name": f"p-{node_name}-{gpus}"}, "status": {"phase": phase},
            "spec": {"nodeName": node_name, "containers": [{"name": "c", "resources": {"limits": limits}}]}}


def daemonset(name, ns, desired, ready) -> dict:
    return {"metadata": {"name": name, "namespace": ns},
            "status": {"desiredNumberScheduled": desired, "numberReady": ready}}


def make_model(root: Path, shards=("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"),
               index_shards=None, tokenizer=("tokenizer.json", "tokenizer_config.json"), quant="awq",
               shard_bytes=16) -> Path:
    """A model folder laid out like Qwen/Qwen2.5-Coder-7B-Instruct-AWQ on the Hub (file names from its file list)."""
    d = root / "qwen25-coder-7b-awq"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"model_type": "qwen2", "quantization_config": {"quant_method": quant}}))
    for s in shards:
        (d / s).write_bytes(b"\0" * shard_bytes)
    wanted = shards if index_shards is None else index_shards
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {f"layer.{i}.weight": s for i, s in enumerate(wanted)}}))
    for t in tokenizer:
        (d / t).write_text("{}")
    for p in [root, d, *d.iterdir()]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return d


# --------------------------------------------------------------- GPU nodes
def test_allocatable_reads_the_string_quantity_and_zero_when_absent():
    nodes = [node("gpu-box", 1), node("cpu-only")]
    assert bc.gpu_allocatable(nodes) == {"gpu-box": 1, "cpu-only": 0}


def test_no_node_with_a_gpu_fails_and_points_at_the_entry():
    c = bc.check_gpu_nodes([node("gpu-box", 0), node("cpu-only")])
    assert c.status == bc.FAIL and c.kind == "cluster"
    assert c.see == "insufficient-gpu"


def test_gpu_held_by_a_running_pod_warns_finished_pods_do_not_count():
    nodes = [node("gpu-box", 1)]
    assert bc.check_gpu_nodes(nodes, [pod("gpu-box", 1)]).status == bc.WARN
    # A Succeeded Pod no longer holds its GPU (Kubernetes: "Schedule GPUs" counts requests of active Pods).
    assert bc.check_gpu_nodes(nodes, [pod("gpu-box", 1, phase="Succeeded")]).status == bc.PASS
    assert bc.check_gpu_nodes(nodes, [pod("gpu-box", 0)]).status == bc.PASS


def test_two_gpus_one_used_still_passes():
    c = bc.check_gpu_nodes([node("big", 2)], [pod("big", 1)])
    assert c.status == bc.PASS and "2 allocatable, 1 requested" in c.detail


# ------------------------------------------------------------ device plugin
def test_device_plugin_found_by_name_in_any_namespace():
    # Names used by the plugin's helm chart (release nvdp) and by the GPU operator.
    for name, ns in [("nvdp-nvidia-device-plugin", "nvidia-device-plugin"),
                     ("nvidia-device-plugin-daemonset", "gpu-operator")]:
        assert bc.check_device_plugin([daemonset(name, ns, 1, 1)]).status == bc.PASS


def test_device_plugin_missing_or_not_ready_fails():
    assert bc.check_device_plugin([daemonset("svclb-traefik", "kube-system", 1, 1)]).status == bc.FAIL
    c = bc.check_device_plugin([daemonset("nvdp-nvidia-device-plugin", "nvidia-device-plugin", 1, 0)])
    assert c.status == bc.FAIL and c.see == "device-plugin-no-gpus"


# ------------------------------------------------------------ StorageClass
def test_default_storageclass_warns_about_the_trap():
    # k3s installs local-path with this annotation (Kubernetes docs: "Change the default StorageClass").
    sc = {"metadata": {"name": "local-path",
                       "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}
    c = bc.check_default_storageclass([sc])
    assert c.status == bc.WARN and "local-path" in c.detail and c.see == "pvc-default-storageclass"
    assert bc.check_default_storageclass([{"metadata": {"name": "manual"}}]).status == bc.PASS


def test_course_claim_opts_out_and_a_claim_without_class_fails():
    pvc, pv = manifests.load_one(bc.PVC_FILE), manifests.load_one(bc.PV_FILE)
    assert bc.check_claim_opts_out(pvc, pv).status == bc.PASS
    del pvc["spec"]["storageClassName"]
    assert bc.check_claim_opts_out(pvc, pv).status == bc.FAIL


# ------------------------------------------------------------------ image
def test_image_pinning():
    dep = manifests.load_one(bc.DEPLOYMENT_FILE)
    assert bc.check_image(dep).status == bc.PASS
    c = bc.vllm_container(dep)
    for image, status in [("vllm/vllm-openai:latest", bc.FAIL), ("vllm/vllm-openai", bc.FAIL),
                          ("vllm/vllm-openai:v0.31.0", bc.WARN),
                          ("vllm/vllm-openai@sha256:" + "a" * 64, bc.PASS),
                          ("localhost:5000/vllm-openai", bc.FAIL)]:  # the registry port is not a tag
        c["image"] = image
        assert bc.check_image(dep).status == status, image


def test_image_on_node_accepts_the_docker_io_prefix():
    n = node("gpu-box", 1, images=[("docker.io/vllm/vllm-openai:v0.32.0",)])
    assert bc.check_image_on_node([n]).status == bc.PASS
    assert bc.check_image_on_node([node("gpu-box", 1)]).status == bc.WARN


# ----------------------------------------------------------- model folder
def test_model_subpath_comes_from_the_manifest():
    assert bc.model_subpath(manifests.load_one(bc.DEPLOYMENT_FILE)) == PurePosixPath("qwen25-coder-7b-awq")


def test_complete_model_folder_passes(tmp_path):
    d = make_model(tmp_path)
    c = bc.check_model_dir(d, expected_bytes=None, uid=OTHER_UID, gid=OTHER_UID)
    assert c.status == bc.PASS, c.detail
    assert "2 safetensors shard(s)" in c.detail and "quant_method=awq" in c.detail


def test_vocab_and_merges_can_stand_in_for_tokenizer_json(tmp_path):
    d = make_model(tmp_path, tokenizer=("vocab.json", "merges.txt", "tokenizer_config.json"))
    assert bc.check_model_dir(d, expected_bytes=None, uid=OTHER_UID, gid=OTHER_UID).status == bc.PASS


@pytest.mark.parametrize("kwargs,needle", [
    ({"shards": ("model-00001-of-00002.safetensors",),
      "index_shards": ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")},
     "missing: model-00002-of-00002.safetensors"),
    ({"shards": ()}, "no *.safetensors"),
    ({"tokenizer": ("tokenizer.json",)}, "no tokenizer_config.json"),
    ({"tokenizer": ("tokenizer_config.json",)}, "no tokenizer.json"),
])
def test_incomplete_model_folder_fails(tmp_path, kwargs, needle):
    d = make_model(tmp_path, **kwargs)
    c = bc.check_model_dir(d, expected_bytes=None, uid=OTHER_UID, gid=OTHER_UID)
    assert c.status == bc.FAIL and needle in c.detail, c.detail


def test_missing_folder_and_missing_config(tmp_path):
    c = bc.check_model_dir(tmp_path / "nope")
    assert c.status == bc.FAIL and "hf download" in c.fix and c.see == "hostpath-missing"
    d = make_model(tmp_path)
    (d / "config.json").unlink()
    assert bc.check_model_dir(d).see == "model-path-wrong"


def test_unfinished_download_is_caught(tmp_path):
    d = make_model(tmp_path)
    # `hf download --local-dir` keeps its partial files under .cache/huggingface/download/ (huggingface_hub docs).
    part = d / ".cache" / "huggingface" / "download" / "model-00002-of-00002.safetensors.abc.incomplete"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0")
    c = bc.check_model_dir(d, expected_bytes=None, uid=OTHER_UID, gid=OTHER_UID)
    assert c.status == bc.FAIL and "unfinished download" in c.detail


def test_weights_unreadable_by_the_pods_user_fail(tmp_path):
    d = make_model(tmp_path)
    os.chmod(d / "model-00001-of-00002.safetensors", 0o600)
    c = bc.check_model_dir(d, expected_bytes=None, uid=OTHER_UID, gid=OTHER_UID)
    assert c.status == bc.FAIL and "chmod -R a+rX" in c.fix
    # The owner itself may read it: owner bits apply to the owner's uid.
    me = os.stat(d / "model-00001-of-00002.safetensors").st_uid
    assert bc.check_model_dir(d, expected_bytes=None, uid=me, gid=OTHER_UID).status == bc.PASS


def test_not_awq_or_too_small_warns(tmp_path):
    d = make_model(tmp_path / "a", quant="gptq")
    assert bc.check_model_dir(d, expected_bytes=None, uid=OTHER_UID, gid=OTHER_UID).status == bc.WARN
    d = make_model(tmp_path / "b", shard_bytes=100)
    c = bc.check_model_dir(d, expected_bytes=1e6, uid=OTHER_UID, gid=OTHER_UID)
    assert c.status == bc.WARN and "smaller than" in c.detail


# -------------------------------------------------------------------- disk
def test_free_disk_threshold():
    Usage = namedtuple("Usage", "total used free")
    assert bc.check_free_disk(Path("/"), 10e9, usage=lambda p: Usage(0, 0, 50e9)).status == bc.PASS
    assert bc.check_free_disk(Path("/"), 10e9, usage=lambda p: Usage(0, 0, 5e9)).status == bc.WARN
    # The default threshold is computed from the two sizes it is made of.
    assert bc.MIN_FREE_BYTES == pytest.approx(1.5 * (bc.VLLM_IMAGE_BYTES_SEEN + bc.AWQ_WEIGHT_BYTES))


# -------------------------------------------------------------- nvidia-smi
# Format of `nvidia-smi --query-gpu=name,memory.total,compute_cap,driver_version --format=csv,noheader,nounits`
# (nvidia-smi --help-query-gpu): one GPU per line, memory in MiB, capability as major.minor.
SMI_H100 = "NVIDIA H100 80GB HBM3, 81559, 9.0, 550.54.15\n"
SMI_T4 = "Tesla T4, 15360, 7.5, 535.104.05\n"


def test_parse_nvidia_smi():
    [g] = bc.parse_nvidia_smi(SMI_H100)
    assert g == {"name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559, "compute_cap": 9.0, "driver": "550.54.15"}
    assert bc.parse_nvidia_smi("") == [] and bc.parse_nvidia_smi("garbage") == []


def test_compute_capability_against_the_quantization():
    # vLLM: AWQ needs 7.5, the Marlin kernels 8.0 (vLLM docs, quantization supported hardware).
    t4 = bc.parse_nvidia_smi(SMI_T4)
    c = bc.check_compute_capability(t4, "awq_marlin")
    assert c.status == bc.FAIL and "--quantization=awq" in c.fix and c.see == "quantization-capability"
    assert bc.check_compute_capability(t4, "awq").status == bc.PASS
    assert bc.check_compute_capability(bc.parse_nvidia_smi(SMI_H100), "awq_marlin").status == bc.PASS
    assert bc.check_compute_capability(None, "awq_marlin").status == bc.SKIP


def test_nvidia_smi_missing_is_a_failure_only_on_the_box():
    assert bc.check_nvidia_smi(None, "not installed", on_box=True).status == bc.FAIL
    assert bc.check_nvidia_smi(None, "not installed", on_box=False).status == bc.SKIP
    assert bc.check_nvidia_smi(bc.parse_nvidia_smi(SMI_H100), None, on_box=False).status == bc.PASS


# ---------------------------------------------------------- orchestration
def test_offline_run_skips_every_cluster_check_and_runs_the_local_ones(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_MODELS_DIR", str(tmp_path))
    make_model(tmp_path)
    checks = bc.run_all(OFFLINE)
    cluster = [c for c in checks if c.kind == "cluster"]
    assert [c.name for c in cluster] == list(bc.CLUSTER_CHECKS)
    assert all(c.status == bc.SKIP and c.detail.startswith("skipped: offline — COURSE_MODE=offline") for c in cluster)
    local = bc.by_name(checks)
    assert local["image pinned"].status == bc.PASS
    assert local["claim opts out of the default StorageClass"].status == bc.PASS
    # The model folder check really ran on the copy (it is tiny, so it warns about its size or readability).
    assert local["model folder"].status != bc.SKIP
    assert str(tmp_path / "qwen25-coder-7b-awq") in local["model folder"].detail


def test_offline_without_a_models_dir_says_what_it_would_check(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_MODELS_DIR", str(tmp_path / "absent"))
    monkeypatch.setattr(bc, "on_the_box", lambda: False)
    c = bc.by_name(bc.run_all(OFFLINE))["model folder"]
    assert c.status == bc.SKIP and "would check" in c.detail


class FakeCluster:
    host, context = "https://127.0.0.1:6443", "default"

    def __init__(self, objects):
        self.objects = objects

    def list(self, api_version, kind, namespace=None, label_selector=None):
        return self.objects.get(kind, [])


def test_live_run_reads_the_cluster():
    live = Mode("live", "API server answered", "cpu", "torch sees no CUDA GPU", context="default")
    fake = FakeCluster({
        "Node": [node("gpu-box", 1, images=[("docker.io/vllm/vllm-openai:v0.32.0",)])],
        "Pod": [],
        "DaemonSet": [daemonset("nvdp-nvidia-device-plugin", "nvidia-device-plugin", 1, 1)],
        "StorageClass": [{"metadata": {"name": "local-path",
                                       "annotations": {bc.DEFAULT_STORAGECLASS_ANNOTATION: "true"}}}],
    })
    checks = bc.by_name(bc.run_all(live, cluster_factory=lambda: fake))
    assert checks["cluster reachable"].status == bc.PASS
    assert checks["GPU allocatable"].status == bc.PASS
    assert checks["device plugin DaemonSet"].status == bc.PASS
    assert checks["default StorageClass"].status == bc.WARN
    assert checks["vLLM image on the node"].status == bc.PASS


def test_report_lists_fix_and_link_for_failures_only():
    checks = [bc.Check("a", bc.PASS, "fine", "never shown"),
              bc.Check("b", bc.FAIL, "broken", "do this", see="insufficient-gpu")]
    text = bc.format_report(checks)
    assert "never shown" not in text and "fix: do this" in text
    assert "../book/troubleshooting.html#ts-insufficient-gpu" in text
    assert "1 pass  0 warn  1 fail  0 skip" in text


def test_every_see_points_at_a_real_troubleshooting_entry():
    import inspect
    import re
    slugs = set(re.findall(r'see="([a-z0-9-]+)"', inspect.getsource(bc)))
    assert slugs, "the checks should link troubleshooting entries"
    for s in slugs:
        troubleshooting.by_slug(s)


def test_bad_status_is_refused():
    with pytest.raises(ValueError):
        bc.Check("x", "ok", "")


def test_checksums(tmp_path):
    (tmp_path / "a.safetensors").write_bytes(b"abc")
    got = bc.sha256_files(tmp_path)
    # SHA-256("abc") from FIPS 180-2, appendix B.1.
    assert got == {"a.safetensors": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}
    assert bc.compare_checksums(got, dict(got)) == []
    assert bc.compare_checksums(got, {"a.safetensors": "0" * 64}) == ["a.safetensors"]
    assert bc.compare_checksums(got, {**got, "b.safetensors": "1" * 64}) == ["b.safetensors"]
