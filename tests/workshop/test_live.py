"""Gathering the box check's inputs: real temporary folders, a fake cluster, the offline mode."""
from __future__ import annotations

import json
import os
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace

import pytest

from llmserve.core import names, vllm
from llmserve.core.errors import ClusterError
from llmserve.core.findings import ERROR, OK, SKIP, WARNING
from llmserve.workshop import checks, live
from llmserve.world.mode import Mode

OFFLINE = Mode("offline", "COURSE_MODE=offline is set", "cpu", "torch sees no CUDA GPU")
LIVE = Mode("live", "API server answered", "cpu", "torch sees no CUDA GPU", context="default")


def make_model(root: Path, shards=("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"),
               quant="awq", shard_bytes=16) -> Path:
    """A model folder laid out like Qwen/Qwen2.5-Coder-7B-Instruct-AWQ (file names from its file list)."""
    d = root / checks.model_subpath(names.system())
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"model_type": "qwen2", "quantization_config": {"quant_method": quant}}))
    for s in shards:
        (d / s).write_bytes(b"\0" * shard_bytes)
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {f"layer.{i}.weight": s for i, s in enumerate(shards)}}))
    for t in ("tokenizer.json", "tokenizer_config.json"):
        (d / t).write_text("{}")
    for p in [root, d, *d.iterdir()]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return d


def test_reading_a_folder_describes_it_without_judging(tmp_path):
    d = make_model(tmp_path)
    part = d / ".cache" / "huggingface" / "download" / "x.safetensors.abc.incomplete"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0")
    w = live.read_weights_folder(d)
    assert w.exists and w.folder.is_dir and w.files["model-00001-of-00002.safetensors"].size == 16
    assert w.config["quantization_config"]["quant_method"] == "awq"
    assert w.index_shards == {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}
    assert w.partial == (".cache/huggingface/download/x.safetensors.abc.incomplete",)
    assert not live.read_weights_folder(tmp_path / "absent").exists


def test_a_broken_index_is_reported(tmp_path):
    d = make_model(tmp_path)
    (d / "model.safetensors.index.json").write_text("{not json")
    w = live.read_weights_folder(d)
    assert w.index_error and checks.check_downloaded_weights(w, 1, 1).level == ERROR


def test_unreadable_files_on_disk_fail_for_another_user(tmp_path):
    d = make_model(tmp_path)
    os.chmod(d / "model-00001-of-00002.safetensors", 0o600)
    me = os.stat(d).st_uid
    w = live.read_weights_folder(d)
    assert checks.check_downloaded_weights(w, me + 1, me + 1, expected_bytes=None).level == ERROR
    assert checks.check_downloaded_weights(w, me, me, expected_bytes=None).level == OK


def test_checksums_of_real_files(tmp_path):
    (tmp_path / "a.safetensors").write_bytes(b"abc")
    # SHA-256("abc") from FIPS 180-2, appendix B.1.
    assert live.sha256_files(tmp_path) == {
        "a.safetensors": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}


def test_models_root_defaults_to_the_pvs_hostpath(monkeypatch, tmp_path):
    monkeypatch.delenv("COURSE_MODELS_DIR", raising=False)
    assert live.models_root() == Path(names.system().pv_host_path)
    assert str(live.weights_dir()) == names.system().host_model_dir
    monkeypatch.setenv("COURSE_MODELS_DIR", str(tmp_path))
    assert live.weights_dir() == tmp_path / checks.model_subpath(names.system())


def test_nvidia_smi_failures_become_reasons(monkeypatch):
    monkeypatch.setattr(live.shutil, "which", lambda exe: None)
    assert live.query_nvidia_smi() == (None, "nvidia-smi is not installed on this machine")
    monkeypatch.setattr(live.shutil, "which", lambda exe: "/usr/bin/nvidia-smi")
    failed = lambda *a, **k: SimpleNamespace(returncode=9, stdout="", stderr="NVIDIA-SMI has failed")  # noqa: E731
    assert live.query_nvidia_smi(run=failed) == (None, "nvidia-smi failed: NVIDIA-SMI has failed")
    t4 = "Tesla T4, 15360, 7.5, 535.104.05\n"
    ok = lambda *a, **k: SimpleNamespace(returncode=0, stdout=t4, stderr="")  # noqa: E731
    gpus, error = live.query_nvidia_smi(run=ok)
    assert error is None and gpus[0]["compute_cap"] == 7.5


def test_offline_run_skips_every_cluster_check_and_runs_the_local_ones(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_MODELS_DIR", str(tmp_path))
    make_model(tmp_path)
    report = live.check_box(OFFLINE)
    cluster = [f for f in report.findings if f.check in checks.CLUSTER_CHECKS]
    assert [f.check for f in cluster] == list(checks.CLUSTER_CHECKS)
    assert all(f.level == SKIP and f.what.startswith("skipped: offline — COURSE_MODE=offline") for f in cluster)
    local = {f.check: f for f in report.findings}
    assert local["image pinned"].level == OK
    # The model folder check really ran on the copy (it is tiny, so it warns about its size or readability).
    assert local["model folder"].level != SKIP
    assert str(tmp_path / checks.model_subpath(names.system())) in local["model folder"].what


def test_offline_without_a_models_dir_says_what_it_would_check(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_MODELS_DIR", str(tmp_path / "absent"))
    monkeypatch.setattr(live, "on_the_box", lambda: False)
    f = {f.check: f for f in live.check_box(OFFLINE).findings}["model folder"]
    assert f.level == SKIP and "would check" in f.what


def test_free_disk_is_measured_where_the_image_lands(tmp_path):
    Usage = namedtuple("Usage", "total used free")
    seen = []
    found = live.local_checks("cpu", "no GPU", tmp_path, nvidia=(None, "absent"),
                              disk_usage=lambda p: seen.append(p) or Usage(0, 0, 1e9))
    disk = next(f for f in found if f.check == "free disk")
    assert disk.level == WARNING and seen == [live.disk_root(tmp_path)]


class FakeCluster:
    host, context = "https://127.0.0.1:6443", "default"

    def __init__(self, objects):
        self.objects = objects

    def list(self, api_version, kind, namespace=None, label_selector=None):
        if kind not in self.objects:
            raise ClusterError(f"Forbidden by RBAC: could not list {kind}.", "Ask for a Role.")
        return self.objects[kind]


def _fake_box(**overrides) -> FakeCluster:
    objects = {
        "Node": [{"metadata": {"name": "gpu-box"},
                  "status": {"allocatable": {"cpu": "16", "memory": "64Gi", checks.GPU_RESOURCE: "1"},
                             "images": [{"names": [f"docker.io/{vllm.IMAGE}"]}]}}],
        "Pod": [],
        "DaemonSet": [{"metadata": {"name": "nvdp-nvidia-device-plugin", "namespace": "nvidia-device-plugin"},
                       "status": {"desiredNumberScheduled": 1, "numberReady": 1}}],
        "StorageClass": [{"metadata": {"name": "local-path",
                                       "annotations": {checks.DEFAULT_STORAGECLASS_ANNOTATION: "true"}}}],
    }
    objects.update(overrides)
    return FakeCluster({k: v for k, v in objects.items() if v is not None})


def test_live_run_reads_the_cluster():
    found = {f.check: f for f in live.check_box(LIVE, cluster_factory=_fake_box).findings}
    assert found["cluster reachable"].level == OK
    assert found["GPU allocatable"].level == OK
    assert found["CPU and memory allocatable"].level == OK
    assert found["device plugin DaemonSet"].level == OK
    assert found["default StorageClass"].level == WARNING
    assert found["vLLM image on the node"].level == OK


def test_a_refused_call_becomes_that_lines_error_and_the_others_still_run():
    found = {f.check: f for f in live.check_box(LIVE, cluster_factory=lambda: _fake_box(DaemonSet=None)).findings}
    assert found["device plugin DaemonSet"].level == ERROR and "Forbidden" in found["device plugin DaemonSet"].what
    assert found["vLLM image on the node"].level == OK


def test_an_unreachable_cluster_is_one_error_line():
    def refuse():
        raise ClusterError("Could not reach the API server.", "Is the cluster running?")
    report = live.check_box(LIVE, cluster_factory=refuse)
    assert report.findings[-1].check == "cluster reachable" and report.findings[-1].level == ERROR
    assert not report.ok


@pytest.mark.parametrize("env,expected", [({"COURSE_ON_BOX": "1"}, True), ({}, None)])
def test_on_the_box(monkeypatch, env, expected):
    monkeypatch.delenv("COURSE_ON_BOX", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    want = expected if expected is not None else Path(names.system().pv_host_path).is_dir()
    assert live.on_the_box() is want
