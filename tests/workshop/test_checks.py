"""The GPU box's checks, decided on plain data: fake nodes, described folders, nvidia-smi text.

The capability table is derived from the pinned vLLM source (the ``vllm`` test at the end);
every value the checks compare with is read from the manifests (``test_values_come_from_the_manifests``).
"""
from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
import yaml

from llmserve.core import names, vllm
from llmserve.core.errors import InputError
from llmserve.core.findings import ERROR, OK, SKIP, WARNING, Finding
from llmserve.core.manifest_files import path as manifest_path
from llmserve.core.objects import arg_value, vllm_container
from llmserve.troubleshooting import catalogue
from llmserve.workshop import checks
from llmserve.world import mode

POD_UID, POD_GID = 54321, 54321  # the Pod's user in these tests: owns none of the described files


# ------------------------------------------------------------------ fakes
def node(name: str, gpus=None, images=(), cpu="16", memory="131811264Ki") -> dict:
    """A Node as the API returns it: allocatable quantities are strings (API reference: NodeStatus)."""
    alloc = {"cpu": cpu, "memory": memory, "pods": "110"}
    if gpus is not None:
        alloc[checks.GPU_RESOURCE] = str(gpus)
    return {"metadata": {"name": name},
            "status": {"allocatable": alloc, "capacity": dict(alloc),
                       "images": [{"names": list(n), "sizeBytes": 1} for n in images]}}


def pod(node_name, gpus, phase="Running") -> dict:
    limits = {checks.GPU_RESOURCE: str(gpus)} if gpus else {}
    return {"metadata": {"name": f"p-{node_name}-{gpus}"}, "status": {"phase": phase},
            "spec": {"nodeName": node_name, "containers": [{"name": "c", "resources": {"limits": limits}}]}}


def daemonset(name, ns, desired, ready) -> dict:
    return {"metadata": {"name": name, "namespace": ns},
            "status": {"desiredNumberScheduled": desired, "numberReady": ready}}


SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")


def folder(shards=SHARDS, index_shards=None, tokenizer=("tokenizer.json", "tokenizer_config.json"), quant="awq",
           shard_bytes=16, mode=0o644, owner=(1000, 1000), partial=(), config=True) -> checks.WeightsFolder:
    """A weights folder laid out like Qwen/Qwen2.5-Coder-7B-Instruct-AWQ on the Hub (names from its file list),
    owned by ``owner`` (the usual first user of a Linux box) with permission bits ``mode``."""
    def st(size=2, is_dir=False):
        return checks.FileStat(size, 0o755 if is_dir else mode, *owner, is_dir)
    files = {s: st(shard_bytes) for s in shards}
    files.update({t: st() for t in tokenizer})
    files["model.safetensors.index.json"] = st()
    if config:
        files["config.json"] = st()
    return checks.WeightsFolder("/models/qwen25-coder-7b-awq", True, st(is_dir=True), files,
                                {"model_type": "qwen2", "quantization_config": {"quant_method": quant}}
                                if config else None, None,
                                frozenset(shards if index_shards is None else index_shards), None, tuple(partial))


def deployment() -> dict:
    return next(o for o in names.base_objects() if o["kind"] == "Deployment")


# --------------------------------------------------------------- GPU nodes
def test_allocatable_reads_the_string_quantity_and_zero_when_absent():
    assert checks.gpu_allocatable([node("gpu-box", 1), node("cpu-only")]) == {"gpu-box": 1, "cpu-only": 0}


def test_no_node_with_a_gpu_fails_and_points_at_the_entry():
    f = checks.check_gpu_nodes([node("gpu-box", 0), node("cpu-only")])
    assert f.level == ERROR and f.check in checks.CLUSTER_CHECKS
    assert f.see == "insufficient-gpu"


def test_gpu_held_by_a_running_pod_warns_finished_pods_do_not_count():
    nodes = [node("gpu-box", 1)]
    assert checks.check_gpu_nodes(nodes, [pod("gpu-box", 1)]).level == WARNING
    # A Succeeded Pod no longer holds its GPU (Kubernetes: "Schedule GPUs" counts requests of active Pods).
    assert checks.check_gpu_nodes(nodes, [pod("gpu-box", 1, phase="Succeeded")]).level == OK
    assert checks.check_gpu_nodes(nodes, [pod("gpu-box", 0)]).level == OK


def test_two_gpus_one_used_still_passes():
    f = checks.check_gpu_nodes([node("big", 2)], [pod("big", 1)])
    assert f.level == OK and "2 allocatable, 1 requested" in f.what


def test_node_must_hold_the_pods_requests_read_from_the_deployment():
    wants = checks.pod_requests(deployment())
    assert checks.check_node_fits([node("gpu-box", 1)], wants).level == OK
    # A node with less memory than the Deployment requests cannot run the Pod ("Insufficient memory").
    small = node("small", 1, memory="8Gi")
    f = checks.check_node_fits([small], wants)
    assert f.level == ERROR and wants["memory"] in f.what
    assert checks.check_node_fits([node("few-cores", 1, cpu="2")], wants).level == ERROR


# ------------------------------------------------------------ device plugin
def test_device_plugin_found_by_name_in_any_namespace():
    # Names used by the plugin's helm chart (release nvdp) and by the GPU operator.
    for name, ns in [("nvdp-nvidia-device-plugin", "nvidia-device-plugin"),
                     ("nvidia-device-plugin-daemonset", "gpu-operator")]:
        assert checks.check_device_plugin([daemonset(name, ns, 1, 1)]).level == OK


def test_device_plugin_missing_or_not_ready_fails():
    assert checks.check_device_plugin([daemonset("svclb-traefik", "kube-system", 1, 1)]).level == ERROR
    f = checks.check_device_plugin([daemonset("nvdp-nvidia-device-plugin", "nvidia-device-plugin", 1, 0)])
    assert f.level == ERROR and f.see == "device-plugin-no-gpus"


# ------------------------------------------------------------ StorageClass
def test_default_storageclass_warns_about_the_trap_for_claims_of_ones_own():
    # k3s installs local-path with this annotation (Kubernetes docs: "Change the default StorageClass").
    sc = {"metadata": {"name": "local-path", "annotations": {checks.DEFAULT_STORAGECLASS_ANNOTATION: "true"}}}
    f = checks.check_default_storageclass([sc])
    assert f.level == WARNING and "local-path" in f.what and f.see == "pvc-default-storageclass"
    # Truthful about k3s: a ReadOnlyMany claim is refused there, not given an empty volume (issue 9 #5).
    assert "ProvisioningFailed" in f.what and "pre-bound" in f.what
    assert checks.check_default_storageclass([{"metadata": {"name": "manual"}}]).level == OK


# ------------------------------------------------------------------ image
def test_image_pinning():
    dep = deployment()
    assert checks.check_image(dep).level == OK
    c = vllm_container(dep)
    for image, level in [("vllm/vllm-openai:latest", ERROR), ("vllm/vllm-openai", ERROR),
                         ("vllm/vllm-openai:v0.31.0", WARNING),
                         ("vllm/vllm-openai@sha256:" + "a" * 64, OK),
                         ("localhost:5000/vllm-openai", ERROR)]:  # the registry port is not a tag
        c["image"] = image
        assert checks.check_image(dep).level == level, image


def test_image_on_node_accepts_the_docker_io_prefix():
    n = node("gpu-box", 1, images=[(f"docker.io/{vllm.IMAGE}",)])
    assert checks.check_image_on_node([n]).level == OK
    assert checks.check_image_on_node([node("gpu-box", 1)]).level == WARNING


# ----------------------------------------------------------- model folder
def test_model_subpath_comes_from_the_manifest():
    n = names.system()
    assert str(checks.model_subpath(n)) == Path(n.model_path).name
    assert f"{n.pv_host_path}/{checks.model_subpath(n)}" == n.host_model_dir


def test_complete_model_folder_passes():
    f = checks.check_downloaded_weights(folder(), POD_UID, POD_GID, expected_bytes=None)
    assert f.level == OK, f.what
    assert "2 safetensors shard(s)" in f.what and "quant_method=awq" in f.what


def test_vocab_and_merges_can_stand_in_for_tokenizer_json():
    w = folder(tokenizer=("vocab.json", "merges.txt", "tokenizer_config.json"))
    assert checks.check_downloaded_weights(w, POD_UID, POD_GID, expected_bytes=None).level == OK


@pytest.mark.parametrize("kwargs,needle", [
    ({"shards": SHARDS[:1], "index_shards": SHARDS}, "missing: model-00002-of-00002.safetensors"),
    ({"shards": ()}, "no *.safetensors"),
    ({"tokenizer": ("tokenizer.json",)}, "no tokenizer_config.json"),
    ({"tokenizer": ("tokenizer_config.json",)}, "no tokenizer.json"),
    # `hf download --local-dir` keeps its partial files under .cache/huggingface/download/ (huggingface_hub docs).
    ({"partial": (".cache/huggingface/download/model-00002-of-00002.safetensors.abc.incomplete",)},
     "unfinished download"),
])
def test_incomplete_model_folder_fails(kwargs, needle):
    f = checks.check_downloaded_weights(folder(**kwargs), POD_UID, POD_GID, expected_bytes=None)
    assert f.level == ERROR and needle in f.what, f.what


def test_missing_folder_and_missing_config():
    f = checks.check_downloaded_weights(checks.WeightsFolder("/models/nope", exists=False), POD_UID, POD_GID)
    assert f.level == ERROR and "hf download" in f.fix and f.see == "hostpath-missing"
    assert checks.check_downloaded_weights(folder(config=False), POD_UID, POD_GID).see == "model-path-wrong"


def test_weights_of_the_first_user_are_unreadable_by_the_pods_user():
    # Issue 9 #4: the weights downloaded by the box's first user (uid 1000) with mode 0600.
    private = folder(mode=0o600, owner=(1000, 1000))
    uid, gid = checks.pod_user(deployment())
    f = checks.check_downloaded_weights(private, uid, gid, expected_bytes=None)
    assert f.level == ERROR and "chmod -R a+rX" in f.fix and f"uid {uid}" in f.what
    # The owner itself may read it: owner bits apply to the owner's uid. A check that used 1000
    # for the Pod's user (the old box check) would pass here and the Pod would fail.
    assert checks.check_downloaded_weights(private, 1000, 1000, expected_bytes=None).level == OK
    assert uid != 1000


def test_not_awq_or_too_small_warns():
    assert checks.check_downloaded_weights(folder(quant="gptq"), POD_UID, POD_GID,
                                           expected_bytes=None).level == WARNING
    f = checks.check_downloaded_weights(folder(shard_bytes=100), POD_UID, POD_GID, expected_bytes=1e6)
    assert f.level == WARNING and "smaller than" in f.what


# -------------------------------------------------------------------- disk
def test_free_disk_threshold():
    assert checks.check_free_disk(50e9, "/", 10e9).level == OK
    f = checks.check_free_disk(5e9, "/", 10e9)
    assert f.level == WARNING and f.see == "disk-pressure"
    # The default threshold is computed from the sizes it is made of: the image twice
    # (compressed layers kept beside the unpacked ones) and the weights.
    assert checks.MIN_FREE_BYTES == 2 * checks.VLLM_IMAGE_BYTES_SEEN + checks.AWQ_WEIGHT_BYTES


# -------------------------------------------------------------- nvidia-smi
# Format of `nvidia-smi --query-gpu=name,memory.total,compute_cap,driver_version --format=csv,noheader,nounits`
# (nvidia-smi --help-query-gpu): one GPU per line, memory in MiB, capability as major.minor.
SMI_H100 = "NVIDIA H100 80GB HBM3, 81559, 9.0, 550.54.15\n"
SMI_T4 = "Tesla T4, 15360, 7.5, 535.104.05\n"
SMI_V100 = "Tesla V100-SXM2-16GB, 16384, 7.0, 535.104.05\n"


def test_parse_nvidia_smi():
    [g] = checks.parse_nvidia_smi(SMI_H100)
    assert g == {"name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559, "compute_cap": 9.0, "driver": "550.54.15"}
    assert checks.parse_nvidia_smi("") == [] and checks.parse_nvidia_smi("garbage") == []


def test_a_t4_runs_the_courses_awq_marlin():
    # Issue 9 #3: in vLLM 0.32 every AWQ name has the minimum 7.5, so a T4 passes.
    t4 = checks.parse_nvidia_smi(SMI_T4)
    course = arg_value(vllm_container(deployment()), "--quantization")
    assert checks.check_compute_capability(t4, course).level == OK, course
    for name in ("awq_marlin", "awq", "auto_awq"):
        assert checks.check_compute_capability(t4, name).level == OK, name
    f = checks.check_compute_capability(checks.parse_nvidia_smi(SMI_V100), "awq_marlin")
    assert f.level == ERROR and f.see == "quantization-capability" and "7.5" in f.what
    assert checks.check_compute_capability(checks.parse_nvidia_smi(SMI_H100), "awq_marlin").level == OK
    assert checks.check_compute_capability(None, "awq_marlin").level == SKIP
    assert checks.check_compute_capability(t4, "some-new-method").level == SKIP


def test_nvidia_smi_missing_is_a_failure_only_on_the_box():
    assert checks.check_nvidia_smi(None, "not installed", on_box=True).level == ERROR
    assert checks.check_nvidia_smi(None, "not installed", on_box=False).level == SKIP
    assert checks.check_nvidia_smi(checks.parse_nvidia_smi(SMI_H100), None, on_box=False).level == OK


# -------------------------------------------------------------- manifests
def test_values_come_from_the_manifests():
    """The Pod's user and requests are read from the Deployment (issue 9 #4: UID 10001, 16Gi), not spelled."""
    raw = yaml.safe_load(manifest_path("base/vllm-deployment.yaml").read_text())
    pod_spec = raw["spec"]["template"]["spec"]
    assert checks.pod_user(deployment()) == (pod_spec["securityContext"]["runAsUser"],
                                              pod_spec["securityContext"]["runAsGroup"])
    assert checks.pod_requests(deployment()) == {k: str(v) for k, v in
                                                 pod_spec["containers"][0]["resources"]["requests"].items()}
    source = inspect.getsource(checks)
    for spelled in ("10001", "1000", "16Gi", "24Gi", "qwen25-coder-7b-awq", "v0.32.0"):
        assert not re.search(rf"\b{re.escape(spelled)}\b", source.split("# -- sizes")[1]), spelled


def test_a_container_security_context_wins_and_no_user_is_an_error():
    dep = deployment()
    vllm_container(dep)["securityContext"]["runAsUser"] = 4242
    assert checks.pod_user(dep)[0] == 4242
    del vllm_container(dep)["securityContext"]["runAsUser"]
    del dep["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    with pytest.raises(InputError, match="runAsUser"):
        checks.pod_user(dep)


def test_checksums_compare():
    got = {"a.safetensors": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}
    assert checks.compare_checksums(got, dict(got)) == []
    assert checks.compare_checksums(got, {"a.safetensors": "0" * 64}) == ["a.safetensors"]
    assert checks.compare_checksums(got, {**got, "b.safetensors": "1" * 64}) == ["b.safetensors"]
    with pytest.raises(InputError, match="SHA-256"):
        checks.compare_checksums(got, {"a.safetensors": "not-a-digest"})


def test_every_see_points_at_a_real_troubleshooting_entry():
    slugs = set(re.findall(r'see="([a-z0-9-]+)"', inspect.getsource(checks)))
    assert len(slugs) >= 6, "the checks should link troubleshooting entries"
    for s in slugs:
        catalogue.by_slug(s)


def test_old_status_names_are_refused():
    # The box check's own Check type (pass/warn/fail) is gone: its lines are core Findings.
    for old in ("pass", "warn", "fail"):
        with pytest.raises(ValueError):
            Finding(old, "")
    assert not hasattr(checks, "Check")


# ---------------------------------------------- the capability table, from vLLM
def _vllm_source() -> Path:
    """The pinned vLLM release's package, in the environment scripts/setup.sh makes (.venv-vllm)."""
    [src] = mode.vllm_python().parent.parent.glob("lib/python3*/site-packages/vllm")
    return src


def _min_capability(class_file: Path, class_name: str) -> int:
    tree = ast.parse(class_file.read_text())
    cls = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == class_name)
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "get_min_capability")
    ret = next(n for n in ast.walk(fn) if isinstance(n, ast.Return))
    return ast.literal_eval(ret.value)


@pytest.mark.vllm
def test_capability_table_is_what_vllm_0_32_says():
    """Every ``--quantization`` name containing "awq" in vLLM's method table, and the minimum of its config."""
    quant = _vllm_source() / "model_executor" / "layers" / "quantization"
    tree = ast.parse((quant / "__init__.py").read_text())
    table = next(n.value for n in ast.walk(tree) if isinstance(n, ast.AnnAssign)
                 and getattr(n.target, "id", "") == "method_to_config")
    imports = {a.asname or a.name: node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               for a in node.names}
    derived = {}
    for key, value in zip(table.keys, table.values):
        name = ast.literal_eval(key)
        if "awq" in name and name != "moe_wna16":
            module = imports[value.id].lstrip(".")
            derived[name] = _min_capability(quant / f"{module.replace('.', '/')}.py", value.id)
    assert derived == checks.MIN_CAPABILITY
